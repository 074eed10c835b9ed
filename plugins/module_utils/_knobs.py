# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's tiering knobs: where they live, what their values mean, and how they persist.

Owns ``/sys/kernel/mm/numa/demotion_enabled``, ``kernel.numa_balancing`` and
``kernel.numa_balancing_promote_rate_limit_MBps`` (live value: read, write, exists), the one
definition of which knob texts mean true, and the sysctl.d / tmpfiles.d file formats that set
them at boot. Used by kernel_tiering (sets and persists them) and _pmem_inventory (pmem_info
reports them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError
from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path, read_text, write_text

DEMOTION_PATH = "/sys/kernel/mm/numa/demotion_enabled"
NUMA_BALANCING_PATH = "/proc/sys/kernel/numa_balancing"
PROMOTE_RATE_PATH = "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"
# demotion_enabled prints "true"/"false"; kstrtobool-style spellings written by hand read as true too.
TRUE_TEXTS = ("true", "1", "y", "yes")


def is_true(text):
    """A boolean knob's text -> True/False (one definition for every reader)."""
    return text.strip().lower() in TRUE_TEXTS


def demotion_enabled(root="/"):
    """True/False, or None when the kernel has no demotion knob."""
    text = read_text(DEMOTION_PATH, root, default="")
    if not text:
        return None
    return is_true(text)


def numa_balancing(root="/"):
    text = read_text(NUMA_BALANCING_PATH, root, default="")
    return int(text) if text.isdigit() else None


def promote_rate_limit_mbps(root="/"):
    text = read_text(PROMOTE_RATE_PATH, root, default="")
    return int(text) if text.isdigit() else None


def sysctl_path(name):
    """``kernel.numa_balancing`` -> ``/proc/sys/kernel/numa_balancing``."""
    return "/proc/sys/" + name.replace(".", "/")


def kernel_release(root="/"):
    return read_text("/proc/sys/kernel/osrelease", root, default="unknown")


def knob_exists(path, root="/"):
    return os.path.exists(host_path(root, path))


def read_knob(path, root="/"):
    return read_text(path, root)


def write_knob(path, value, root="/"):
    """Write a live kernel knob; the kernel's refusal comes back as ModuleError."""
    refusal = write_text(path, "%s\n" % value, root)
    if refusal:
        raise ModuleError("the kernel refused %s = %s: %s" % (path, value, refusal))


def parse_sysctl_conf(text):
    """sysctl.d text -> {key: value} (``key = value`` lines; comments and blanks ignored)."""
    values = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lstrip("-").replace("/", ".")] = value.strip()
    return values


def sysctl_conf_text(values, module_name):
    lines = ["# Managed by %s; values applied at boot by systemd-sysctl." % module_name]
    lines += ["%s = %s" % (key, values[key]) for key in sorted(values)]
    return "\n".join(lines) + "\n"


def parse_tmpfiles_writes(text):
    """tmpfiles.d text -> {path: argument} of its ``w`` lines (others are ignored)."""
    writes = {}
    for line in (text or "").splitlines():
        fields = line.split(None, 6)
        if len(fields) == 7 and fields[0] in ("w", "w+"):
            writes[fields[1]] = fields[6].strip()
    return writes


def tmpfiles_text(writes, module_name):
    lines = ["# Managed by %s; written at boot by systemd-tmpfiles." % module_name]
    lines += ["w %s - - - - %s" % (path, writes[path]) for path in sorted(writes)]
    return "\n".join(lines) + "\n"
