# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape every state-changing module has: read the host, plan steps, apply them unless in check mode.

Owns ``Plan`` and ``ModuleError``. Used by dax_kmem, kernel_tiering, memory_blocks, ndctl_namespace
and reserved_memory: each reads the host state, adds one step per state change to a Plan (the text
reported in ``actions`` and the function that makes the change), and calls ``Plan.execute``. A
refusal is a planned outcome too: ``Plan.refuse`` raises ModuleError with the result so far, before
anything is applied, so check mode refuses exactly what a real run would. ``main()`` of each module
holds the argument spec and turns ModuleError into ``fail_json``.

Also the one place that cuts a user value for a message (``shorten``) and that writes a command
for ``actions`` (``command_text``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


class ModuleError(Exception):
    """A refusal, a bad value or an unusable host state: the message for the user, and the result
    keys (``actions``, ``changed``, ...) that go back with it."""

    # A failed command carries only its own keys (cmd, rc, stdout, stderr): run() adds the plan's
    # actions, and changed when a step may have been applied.
    reports_plan = False

    def __init__(self, msg, **result):
        super(ModuleError, self).__init__(msg)
        self.msg = msg
        self.result = result


def shorten(value, limit=64, quote=True):
    """``repr()`` of a user value for a message (``str()`` with ``quote=False``), cut after
    ``limit`` characters: messages name the bad value, but a huge input is not echoed back whole.
    """
    text = value if isinstance(value, str) else str(value)
    shown = text[:limit]
    shown = repr(shown) if quote else shown
    return shown if len(text) <= limit else "%s... (%d characters)" % (shown, len(text))


def command_text(argv):
    """An argv as ``actions`` report it (argv of a step that runs a command): the program without its directory."""
    return " ".join([os.path.basename(argv[0])] + list(argv[1:]))


# A step returns this to end the apply phase early (the rest of the plan depends on it).
STOP = object()


class Plan(object):
    """The state changes one task makes, in order, and the result it reports.

    ``result`` starts as ``changed=False, actions=[]`` plus the keys given; ``changed`` becomes
    ``bool(actions)`` when the plan is executed, in check mode too, so both report the same.
    """

    def __init__(self, module, **result):
        self.module = module
        self.result = dict(changed=False, actions=[])
        self.result.update(result)
        self._steps = []
        self._finish = []
        # Steps whose apply() has returned: a failure part-way tells from it whether the host changed.
        self.applied_steps = 0

    @property
    def actions(self):
        return self.result["actions"]

    def step(self, action, apply=None):
        """Plan one change: ``action`` is its line in ``actions``; ``apply()`` makes it (a step
        without ``apply`` is done by a later one, or by a ``when_applied`` function)."""
        self.actions.append(action)
        self._steps.append(apply)

    def refuse(self, msg, **extra):
        """Stop planning: fail with ``msg`` and the result so far (nothing has been applied)."""
        raise ModuleError(msg, **dict(self.result, **extra))

    def diff(self, before, after):
        """Record ``diff`` (before and after text) when diff mode is on."""
        if self.module._diff:
            self.result["diff"] = dict(before=before, after=after)

    def diffs(self, entries):
        """Record ``diff`` as a list of dicts (one per file or knob group) when diff mode is on."""
        if self.module._diff:
            self.result["diff"] = list(entries)

    def when_applied(self, finish):
        """``finish()`` runs once every step is applied (re-reading the host, say); not in check mode."""
        self._finish.append(finish)

    def execute(self):
        """``changed`` from the plan; the steps applied unless in check mode or nothing to do."""
        self.result["changed"] = bool(self.actions)
        if self.module.check_mode or not self.actions:
            return self.result
        for apply in self._steps:
            if apply is None:
                continue
            stop = apply() is STOP
            self.applied_steps += 1
            if stop:
                break
        for finish in self._finish:
            finish()
        return self.result


def run(module, plan_with, **result):
    """The whole task: a Plan with ``result`` keys, filled by ``plan_with(plan)``, executed; exits.

    ModuleError from planning or applying becomes ``fail_json`` with its message and keys.
    """
    plan = Plan(module, **result)
    try:
        plan_with(plan)
        done = plan.execute()
    except ModuleError as exc:
        failure = dict(exc.result)
        if exc.reports_plan:
            failure.update(changed=bool(plan.actions) and not module.check_mode, actions=plan.actions)
        module.fail_json(msg=exc.msg, **failure)
    module.exit_json(**done)
