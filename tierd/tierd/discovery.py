"""Which processes belong to which workload, and which of their mappings tierd manages.

Only anonymous private mappings are ever managed: file pages stay where the page cache put them.
"""

import os

from .kernel import PAGE_SIZE, parse_maps

# Mappings the kernel names but that hold anonymous memory of the process.
ANON_NAMED = ("[heap]", "[stack]")
# Special mappings that must never be touched.
SPECIAL = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]", "[uprobes]")


class ProcSnapshot:
    """One interval's view of /proc, shared by every workload's selectors: the PID list is read
    once, and a process's comm, cmdline and a cgroup's members at most once, when a selector
    first needs them (with hundreds of workloads, a walk per workload was most of the interval)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self._pids = None
        self._pid_set = None
        self._text = {}  # (pid, "comm" | "cmdline") -> stripped text, or None when unreadable
        self._cgroups = {}  # cgroup path -> [pids]

    def pids(self):
        if self._pids is None:
            self._pids = self.kernel.pids()
        return self._pids

    def exists(self, pid):
        if self._pids is None:
            return self.kernel.exists("/proc/%d" % pid)
        if self._pid_set is None:
            self._pid_set = set(self._pids)
        return pid in self._pid_set

    def cgroup_procs(self, cgroup_path):
        if cgroup_path not in self._cgroups:
            self._cgroups[cgroup_path] = self.kernel.cgroup_procs(cgroup_path)
        return self._cgroups[cgroup_path]

    def comm(self, pid):
        return self._read(pid, "comm")

    def cmdline(self, pid):
        return self._read(pid, "cmdline")

    def _read(self, pid, name):
        key = (pid, name)
        if key not in self._text:
            raw = self.kernel.proc_text(pid, name)
            self._text[key] = None if raw is None else raw.replace("\x00", " ").strip()
        return self._text[key]


def match_pids(kernel, match, self_pid=None, snapshot=None):
    """PIDs matching one workload's `match` (all given criteria must hold); ``snapshot`` is the
    interval's ProcSnapshot when several workloads are matched."""
    self_pid = os.getpid() if self_pid is None else self_pid
    snapshot = snapshot or ProcSnapshot(kernel)
    if "pid" in match:
        candidates = [match["pid"]] if snapshot.exists(match["pid"]) else []
    elif "cgroup" in match:
        candidates = snapshot.cgroup_procs(match["cgroup"])
    else:
        candidates = snapshot.pids()
    if "cgroup" in match and "pid" in match:
        candidates = [p for p in candidates if p in set(snapshot.cgroup_procs(match["cgroup"]))]
    result = []
    for pid in candidates:
        if pid == self_pid:
            continue
        if "comm" in match:
            comm = snapshot.comm(pid)
            if comm is None or not match["comm"].search(comm):
                continue
        if "cmdline" in match or "comm" in match:
            cmdline = snapshot.cmdline(pid)
            if not cmdline:  # kernel threads have no cmdline and no user memory
                continue
            if "cmdline" in match and not match["cmdline"].search(cmdline):
                continue
        result.append(pid)
    return result


def assign_workloads(kernel, workloads, self_pid=None):
    """{workload name: [pids]}; a PID matched by several workloads goes to the first in config order.
    One ProcSnapshot serves all workloads."""
    snapshot = ProcSnapshot(kernel)
    taken = set()
    result = {}
    for workload in workloads:
        pids = [p for p in match_pids(kernel, workload["match"], self_pid, snapshot) if p not in taken]
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
