"""Promotion and demotion targets on a two-socket host (nodes 0 and 1 with a CPU each, PMEM nodes 2
and 3 near sockets 0 and 1: the distances of the lab's labelled flavour)."""

import os

from tierd.kernel import Kernel
from tierd.topology import Topology

DISTANCES = {0: "10 21 17 28", 1: "21 10 28 17", 2: "17 28 10 28", 3: "28 17 28 10"}
CPUS = {0: "0", 1: "1", 2: "", 3: ""}


def _write(root, path, text):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as handle:
        handle.write(text)


def _stat(tid, cpu, comm="qemu-system-x86 (vm1)"):
    # Fields 3.. after the command name; field 39 (index 36 after ")") is the last CPU.
    rest = ["S"] + ["0"] * 35 + [str(cpu)] + ["0"] * 13
    return "%d (%s) %s\n" % (tid, comm, " ".join(rest))


def two_socket(tmp_path, threads, mems_allowed="0-3"):
    root = str(tmp_path)
    for node in range(4):
        _write(root, "/sys/devices/system/node/node%d/cpulist" % node, CPUS[node] + "\n")
        _write(root, "/sys/devices/system/node/node%d/distance" % node, DISTANCES[node] + "\n")
    for tid, cpu in threads:
        _write(root, "/proc/100/task/%d/stat" % tid, _stat(tid, cpu))
    _write(root, "/proc/100/status", "Name:\tqemu\nMems_allowed_list:\t%s\n" % mems_allowed)
    return Topology(Kernel(root), [0, 1], [2, 3])


def test_a_task_on_socket_1_promotes_to_node_1_and_demotes_to_its_pmem(tmp_path):
    topology = two_socket(tmp_path, [(100, 1), (101, 1), (102, 0)])
    assert topology.home(100) == 1
    assert topology.promotion_node(100) == 1
    assert topology.demotion_target(1) == 3 and topology.demotion_target(0) == 2


def test_a_task_on_socket_0_gets_socket_0s_nodes(tmp_path):
    assert two_socket(tmp_path, [(100, 0)]).promotion_node(100) == 0


def test_the_cpuset_wins_over_where_the_task_runs(tmp_path):
    # Running on socket 1 but confined to node 0 and its PMEM: the nearest allowed nodes.
    topology = two_socket(tmp_path, [(100, 1)], mems_allowed="0,2")
    assert topology.promotion_node(100) == 0
    assert topology.demotion_target(1, allowed={0, 2}) == 2


def test_unknown_task_leaves_the_choice_to_the_caller(tmp_path):
    topology = two_socket(tmp_path, [(100, 1)])
    assert topology.promotion_node(4242) is None


def test_one_dram_and_one_pmem_node_never_decides(tmp_path):
    root = str(tmp_path)
    _write(root, "/sys/devices/system/node/node0/cpulist", "0-1\n")
    _write(root, "/proc/100/task/100/stat", _stat(100, 1))
    assert Topology(Kernel(root), [0], [1]).promotion_node(100) is None


def test_promotions_fill_each_node_only_to_its_own_reserve_then_the_nearest_other(tmp_path):
    topology = two_socket(tmp_path, [(100, 1)])
    key_a, key_b = (100, 0, 0, 4096), (100, 0, 4096, 8192)
    placed = topology.fill_by_headroom([(1, [(key_a, 300), (key_b, 200)])], {0: 1000, 1: 400})
    # Node 1 takes what its headroom allows; the rest of key_b goes to node 0, never past either reserve.
    assert placed == [(0, [(key_b, 100)]), (1, [(key_a, 300), (key_b, 100)])]


def test_promotions_that_fit_nowhere_are_dropped(tmp_path):
    topology = two_socket(tmp_path, [(100, 0)])
    key = (100, 0, 0, 4096)
    assert topology.fill_by_headroom([(0, [(key, 500)])], {0: 50, 1: 0}) == [(0, [(key, 50)])]


def test_a_page_is_demoted_to_the_pmem_near_the_node_it_is_on(tmp_path):
    # The task runs on socket 1, but a page on socket 0's DRAM goes to socket 0's PMEM, as the
    # kernel's own demotion would send it; a page on socket 1's DRAM to socket 1's.
    topology = two_socket(tmp_path, [(100, 1)])
    assert topology.demotion_target(0) == 2
    assert topology.demotion_target(1) == 3


def test_the_cpuset_limits_where_a_page_is_demoted(tmp_path):
    topology = two_socket(tmp_path, [(100, 1)])
    assert topology.demotion_target(1, allowed=[0, 1, 2]) == 2
    assert topology.demotion_target(1, allowed=[0, 1]) is None


def three_tiers(tmp_path):
    """One socket: DRAM node 0, CXL node 1 (tier 2), PMEM node 2 (tier 3), the PMEM *nearer* node 0 by
    distance, so only the tiers' order can make node 1 the demotion target."""
    root = str(tmp_path)
    for node, (cpus, distance) in enumerate([("0-1", "10 30 20"), ("", "30 10 30"), ("", "20 30 10")]):
        _write(root, "/sys/devices/system/node/node%d/cpulist" % node, cpus + "\n")
        _write(root, "/sys/devices/system/node/node%d/distance" % node, distance + "\n")
    for tier, nodes in ((1, "0"), (2, "1"), (3, "2")):
        _write(root, "/sys/devices/virtual/memory_tiering/memory_tier%d/nodelist" % tier, nodes + "\n")
    return Topology(Kernel(root), [0], [1, 2])


def test_with_three_tiers_dram_demotes_to_the_next_tier_and_that_tier_to_the_last(tmp_path):
    topology = three_tiers(tmp_path)
    assert topology.lower_tiers == [[1], [2]]
    assert topology.demotion_target(0) == 1
    assert topology.demotion_target(1) == 2
    assert topology.demotion_target(2) is None
    # A cpuset without the CXL node: DRAM's pages go to the next tier it allows.
    assert topology.demotion_target(0, allowed=[0, 2]) == 2


def test_memory_tiers_that_miss_a_lower_node_count_as_one_tier(tmp_path):
    topology = three_tiers(tmp_path)
    os.unlink(os.path.join(str(tmp_path), "sys/devices/virtual/memory_tiering/memory_tier3/nodelist"))
    assert Topology(topology.kernel, [0], [1, 2]).lower_tiers == [[1, 2]]
    # One tier: the nearest lower node by distance.
    assert Topology(topology.kernel, [0], [1, 2]).demotion_target(0) == 2
