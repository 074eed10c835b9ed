"""Which processes belong to which workload, and which of their mappings tierd manages.

Only anonymous private mappings are ever managed: file pages stay where the page cache put them.
"""

import os

from .kernel import PAGE_SIZE, parse_maps

# Mappings the kernel names but that hold anonymous memory of the process.
ANON_NAMED = ("[heap]", "[stack]")
# Special mappings that must never be touched.
SPECIAL = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]", "[uprobes]")


def _comm(kernel, pid):
    text = kernel.proc_text(pid, "comm")
    return None if text is None else text.strip()


def _cmdline(kernel, pid):
    raw = kernel.proc_text(pid, "cmdline")
    if raw is None:
        return None
    return raw.replace("\x00", " ").strip()


def match_pids(kernel, match, self_pid=None):
    """PIDs matching one workload's `match` (all given criteria must hold)."""
    self_pid = os.getpid() if self_pid is None else self_pid
    if "pid" in match:
        candidates = [match["pid"]] if kernel.exists("/proc/%d" % match["pid"]) else []
    elif "cgroup" in match:
        candidates = kernel.cgroup_procs(match["cgroup"])
    else:
        candidates = kernel.pids()
    if "cgroup" in match and "pid" in match:
        candidates = [p for p in candidates if p in set(kernel.cgroup_procs(match["cgroup"]))]
    result = []
    for pid in candidates:
        if pid == self_pid:
            continue
        if "comm" in match:
            comm = _comm(kernel, pid)
            if comm is None or not match["comm"].search(comm):
                continue
        if "cmdline" in match or "comm" in match:
            cmdline = _cmdline(kernel, pid)
            if not cmdline:  # kernel threads have no cmdline and no user memory
                continue
            if "cmdline" in match and not match["cmdline"].search(cmdline):
                continue
        result.append(pid)
    return result


def assign_workloads(kernel, workloads, self_pid=None):
    """{workload name: [pids]}; a PID matched by several workloads goes to the first in config order."""
    taken = set()
    result = {}
    for workload in workloads:
        pids = [p for p in match_pids(kernel, workload["match"], self_pid) if p not in taken]
        taken.update(pids)
        result[workload["name"]] = pids
    return result


def is_anonymous_private(vma):
    if vma["name"] in SPECIAL or "p" not in vma["perms"]:
        return False
    if vma["inode"] != 0:
        return False
    name = vma["name"]
    return name == "" or name in ANON_NAMED or name.startswith("[anon:")


def select_vmas(maps_text, vma_filter):
    """(start, end, name) of the anonymous private mappings that pass the workload's filter."""
    names = vma_filter.get("names")
    min_size = vma_filter.get("min_size", 0)
    selected = []
    for vma in parse_maps(maps_text):
        if not is_anonymous_private(vma):
            continue
        if "r" not in vma["perms"] and "w" not in vma["perms"]:
            continue  # PROT_NONE guard areas hold no pages
        if names is not None and vma["name"] not in names:
            continue
        if vma["end"] - vma["start"] < max(min_size, PAGE_SIZE):
            continue
        selected.append((vma["start"], vma["end"], vma["name"]))
    return selected
