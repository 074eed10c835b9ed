# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-task wall time, for bench/noop_rerun (ansible.posix.profile_tasks is not in the venv)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: task_times
type: aggregate
short_description: Write each task's wall time (summed over hosts and loop items) to a TSV file
description:
  - At the end of the play, writes one line per task, in run order, to the file named by
    E(TASK_TIMES_FILE) (tab separated seconds, status, task name); also the playbook's total.
requirements:
  - enable in configuration
"""

import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.started = time.time()
        self.rows = []  # [name, start, end, statuses]
        self.current = None

    def _close(self):
        if self.current is not None:
            self.current[2] = time.time()
            self.current = None

    def _open(self, task):
        self._close()
        # A role's tasks are named "role : task" the way the default callback prints them.
        name = task.get_name().strip()
        if task._role is not None and not name.startswith(task._role.get_name()):
            name = "%s : %s" % (task._role.get_name(), name)
        self.current = [name, time.time(), None, set()]
        self.rows.append(self.current)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def _status(self, status):
        if self.current is not None:
            self.current[3].add(status)

    def v2_runner_on_ok(self, result):
        self._status("changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._status("skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._status("failed")

    def v2_playbook_on_include(self, included_file):
        self._status("included")

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("TASK_TIMES_FILE")
        if not path:
            return
        with open(path, "w") as handle:
            for name, start, end, statuses in self.rows:
                handle.write("%.3f\t%s\t%s\n" % ((end or time.time()) - start, ",".join(sorted(statuses)) or "-", name))
            handle.write("%.3f\t-\tTOTAL (playbook start to stats)\n" % (time.time() - self.started))
