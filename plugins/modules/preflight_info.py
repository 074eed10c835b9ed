#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: preflight_info
short_description: Whether a host has what provisioning pmem as system RAM needs
description:
  - Reads, in one pass, what C(tiering.pmem.provision) needs of a host and says what is missing -
    the kernel features (memory hotplug, device DAX, the dax kmem driver; DAMON or idle page tracking
    when O(migration_agent) is true), the tools (ndctl, daxctl, numactl, and cxl on hosts with CXL
    memory devices), the unified cgroup hierarchy tierd runs under, and the memory available.
  - A kernel feature counts as present when sysfs shows it, when the kernel's module index
    (C(modules.dep), C(modules.builtin)) lists its driver, or when the kernel config
    (C(/boot/config-RELEASE), else C(/proc/config.gz)) has it as C(y) or C(m). Without any of them the
    answer is C(unknown), a warning rather than a problem.
  - Names the package that installs each missing tool on Debian/Ubuntu and the RHEL family (Fedora,
    CentOS Stream, Rocky, Alma), from C(/etc/os-release).
  - Changes nothing.
version_added: "0.1.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  migration_agent:
    description: Whether tierd is going to be installed; adds its needs (DAMON or idle page tracking, cgroup v2).
    type: bool
    default: false
  agent_backend:
    description: The tierd backend that will be configured (C(migration_agent_backend)); V(auto) needs either.
    type: str
    choices: [auto, damon, page_idle]
    default: auto
  min_available_mb:
    description: MiB of C(MemAvailable) below which the host is reported as a problem.
    type: int
    default: 0
extends_documentation_fragment:
  - tiering.pmem.attributes.info_module
"""

EXAMPLES = r"""
- name: Check what the host lacks
  tiering.pmem.preflight_info:
    migration_agent: true
    min_available_mb: 512
  register: preflight

- name: Install the missing tools
  ansible.builtin.package:
    name: "{{ preflight.packages }}"
  when: preflight.packages | length > 0
"""

RETURN = r"""
os_family:
  description: Debian or RedHat from C(/etc/os-release); null for other distributions.
  returned: always
  type: str
  sample: Debian
kernel_release:
  description: The running kernel's release.
  returned: always
  type: str
  sample: 6.12.38+deb13-amd64
kernel_config:
  description: Where the kernel config was read from, or null when neither file exists.
  returned: always
  type: str
  sample: /boot/config-6.12.38+deb13-amd64
features:
  description: Each kernel feature as V(yes), V(no) or V(unknown).
  returned: always
  type: dict
  sample: {memory_hotplug: "yes", dax: "yes", kmem: "yes", damon: "yes", page_idle: "no"}
tools:
  description: Whether each tool is on the PATH.
  returned: always
  type: dict
  sample: {ndctl: true, daxctl: true, numactl: false, cxl: true}
cxl_devices:
  description: Whether the host has CXL memory devices (C(/sys/bus/cxl/devices/mem*)), so needs the cxl tool.
  returned: always
  type: bool
  sample: false
cgroup_v2:
  description: Whether the unified cgroup hierarchy is mounted on C(/sys/fs/cgroup).
  returned: always
  type: bool
  sample: true
mem_available_mb:
  description: C(MemAvailable) of C(/proc/meminfo) in MiB.
  returned: always
  type: int
  sample: 1432
needed_tools:
  description: The tools provisioning this host needs.
  returned: always
  type: list
  elements: str
  sample: [ndctl, daxctl, numactl]
missing_tools:
  description: The needed tools that are not on the PATH.
  returned: always
  type: list
  elements: str
  sample: [numactl]
packages:
  description: Packages that install the missing tools on this OS family.
  returned: always
  type: list
  elements: str
  sample: [numactl]
uninstallable:
  description: Missing tools for which no package name is known on this OS family.
  returned: always
  type: list
  elements: str
  sample: []
problems:
  description: What stops provisioning and no package fixes, one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["the kernel lacks the dax kmem driver (CONFIG_DEV_DAX_KMEM, /sys/bus/dax/drivers/kmem)"]
uncertain:
  description: What could not be told; provisioning may still work.
  returned: always
  type: list
  elements: str
  sample: []
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tiering.pmem.plugins.module_utils import _preflight, _sysfs

# Tests point this at a fixture tree.
ROOT = "/"

_COMPRESSED = re.compile(r"\.(xz|zst|gz)$")


def _read_bytes(path):
    try:
        with open(_sysfs.host_path(ROOT, path), "rb") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _kernel_config(release):
    path = "/boot/config-%s" % release
    text = _sysfs.read_text(path, ROOT, default="")
    if text:
        return path, _preflight.parse_kernel_config(text)
    data = _read_bytes("/proc/config.gz")
    if data is not None:
        text = _preflight.read_config_gz(data)
        if text is not None:
            return "/proc/config.gz", _preflight.parse_kernel_config(text)
    return None, None


def _kernel_modules(release):
    """Module paths (compression suffix dropped) of modules.dep and modules.builtin."""
    found = set()
    for name in ("modules.dep", "modules.builtin"):
        text = _sysfs.read_text("/lib/modules/%s/%s" % (release, name), ROOT, default="")
        for line in text.splitlines():
            path = line.split(":", 1)[0].strip()
            if path:
                found.add(_COMPRESSED.sub("", path))
    return found


def _cxl_devices():
    try:
        names = os.listdir(_sysfs.host_path(ROOT, "/sys/bus/cxl/devices"))
    except OSError:
        return False
    return any(re.match(r"^mem\d+$", name) for name in names)


def observe(module):
    release = _sysfs.read_text("/proc/sys/kernel/osrelease", ROOT, default="")
    config_path, config = _kernel_config(release)
    modules = _kernel_modules(release)
    live = set(path for path, _option, _module in _preflight.FEATURES.values() if _sysfs.exists(path, ROOT))
    available = _sysfs.meminfo(ROOT).get("MemAvailable")
    return {
        "os_family": _preflight.os_family(_preflight.parse_os_release(_sysfs.read_text("/etc/os-release", ROOT, default=""))),
        "kernel_release": release,
        "kernel_config": config_path,
        "features": dict((name, _preflight.feature_state(name, live, config, modules)) for name in _preflight.FEATURES),
        "tools": dict((tool, module.get_bin_path(tool) is not None) for tool in _preflight.BASE_TOOLS + ("cxl",)),
        "cxl_devices": _cxl_devices(),
        "cgroup_v2": _sysfs.exists("/sys/fs/cgroup/cgroup.controllers", ROOT),
        "mem_available_mb": None if available is None else available // (1024 * 1024),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            migration_agent=dict(type="bool", default=False),
            agent_backend=dict(type="str", default="auto", choices=list(_preflight.AGENT_BACKENDS)),
            min_available_mb=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    if module.params["min_available_mb"] < 0:
        module.fail_json(msg="min_available_mb=%d is negative: give the MiB of MemAvailable the host needs, 0 or more"
                         % module.params["min_available_mb"])
    observed = observe(module)
    decision = _preflight.decide(observed, migration_agent=module.params["migration_agent"],
                                 agent_backend=module.params["agent_backend"],
                                 min_available_mb=module.params["min_available_mb"])
    observed.update(decision)
    module.exit_json(changed=False, **observed)


if __name__ == "__main__":
    main()
