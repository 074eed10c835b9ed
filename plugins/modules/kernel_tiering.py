#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kernel_tiering
short_description: Set the kernel's memory tiering knobs (demotion, NUMA balancing promotion, rate limit)
version_added: "0.1.0"
description:
  - Sets the kernel knobs of memory tiering in the running kernel and, with O(persist=true), for
    every later boot.
  - O(demotion_enabled) is C(/sys/kernel/mm/numa/demotion_enabled) (reclaim demotes pages to a lower
    tier instead of dropping them). It is persisted as a C(w) line in
    C(/etc/tmpfiles.d/tiering-pmem.conf), because sysctl.d cannot write sysfs.
  - O(numa_balancing) is C(kernel.numa_balancing) and O(promote_rate_limit_mbps) is
    C(kernel.numa_balancing_promote_rate_limit_MBps); both are persisted in
    C(/etc/sysctl.d/90-tiering-pmem.conf).
  - Only the knobs given are touched. Entries of our two files for knobs not given are kept.
  - The first time it changes a live knob (with O(persist=true)), it keeps the value the kernel had in
    C(/etc/tiering-pmem/kernel-tiering-before.json); O(state=absent) puts those values back, removes
    that record and both files, and so undoes what the module did.
  - All checks (value ranges, the knob exists in the running kernel) are done before anything is
    written. A knob missing from the running kernel is an error naming the knob, its path and the
    kernel release; for example Debian 12's 6.1 kernel and Debian 13's 6.12 kernel both have all
    three, kernels older than 6.1 lack the rate limit and kernels older than 5.18 do not accept
    O(numa_balancing=2).
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  demotion_enabled:
    description:
      - Whether reclaim demotes pages from a faster tier to a slower one.
    type: bool
  numa_balancing:
    description:
      - The C(kernel.numa_balancing) bit mask. V(0) off; V(1) classic NUMA balancing (move pages to the
        node of the CPU using them); V(2) memory tiering mode (promote hot pages from slow memory
        nodes to fast ones, what a tiered host wants); V(3) both.
      - The kernel defines only these two bits. 6.12 also accepts V(4), which has no meaning, so it is
        not offered here.
    type: int
    choices: [0, 1, 2, 3]
  promote_rate_limit_mbps:
    description:
      - C(kernel.numa_balancing_promote_rate_limit_MBps), the most MB/s that tiering mode promotes;
        the kernel default is 65536. A whole number from 0 to 2147483647.
    type: int
  state:
    description:
      - V(present) sets the knobs given. V(absent) reverts the collection's tiering settings (takes no knobs).
    type: str
    choices: [present, absent]
    default: present
  persist:
    description:
      - Also write the values to the sysctl.d and tmpfiles.d files so that they survive a reboot.
      - With V(false) only the running kernel is changed and the files are left as they are.
    type: bool
    default: true
  backup:
    description:
      - Keep a time-stamped copy of a file before it is changed.
    type: bool
    default: false
extends_documentation_fragment:
  - tiering.pmem.attributes
notes:
  - Supports check mode and diff mode. Check mode writes nothing and returns the same RV(actions) and
    RV(changed) as a real run.
"""

EXAMPLES = r"""
- name: Tiering mode with demotion, for a host with a slow memory node
  tiering.pmem.kernel_tiering:
    demotion_enabled: true
    numa_balancing: 2
    promote_rate_limit_mbps: 1024

- name: Undo it all (the knobs as they were before, our files removed)
  tiering.pmem.kernel_tiering:
    state: absent

- name: Turn demotion off for this boot only
  tiering.pmem.kernel_tiering:
    demotion_enabled: false
    persist: false
"""

RETURN = r"""
changed:
  description: Whether a live value or a file was changed.
  returned: always
  type: bool
  sample: true
actions:
  description: The state-changing steps, in order (in check mode, those a real run would take).
  returned: always
  type: list
  elements: str
  sample: ["set kernel.numa_balancing 0 -> 2", "write /etc/sysctl.d/90-tiering-pmem.conf"]
before:
  description: The live values of the knobs given, before this run.
  returned: always
  type: dict
  sample: {"numa_balancing": 0, "demotion_enabled": false}
after:
  description: The live values of the knobs given, after this run (predicted in check mode).
  returned: always
  type: dict
  sample: {"numa_balancing": 2, "demotion_enabled": true}
kernel_release:
  description: The running kernel release.
  returned: always
  type: str
  sample: 6.12.118+deb13-amd64
backup_files:
  description: Backup copies made with O(backup=true).
  returned: always
  type: list
  elements: str
  sample: []
diff:
  description: The live values and the files, before and after, with C(--diff).
  returned: when diff mode is on
  type: list
  elements: dict
  sample: [{"before_header": "live knobs", "after_header": "live knobs",
            "before": "kernel.numa_balancing = 0\n", "after": "kernel.numa_balancing = 2\n"}]
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tiering.pmem.plugins.module_utils import _files
from ansible_collections.tiering.pmem.plugins.module_utils import _knobs
from ansible_collections.tiering.pmem.plugins.module_utils import _plan

MODULE_NAME = "tiering.pmem.kernel_tiering"
SYSCTL_FILE = "/etc/sysctl.d/90-tiering-pmem.conf"
TMPFILES_FILE = "/etc/tmpfiles.d/tiering-pmem.conf"
BEFORE_FILE = "/etc/tiering-pmem/kernel-tiering-before.json"
RATE_LIMIT_MAX = 2147483647
# Tests point this at a copy of a tree captured from a lab guest.
ROOT = "/"

# option -> (knob name shown to users, live path, where it persists, which kernels have it)
KNOBS = {
    "demotion_enabled": ("demotion_enabled", _knobs.DEMOTION_PATH, "tmpfiles", "Linux 5.15 and later"),
    "numa_balancing": ("kernel.numa_balancing", _knobs.sysctl_path("kernel.numa_balancing"), "sysctl",
                       "kernels built with CONFIG_NUMA_BALANCING (tiering mode 2 needs 5.18 or later)"),
    "promote_rate_limit_mbps": ("kernel.numa_balancing_promote_rate_limit_MBps",
                                _knobs.sysctl_path("kernel.numa_balancing_promote_rate_limit_MBps"),
                                "sysctl", "Linux 6.1 and later"),
}
ORDER = ("demotion_enabled", "numa_balancing", "promote_rate_limit_mbps")


def to_kernel(option, value):
    if option == "demotion_enabled":
        return "true" if value else "false"
    return str(value)


def from_kernel(option, text):
    if option == "demotion_enabled":
        return _knobs.is_true(text)
    return int(text)


def validate(params):
    rate = params["promote_rate_limit_mbps"]
    if rate is not None and not 0 <= rate <= RATE_LIMIT_MAX:
        # Shortened: a 4000-digit number is a valid int, but not one to echo back whole.
        raise _plan.ModuleError("promote_rate_limit_mbps=%s is out of range: use a whole number of MB/s "
                                "from 0 to %d (kernel default 65536)"
                                % (_plan.shorten(rate, quote=False), RATE_LIMIT_MAX))


def read_before(root):
    """{option: value the kernel had before the collection first changed it}."""
    text = _files.read_file(BEFORE_FILE, root)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return dict((k, v) for k, v in data.items() if k in KNOBS) if isinstance(data, dict) else {}


def live_diff(release, before, after):
    """The diff entry of the live knobs: [(name, text)] before and after."""
    return dict(before_header="live knobs (%s)" % release, after_header="live knobs (%s)" % release,
                before="".join("%s = %s\n" % pair for pair in before),
                after="".join("%s = %s\n" % pair for pair in after))


def remove_step(plan, path, root):
    """Plan the removal of one of our files (kept as a backup with backup=true)."""
    def remove():
        backup = _files.remove_file(plan.module, path, root, plan.module.params["backup"])
        if backup:
            plan.result["backup_files"].append(backup)

    plan.step("remove %s" % path, remove)


def write_step(plan, path, text, root):
    def write():
        backup = _files.write_file_atomic(plan.module, path, text, root, plan.module.params["backup"])
        if backup:
            plan.result["backup_files"].append(backup)

    plan.step("write %s" % path, write)


def plan_revert(plan, root):
    """state=absent: the recorded live values back, our files and the record removed."""
    result = plan.result
    release = result["kernel_release"]
    before = read_before(root)
    live = []
    for option in ORDER:
        if option not in before or not _knobs.knob_exists(KNOBS[option][1], root):
            continue
        current = from_kernel(option, _knobs.read_knob(KNOBS[option][1], root))
        result["before"][option] = current
        result["after"][option] = before[option]
        if current != before[option]:
            live.append(option)
            plan.step("set %s %s -> %s (as before tiering.pmem)" % (
                KNOBS[option][0], to_kernel(option, current), to_kernel(option, before[option])),
                lambda option=option: _knobs.write_knob(KNOBS[option][1], to_kernel(option, before[option]), root))
    files = [path for path in (SYSCTL_FILE, TMPFILES_FILE, BEFORE_FILE) if _files.read_file(path, root) is not None]
    for path in files:
        remove_step(plan, path, root)
    plan.diffs([live_diff(release, [(KNOBS[o][0], to_kernel(o, result["before"][o])) for o in live],
                          [(KNOBS[o][0], to_kernel(o, before[o])) for o in live])]
               + [dict(before_header=path, after_header=path, before=_files.read_file(path, root), after="")
                  for path in files])


def check_options(params):
    if params["state"] == "absent":
        if any(params[option] is not None for option in ORDER):
            raise _plan.ModuleError("state=absent reverts every knob the collection set and takes none: drop %s"
                                    % ", ".join(o for o in ORDER if params[o] is not None))
        return
    if all(params[option] is None for option in ORDER):
        raise _plan.ModuleError("one of the following is required: %s (or state=absent to revert them)"
                                % ", ".join(ORDER))
    validate(params)


def plan_tiering(plan, root):
    params = plan.module.params
    check_options(params)
    release = _knobs.kernel_release(root)
    plan.result["kernel_release"] = release
    if params["state"] == "absent":
        plan_revert(plan, root)
        return
    wanted = [option for option in ORDER if params[option] is not None]
    result = plan.result
    missing = [option for option in wanted if not _knobs.knob_exists(KNOBS[option][1], root)]
    if missing:
        raise _plan.ModuleError("; ".join(
            "the running kernel %s has no %s (%s): it exists in %s" % (
                release, KNOBS[option][0], KNOBS[option][1], KNOBS[option][3]) for option in missing))

    recorded = read_before(root)
    first_changes = {}
    for option in wanted:
        name, path = KNOBS[option][0], KNOBS[option][1]
        current = from_kernel(option, _knobs.read_knob(path, root))
        result["before"][option] = current
        result["after"][option] = params[option]
        if current != params[option]:
            # Only a persisting run keeps the old values: persist=false promises to write no file.
            if option not in recorded and params["persist"]:
                first_changes[option] = current
            plan.step("set %s %s -> %s" % (name, to_kernel(option, current), to_kernel(option, params[option])),
                      lambda option=option: set_live(plan, option, recorded, first_changes, root))

    file_plans = []
    if params["persist"]:
        sysctl_before = _files.read_file(SYSCTL_FILE, root)
        sysctl_values = _knobs.parse_sysctl_conf(sysctl_before)
        tmpfiles_before = _files.read_file(TMPFILES_FILE, root)
        tmpfiles_writes = _knobs.parse_tmpfiles_writes(tmpfiles_before)
        for option in wanted:
            name, path, where = KNOBS[option][:3]
            if where == "sysctl":
                sysctl_values[name] = to_kernel(option, params[option])
            else:
                tmpfiles_writes[path] = to_kernel(option, params[option])
        sysctl_after = _knobs.sysctl_conf_text(sysctl_values, MODULE_NAME) if sysctl_values else sysctl_before
        tmpfiles_after = _knobs.tmpfiles_text(tmpfiles_writes, MODULE_NAME) if tmpfiles_writes else tmpfiles_before
        for path, before, after in ((SYSCTL_FILE, sysctl_before, sysctl_after),
                                    (TMPFILES_FILE, tmpfiles_before, tmpfiles_after)):
            if before != after:
                file_plans.append((path, before, after))
                write_step(plan, path, after, root)

    live = [(KNOBS[option][0], to_kernel(option, result["before"][option]),
             to_kernel(option, result["after"][option])) for option in wanted]
    plan.diffs([live_diff(release, [(name, old) for name, old, _new in live],
                          [(name, new) for name, _old, new in live])]
               + [dict(before_header=path, after_header=path, before=before or "", after=after)
                  for path, before, after in file_plans])
    if first_changes:
        plan.step("write %s" % BEFORE_FILE)  # written by the first set_live(), before any knob changes


def set_live(plan, option, recorded, first_changes, root):
    """Set one live knob; the first one written keeps the values the kernel had in BEFORE_FILE first.

    Live values go before the files: if the kernel refuses one, nothing is persisted that would
    fail at boot.
    """
    if first_changes and not all(recorded.get(key) == value for key, value in first_changes.items()):
        recorded.update(first_changes)
        _files.write_file_atomic(plan.module, BEFORE_FILE, json.dumps(recorded, indent=2, sort_keys=True) + "\n",
                                 root)
    _knobs.write_knob(KNOBS[option][1], to_kernel(option, plan.module.params[option]), root)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            demotion_enabled=dict(type="bool"),
            numa_balancing=dict(type="int", choices=[0, 1, 2, 3]),
            promote_rate_limit_mbps=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            persist=dict(type="bool", default=True),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    root = ROOT
    _plan.run(module, lambda plan: plan_tiering(plan, root), before={}, after={}, backup_files=[])


if __name__ == "__main__":
    main()
