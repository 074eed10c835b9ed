import os
import re

from conftest import DAMON_FIXTURE, recorded_pagemap, recorded_workload
from tierd import discovery
from tierd.kernel import (PAGEMAP_PFN_MASK, PAGEMAP_PRESENT, Kernel, parse_cpulist, parse_maps,
                          parse_numa_maps)

ROOT = os.path.join(DAMON_FIXTURE, "root")


def test_parse_cpulist():
    assert parse_cpulist("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    assert parse_cpulist("") == []


def test_recorded_nodes_tiers_and_meminfo():
    kernel = Kernel(ROOT)
    assert kernel.online_nodes() == [0, 1]
    assert kernel.node_cpus(0) == [0, 1] and kernel.node_cpus(1) == []
    assert kernel.node_meminfo(1)["MemTotal"] == 917504 * 1024  # 896 MiB of onlined pmem
    assert kernel.memory_tiers() == {4: [0], 225: [1]}


def test_numa_maps_of_the_workload_region_adds_up():
    info = recorded_workload()
    text = Kernel(ROOT).proc_text(info["pid"], "numa_maps")
    entry = parse_numa_maps(text)[info["address"]]
    assert entry["policy"] == "bind:1"
    assert entry["anon"] == info["length"] // 4096
    assert entry.get("N0", 0) + entry.get("N1", 0) == entry["anon"]


def test_numa_maps_of_named_mappings_only_parses_those():
    info = recorded_workload()
    text = Kernel(ROOT).proc_text(info["pid"], "numa_maps")
    everything = parse_numa_maps(text)
    assert len(everything) > 1
    assert parse_numa_maps(text, {info["address"]}) == {info["address"]: everything[info["address"]]}
    assert parse_numa_maps(text + "not-an-address default\n", {info["address"]}) == {
        info["address"]: everything[info["address"]]}
    assert parse_numa_maps(text, set()) == {}


def test_recorded_pagemap_has_present_pages_with_frames(guest_root):
    info = recorded_workload()
    start, entries = recorded_pagemap()
    read = Kernel(guest_root).read_pagemap(info["pid"], start, len(entries))
    assert list(read) == entries
    assert all(e & PAGEMAP_PRESENT for e in read)  # the workload wrote every page
    pfns = [e & PAGEMAP_PFN_MASK for e in read]
    assert all(pfns) and len(set(pfns)) == len(pfns)


def test_select_vmas_keeps_anonymous_private_only():
    info = recorded_workload()
    maps = Kernel(ROOT).proc_text(info["pid"], "maps")
    every = discovery.select_vmas(maps, {"names": None, "min_size": 0})
    names = {name for _s, _e, name in every}
    assert names <= {"", "[heap]", "[stack]"}
    file_backed = [v for v in parse_maps(maps) if v["inode"]]
    assert file_backed and not any(v["start"] == s for v in file_backed for s, _e, _n in every)
    big = discovery.select_vmas(maps, {"names": None, "min_size": 32 << 20})
    assert big == [(info["address"], info["address"] + info["length"], "")]
    heap = discovery.select_vmas(maps, {"names": ["[heap]"], "min_size": 0})
    assert len(heap) == 1 and heap[0][2] == "[heap]"


def test_match_by_cmdline_comm_pid_and_cgroup(tmp_path):
    info = recorded_workload()
    kernel = Kernel(ROOT)
    assert discovery.match_pids(kernel, {"cmdline": re.compile(r"workload\.py .*--info")}, self_pid=1) == [info["pid"]]
    assert discovery.match_pids(kernel, {"comm": re.compile(r"^python")}, self_pid=1) == [info["pid"]]
    assert discovery.match_pids(kernel, {"comm": re.compile(r"^qemu")}, self_pid=1) == []
    assert discovery.match_pids(kernel, {"pid": info["pid"]}, self_pid=1) == [info["pid"]]
    assert discovery.match_pids(kernel, {"pid": 999999}, self_pid=1) == []
    # tierd never manages itself
    assert discovery.match_pids(kernel, {"pid": info["pid"]}, self_pid=info["pid"]) == []

    cg = tmp_path / "sys" / "fs" / "cgroup" / "machine.slice" / "vm1.scope"
    (cg / "vcpu0").mkdir(parents=True)
    (cg / "cgroup.procs").write_text("101\n102\n")
    (cg / "vcpu0" / "cgroup.procs").write_text("103\n")
    assert Kernel(str(tmp_path)).cgroup_procs("/machine.slice/vm1.scope") == [101, 102, 103]


def test_first_workload_in_config_order_wins_a_pid():
    info = recorded_workload()
    workloads = [{"name": "a", "match": {"comm": re.compile("python")}},
                 {"name": "b", "match": {"pid": info["pid"]}}]
    assert discovery.assign_workloads(Kernel(ROOT), workloads, self_pid=1) == {"a": [info["pid"]], "b": []}


def test_vanished_process_is_quiet():
    kernel = Kernel(ROOT)
    assert kernel.proc_text(999999, "maps") is None
    assert kernel.read_pagemap(999999, 0, 10) is None


class CountingKernel(Kernel):
    """Counts /proc walks and per-process reads."""

    def __init__(self, root):
        Kernel.__init__(self, root)
        self.walks = 0
        self.reads = {}

    def pids(self):
        self.walks += 1
        return Kernel.pids(self)

    def proc_text(self, pid, name):
        self.reads[(pid, name)] = self.reads.get((pid, name), 0) + 1
        return Kernel.proc_text(self, pid, name)


def test_one_proc_walk_serves_every_workload(tmp_path):
    for pid in range(1000, 1300):
        proc = tmp_path / "proc" / str(pid)
        proc.mkdir(parents=True)
        (proc / "comm").write_text("worker\n")
        (proc / "cmdline").write_text("worker\0--name\0w%d\0" % (pid - 1000))
    workloads = [{"name": "w%d" % n, "match": {"cmdline": re.compile(r"--name w%d$" % n)}} for n in range(200)]
    workloads.append({"name": "by-comm", "match": {"comm": re.compile("^worker$")}})
    kernel = CountingKernel(str(tmp_path))
    assigned = discovery.assign_workloads(kernel, workloads, self_pid=1)
    assert assigned["w7"] == [1007] and assigned["w199"] == [1199]
    assert assigned["by-comm"] == list(range(1200, 1300))  # the rest: the first workload wins a PID
    assert kernel.walks == 1
    assert max(kernel.reads.values()) == 1  # each comm and cmdline read once, not once per workload
    assert len(kernel.reads) == 300 + 300
