"""Placement at extent cost: numa_maps totals, sampled estimates, exact picks, recent moves."""

import os

from conftest import ListStream, SimulatedPages, recorded_workload
from tierd.agent import Agent
from tierd.config import validate
from tierd.log import Logger
from tierd.placement import SAMPLES_PER_EXTENT, Placement, RecentMoves, pick_pages

P = 4096
KDAMONDS = "sys/kernel/mm/damon/admin/kdamonds"


def simulated(guest_root, first_on_dram=0):
    """The recorded workload's pages, the first ``first_on_dram`` on node 0 and the rest on node 1."""
    info = recorded_workload()
    pages = info["length"] // P
    placement = {(info["pid"], info["address"] + i * P): (0 if i < first_on_dram else 1) for i in range(pages)}
    return SimulatedPages(guest_root, placement), info, pages


def test_estimates_sample_a_few_pages_per_extent(guest_root):
    kernel, info, pages = simulated(guest_root, first_on_dram=4096)
    base = info["address"]
    ranges = [(base, base + 4096 * P), (base + 4096 * P, base + pages * P), (base, base + 5 * P)]
    estimates = Placement(kernel, 10).estimate(info["pid"], ranges)
    assert estimates == [{0: 4096.0}, {1: float(pages - 4096)}, {0: 5.0}]
    # one status query, SAMPLES_PER_EXTENT pages of each big range and every page of the small one
    assert [(n, node) for _pid, n, node in kernel.calls] == [(2 * SAMPLES_PER_EXTENT + 5, None)]
    # a mixed range is estimated from its samples: half of 8 samples on each node
    mixed = Placement(kernel, 10).estimate(info["pid"], [(base + 2048 * P, base + 6144 * P)])
    assert mixed == [{0: 2048.0, 1: 2048.0}]


def test_node_totals_are_read_once_and_kept_exact_by_moves(guest_root):
    kernel, info, pages = simulated(guest_root)
    vmas = [tuple(v) for v in info["vmas"]]
    placement = Placement(kernel, refresh_intervals=5)
    assert placement.node_pages(info["pid"], vmas, 1) == {info["address"]: {1: pages}}
    placement.record_move(info["pid"], info["address"], 1, 0, 100)
    assert placement.node_pages(info["pid"], vmas, 4) == {info["address"]: {0: 100, 1: pages - 100}}
    assert placement.reads == 1
    # due again after refresh_intervals: the kernel's own count replaces tierd's bookkeeping
    assert placement.node_pages(info["pid"], vmas, 6) == {info["address"]: {1: pages}}
    assert placement.reads == 2
    # a changed set of mappings is re-read at once
    placement.node_pages(info["pid"], vmas + [(0x1000, 0x2000, "")], 7)
    assert placement.reads == 3


def test_drift_between_samples_and_totals_triggers_a_reread(guest_root):
    placement = Placement(None, 100)
    counts = {0x1000: {0: 700, 1: 300}}
    assert not placement.drifted(counts, [{0: 690.0}, {1: 310.0}])  # 1 % off: sampling noise
    assert placement.drifted(counts, [{0: 600.0}, {1: 400.0}])  # 10 % moved behind tierd's back
    assert placement.drifted({0x1000: {}}, [{1: 8.0}])  # pages appeared


def test_recent_moves_block_their_pages_until_they_expire():
    recent = RecentMoves()
    recent.add(7, [0x10000, 0x11000, 0x12000, 0x20000], interval=1)
    blocked = recent.blocked(7)
    assert [blocked(a) for a in (0x10000, 0x12000, 0x13000, 0x20000, 0x21000)] == [True, True, False, True, False]
    assert recent.ranges[7] == [(0x10000, 0x13000, 1), (0x20000, 0x21000, 1)]
    recent.expire({7}, interval=3, residency=3)
    assert recent.blocked(7)(0x10000)
    recent.expire({7}, interval=4, residency=3)
    assert not recent.blocked(7)(0x10000)
    recent.add(8, [0x1000], interval=4)
    recent.expire(set(), interval=4, residency=3)  # the process is gone
    assert recent.ranges == {}


def test_pick_pages_takes_whole_blocks_and_skips_blocked(guest_root):
    kernel, info, _pages = simulated(guest_root, first_on_dram=1024)
    pid, base = info["pid"], info["address"]
    high = base + 4096 * P
    # promotion: PMEM pages from a range that starts on DRAM; 600 wanted, 512-page blocks → 1024
    picked = pick_pages(kernel, pid, base, high, {1}, 600, 512, overshoot=True, blocked=lambda a: False)
    assert len(picked) == 1024 and picked[0] == (base + 1024 * P, 1)
    # demotion never overshoots: 600 wanted → one block of 512
    picked = pick_pages(kernel, pid, base, high, {0}, 600, 512, overshoot=False, blocked=lambda a: False)
    assert len(picked) == 512 and {node for _a, node in picked} == {0}
    # recently moved pages stay put
    picked = pick_pages(kernel, pid, base, high, {0}, 10, 1, overshoot=False, blocked=lambda a: a < base + 5 * P)
    assert [a for a, _n in picked] == [base + i * P for i in range(5, 15)]


def test_a_quiet_interval_queries_samples_not_pages(guest_root, tmp_path):
    """Once placement is settled, an interval's status queries follow the extents, not the 16384 pages."""
    kernel, info, pages = simulated(guest_root)
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("0\n")
    cfg = validate({"damon": {"sample_us": 100000, "aggr_us": 1000000, "warmup_aggregations": 0},
                    "heat": {"hot_threshold": 0.3, "cold_threshold": 0.05, "warmup_intervals": 2},
                    "mover": {"rate_limit_mbps": 100000},
                    "state_file": str(tmp_path / "state.json"),
                    "workloads": [{"name": "wl", "match": {"pid": info["pid"]}, "vmas": {"min_size": "32M"},
                                   "policy": {"direction": "promote"}}]})
    agent = Agent(kernel, cfg, Logger(ListStream()))
    for _interval in range(3):  # the hot region is promoted in these
        agent.step()
    moved = agent.state["workloads"]["wl"]["promoted_total"]
    assert moved > 0
    kernel.calls = []
    agent.step()
    extents = len(agent.heat.extents(info["pid"], info["address"], info["address"] + info["length"]))
    queried = sum(n for _pid, n, node in kernel.calls if node is None)
    assert queried <= SAMPLES_PER_EXTENT * extents < pages // 10
    assert agent.state["workloads"]["wl"]["pages_per_node"] == {"0": moved, "1": pages - moved}
    agent.close()
