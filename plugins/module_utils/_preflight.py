# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a host needs before provisioning, and what it lacks: the decision of preflight_info.

Pure functions over what the module read (no I/O here), so the decision is unit-tested over
plain data. The package names were checked against the distributions' own packaging: Debian
(bookworm, trixie; Ubuntu the same) ships ``cxl`` in the ``ndctl`` package, Fedora and the RHEL
family split it into ``cxl-cli``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import re

# Tool -> package that installs it, per Ansible os_family.
PACKAGES = {
    "Debian": {"ndctl": "ndctl", "daxctl": "daxctl", "cxl": "ndctl", "numactl": "numactl"},
    "RedHat": {"ndctl": "ndctl", "daxctl": "daxctl", "cxl": "cxl-cli", "numactl": "numactl"},
}

# /etc/os-release ID or ID_LIKE word -> os_family, as ansible.builtin.setup names them.
_FAMILY_OF = {
    "debian": "Debian", "ubuntu": "Debian",
    "rhel": "RedHat", "centos": "RedHat", "fedora": "RedHat", "rocky": "RedHat", "almalinux": "RedHat",
    "ol": "RedHat", "amzn": "RedHat",
}

BASE_TOOLS = ("ndctl", "daxctl", "numactl")

# Kernel features: the sysfs path that proves the feature is live, the CONFIG_ option, and the
# module (path under /lib/modules/RELEASE/ in modules.dep or modules.builtin) that provides it
# when it is not loaded yet.
FEATURES = {
    "memory_hotplug": ("/sys/devices/system/memory", "CONFIG_MEMORY_HOTPLUG", None),
    "dax": ("/sys/bus/dax", "CONFIG_DEV_DAX", "kernel/drivers/dax/dax.ko"),
    "kmem": ("/sys/bus/dax/drivers/kmem", "CONFIG_DEV_DAX_KMEM", "kernel/drivers/dax/kmem.ko"),
    "damon": ("/sys/kernel/mm/damon", "CONFIG_DAMON_SYSFS", None),
    "page_idle": ("/sys/kernel/mm/page_idle", "CONFIG_IDLE_PAGE_TRACKING", None),
}
FEATURE_TEXT = {
    "memory_hotplug": "memory hotplug (CONFIG_MEMORY_HOTPLUG, /sys/devices/system/memory)",
    "dax": "device DAX (CONFIG_DEV_DAX, /sys/bus/dax)",
    "kmem": "the dax kmem driver (CONFIG_DEV_DAX_KMEM, /sys/bus/dax/drivers/kmem)",
    "damon": "DAMON (CONFIG_DAMON_SYSFS, /sys/kernel/mm/damon)",
    "page_idle": "idle page tracking (CONFIG_IDLE_PAGE_TRACKING, /sys/kernel/mm/page_idle)",
}
AGENT_BACKENDS = ("auto", "damon", "page_idle")


def parse_os_release(text):
    """/etc/os-release as a dict (quotes removed)."""
    values = {}
    for line in (text or "").splitlines():
        match = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
        if match:
            values[match.group(1)] = match.group(2).strip().strip("\"'")
    return values


def os_family(os_release):
    """Ansible's os_family for an /etc/os-release dict, or None when it is neither Debian nor RedHat."""
    words = [os_release.get("ID", "")] + os_release.get("ID_LIKE", "").split()
    for word in words:
        family = _FAMILY_OF.get(word.lower())
        if family:
            return family
    return None


def parse_kernel_config(text):
    """A kernel .config as {"CONFIG_X": "y" | "m" | "n" | value}; "# CONFIG_X is not set" is "n"."""
    config = {}
    for line in (text or "").splitlines():
        line = line.strip()
        unset = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if unset:
            config[unset.group(1)] = "n"
            continue
        match = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if match:
            config[match.group(1)] = match.group(2).strip('"')
    return config


def read_config_gz(data):
    """The text of /proc/config.gz (bytes), or None when it does not decompress."""
    try:
        return gzip.decompress(data).decode("utf-8", "replace")
    except (OSError, EOFError, ValueError):
        return None


def feature_state(name, live_paths, config, modules):
    """'yes' (live in sysfs, built in, or a module that can be loaded), 'no' (the config says not set)
    or 'unknown' (no config to read and nothing live). live_paths: the sysfs paths that exist;
    config: parse_kernel_config() or None; modules: module paths of modules.dep and modules.builtin."""
    path, option, module = FEATURES[name]
    if path in live_paths:
        return "yes"
    if module and module in modules:
        return "yes"
    if config is None:
        return "unknown"
    return "yes" if config.get(option, "n") in ("y", "m") else "no"


def package_for(tool, family):
    return PACKAGES.get(family, {}).get(tool)


def decide(observed, migration_agent=False, agent_backend="auto", min_available_mb=0):
    """What stops this host, and what can be installed.

    observed: {"os_family", "tools": {tool: bool}, "cxl_devices": bool, "features": {name: state},
    "cgroup_v2": bool, "mem_available_mb": int}. Returns {"needed_tools", "missing_tools",
    "packages", "uninstallable", "problems", "uncertain"}: packages installs the missing tools that
    have a package on this OS family, uninstallable the ones that have none, problems are what no
    package fixes.
    """
    if agent_backend not in AGENT_BACKENDS:
        raise ValueError("migration agent backend %r is not one of %s" % (agent_backend, ", ".join(AGENT_BACKENDS)))
    family = observed.get("os_family")
    needed = list(BASE_TOOLS) + (["cxl"] if observed.get("cxl_devices") else [])
    tools = observed.get("tools") or {}
    missing = [tool for tool in needed if not tools.get(tool)]
    packages = []
    uninstallable = []
    for tool in missing:
        package = package_for(tool, family)
        if package is None:
            uninstallable.append(tool)
        elif package not in packages:
            packages.append(package)

    features = observed.get("features") or {}
    problems = []
    uncertain = []
    wanted = ["memory_hotplug", "dax", "kmem"]
    for name in wanted:
        state = features.get(name, "unknown")
        if state == "no":
            problems.append("the kernel lacks %s" % FEATURE_TEXT[name])
        elif state == "unknown":
            uncertain.append("could not tell whether the kernel has %s: no kernel config to read and "
                             "nothing in sysfs" % FEATURE_TEXT[name])
    if migration_agent:
        backends = ["damon", "page_idle"] if agent_backend == "auto" else [agent_backend]
        states = [features.get(name, "unknown") for name in backends]
        if all(state == "no" for state in states):
            problems.append("tierd (migration_agent_backend %s) needs %s, which the kernel lacks"
                            % (agent_backend, " or ".join(FEATURE_TEXT[name] for name in backends)))
        elif "yes" not in states:
            uncertain.append("could not tell whether the kernel has %s for tierd"
                             % " or ".join(FEATURE_TEXT[name] for name in backends))
        if not observed.get("cgroup_v2"):
            problems.append("tierd needs the unified cgroup hierarchy (cgroup v2, /sys/fs/cgroup/cgroup.controllers), "
                            "which this host does not mount: boot with systemd.unified_cgroup_hierarchy=1")
    available = observed.get("mem_available_mb")
    if available is not None and available < min_available_mb:
        problems.append("%d MiB of memory available (MemAvailable), less than the %d MiB preflight_min_available_mb "
                        "asks for" % (available, min_available_mb))
    return {
        "needed_tools": needed,
        "missing_tools": missing,
        "packages": packages,
        "uninstallable": uninstallable,
        "problems": problems,
        "uncertain": uncertain,
    }
