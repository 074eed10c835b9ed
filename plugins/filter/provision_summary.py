# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: provision_summary
author: tiering.pmem developers (@tiering)
version_added: 0.1.0
short_description: One host's outcome of provision.yml - what changed, what was refused, what needs a reboot
description:
  - Turns what the roles of C(tiering.pmem.provision) registered on a host into a short summary, the same in
    check mode (where "changed" means "would change", which the drift check fails on).
  - Runs on the controller over registered results; reads nothing from the host.
options:
  _input:
    description:
      - A dict of the host's results, each key optional (missing or skipped means the step did not run).
      - C(preflight) - C({result, packages}), the registered results of M(tiering.pmem.preflight_info) and of
        the package install; C(emulated_pmem) - C({result, reboot_required}), M(tiering.pmem.reserved_memory)'s
        result and C(emulated_pmem_reboot_required); C(system_ram) - C({changed, devices, left_alone, cxl_changed})
        as the role records them; C(kernel_tiering) - M(tiering.pmem.kernel_tiering)'s result; C(migration_agent) -
        C(migration_agent_result); C(failed) - C({task, msg}) of the step that failed or refused, else null.
    type: dict
    required: true
  check_mode:
    description: Whether the run is in check mode (the words say "would").
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Show what happened on each host
  ansible.builtin.debug:
    msg: "{{ {'system_ram': {'changed': true, 'devices': ['dax0.0'], 'left_alone': []}} | tiering.pmem.provision_summary }}"
"""

RETURN = r"""
_value:
  description: The summary.
  type: dict
  contains:
    changed:
      description: One entry per step that changed (or would), with what.
      type: list
      elements: str
    refused:
      description: The failure or refusal that stopped the host, if any.
      type: list
      elements: str
    reboot_required:
      description: Whether the host needs a reboot it was not allowed to take.
      type: bool
    left_alone:
      description: What the roles left alone and why (regions, namespaces).
      type: list
      elements: str
    uncertain:
      description: What the preflight check could not tell.
      type: list
      elements: str
    lines:
      description: The same as readable lines.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError


def _ran(result):
    return isinstance(result, dict) and bool(result) and not result.get("skipped")


def _actions(result, limit=4):
    actions = [str(a) for a in result.get("actions") or []]
    if not actions:
        return ""
    shown = actions[:limit] + (["%d more" % (len(actions) - limit)] if len(actions) > limit else [])
    return " (%s)" % "; ".join(shown)


def provision_summary(results, check_mode=False):
    if not isinstance(results, dict):
        raise AnsibleFilterError("provision_summary takes a dict of the host's results, got %s" % type(results).__name__)
    changed = []
    uncertain = []
    left_alone = []

    preflight = results.get("preflight") or {}
    packages = preflight.get("packages") or {}
    if _ran(packages) and packages.get("changed"):
        changed.append("preflight: %s %s" % ("would install" if check_mode else "installed",
                                             ", ".join((preflight.get("result") or {}).get("packages") or [])))
    if _ran(preflight.get("result")):
        uncertain.extend(preflight["result"].get("uncertain") or [])

    emulated = results.get("emulated_pmem") or {}
    if _ran(emulated.get("result")) and emulated["result"].get("changed"):
        changed.append("emulated_pmem: memmap= reservation%s" % _actions(emulated["result"]))
    reboot_required = bool(emulated.get("reboot_required"))

    system_ram = results.get("system_ram") or {}
    if system_ram.get("cxl_changed"):
        changed.append("system_ram: CXL RAM regions would be made (their kmem step is predicted, not checked)"
                       if check_mode else "system_ram: CXL RAM regions made")
    if system_ram.get("changed"):
        devices = system_ram.get("devices") or []
        changed.append("system_ram: %s" % (", ".join(devices) if devices else "a new devdax namespace (kmem step predicted)"))
    left_alone.extend(str(item) for item in system_ram.get("left_alone") or [])

    tiering = results.get("kernel_tiering") or {}
    if _ran(tiering) and tiering.get("changed"):
        changed.append("kernel_tiering: knobs%s" % _actions(tiering))

    agent = results.get("migration_agent") or {}
    if agent.get("changes"):
        changed.append("migration_agent: %s" % ", ".join(agent["changes"]))

    failed = results.get("failed")
    refused = []
    if failed:
        refused.append("%s: %s" % (failed.get("task") or "a task", failed.get("msg") or "failed (no message)"))

    verb = "would change" if check_mode else "changed"
    lines = ["%s: %s" % (verb, "; ".join(changed) if changed else "nothing")]
    lines.extend("refused or failed at %s" % item for item in refused)
    if reboot_required:
        lines.append("needs a reboot (emulated_pmem_reboot_ok is false): the memmap= reservation waits for it")
    lines.extend("left alone: %s" % item for item in left_alone)
    lines.extend("could not tell: %s" % item for item in uncertain)
    return {"changed": changed, "refused": refused, "reboot_required": reboot_required,
            "left_alone": left_alone, "uncertain": uncertain, "lines": lines}


class FilterModule:
    """tiering.pmem filters."""

    def filters(self):
        return {"provision_summary": provision_summary}
