"""One agent over the recorded trixie guest: real files, DAMON tree as recorded, move_pages simulated."""

import json
import os
import shutil

from conftest import ListStream, SimulatedPages, agent_without_waits, copy_guest_root, recorded_workload
from tierd import metrics, status
from tierd.agent import Agent
from tierd.config import validate
from tierd.log import Logger

KDAMONDS = "sys/kernel/mm/damon/admin/kdamonds"


def make_agent(guest_root, tmp_path, policy, **extra):
    info = recorded_workload()
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("0\n")
    placement = {(info["pid"], info["address"] + i * 4096): 1 for i in range(info["length"] // 4096)}
    kernel = SimulatedPages(guest_root, placement)
    data = {"interval_seconds": 2, "damon": {"sample_us": 100000, "aggr_us": 1000000, "warmup_aggregations": 2},
            "heat": {"hot_threshold": 0.3, "cold_threshold": 0.05, "warmup_intervals": 2},
            "mover": {"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3},
            "state_file": str(tmp_path / "state.json"),
            "metrics": {"textfile": str(tmp_path / "prom" / "tierd.prom")},
            "workloads": [{"name": "wl", "match": {"pid": info["pid"]}, "vmas": {"min_size": "32M"},
                           "policy": policy},
                          {"name": "ignored", "match": {"comm": "^nothing-runs-this$"}}]}
    data.update(extra)
    stream = ListStream()
    agent = agent_without_waits(Agent, kernel, validate(data), Logger(stream))
    return agent, kernel, placement, info, stream


def test_hot_region_moves_to_dram_and_cold_stays(guest_root, tmp_path):
    agent, kernel, placement, info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    assert "event=start backend=damon dram_nodes=0 pmem_nodes=1 nodes_from=memory_tiering" in stream.lines[0]
    agent.run(max_intervals=4)
    pages = [placement[(info["pid"], info["address"] + i * 4096)] for i in range(info["length"] // 4096)]
    hot, cold = pages[:info["hot_pages"]], pages[info["hot_pages"]:]
    # The recorded DAMON hot region covers ~89 % of the hot part and overhangs into the cold part by 290
    # pages (DAMON's region boundaries are approximate): exactly that region is promoted.
    assert sum(1 for n in hot if n == 0) / len(hot) >= 0.85
    assert sum(1 for n in cold if n == 1) / len(cold) >= 0.95
    first_hot_region = [(0x7f4bfd364000 - info["address"]) // 4096, (0x7f4bfdfee000 - info["address"]) // 4096]
    assert [i for i, n in enumerate(pages) if n == 0] == list(range(*first_hot_region))
    # move_pages was called in batches of the configured size (1024), never page by page
    moves = [n for _pid, n, node in kernel.calls if node is not None]
    assert moves and max(moves) == 1024 and len(moves) == -(-sum(moves) // 1024)
    state = json.load(open(str(tmp_path / "state.json")))
    wl = state["workloads"]["wl"]
    assert wl["promoted_total"] == sum(1 for n in pages if n == 0)
    assert state["unmanaged_workloads"] == ["ignored"]
    assert "ignored" not in state["workloads"]
    prom = open(str(tmp_path / "prom" / "tierd.prom")).read()
    assert 'tierd_pages_moved_total{direction="promote",workload="wl"} %d' % wl["promoted_total"] in prom
    assert "WORKLOAD" in status.render(state) and "wl " in status.render(state)
    # DAMON released on exit
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read() == "0"


def test_pmem_max_percent_is_enforced(guest_root, tmp_path):
    agent, _kernel, placement, info, _stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    agent.run(max_intervals=2)
    total = info["length"] // 4096
    on_pmem = sum(1 for node in placement.values() if node == 1)
    assert on_pmem <= int(total * 0.30)
    assert on_pmem >= int(total * 0.30) - 1  # and not more promoted than needed
    # the hot part went first
    hot_on_dram = sum(1 for i in range(info["hot_pages"]) if placement[(info["pid"], info["address"] + i * 4096)] == 0)
    assert hot_on_dram / info["hot_pages"] >= 0.85


def test_no_bouncing_within_residency(guest_root, tmp_path):
    agent, kernel, placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    agent.run(max_intervals=6)
    moved_pages = {}
    # every page moved at most once: the recorded heat does not change, and the thresholds leave a gap
    moves = [n for _pid, n, node in kernel.calls if node is not None]
    assert sum(moves) == agent.state["workloads"]["wl"]["promoted_total"] + agent.state["workloads"]["wl"]["demoted_total"]
    assert agent.state["workloads"]["wl"]["demoted_total"] == 0
    del moved_pages


def test_dry_run_moves_nothing(guest_root, tmp_path):
    agent, kernel, placement, _info, stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    agent.dry_run = True
    agent.run(max_intervals=2)
    assert all(node == 1 for node in placement.values())
    assert any("event=would_move" in line for line in stream.lines)


def test_metrics_text_format():
    text = metrics.render({"backend": "damon", "intervals": 3, "interval_seconds": 0.5, "workloads": {
        "vm\"1": {"pids": [1], "pages_per_node": {"0": 10, "1": 5}, "hot_pages": 2, "cold_pages": 3,
                  "pmem_limit_pages": None, "promoted_total": 7, "demoted_total": 1, "failed_total": 0}}})
    assert 'tierd_workload_resident_pages{node="1",workload="vm\\"1"} 5' in text
    assert 'tierd_workload_pmem_limit_pages{workload="vm\\"1"} -1' in text
    assert "# TYPE tierd_pages_moved_total counter" in text


def test_huge_page_blocks_when_thp_is_enabled(guest_root, tmp_path):
    thp = os.path.join(guest_root, "sys/kernel/mm/transparent_hugepage")
    os.makedirs(thp)
    open(os.path.join(thp, "enabled"), "w").write("[always] madvise never\n")
    open(os.path.join(thp, "hpage_pmd_size"), "w").write("2097152\n")
    agent, kernel, placement, info, stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    assert any("event=blocks pages=512" in line for line in stream.lines)
    agent.run(max_intervals=2)
    total = info["length"] // 4096
    on_pmem = sum(1 for node in placement.values() if node == 1)
    assert int(total * 0.30) - 512 < on_pmem <= int(total * 0.30)
    # whole 2 MiB blocks moved: every aligned block is entirely on one node
    for block in range(info["address"] // 2097152, (info["address"] + info["length"]) // 2097152):
        nodes = {placement[(info["pid"], a)] for a in range(block * 2097152, (block + 1) * 2097152, 4096)
                 if (info["pid"], a) in placement}
        assert len(nodes) == 1


def test_status_shows_placement_after_the_moves(guest_root, tmp_path):
    agent, _kernel, placement, info, _stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    agent.run(max_intervals=1)
    per_node = agent.state["workloads"]["wl"]["pages_per_node"]
    assert per_node["1"] == sum(1 for node in placement.values() if node == 1)
    assert per_node["0"] == sum(1 for node in placement.values() if node == 0)


def test_hot_promotions_wait_until_damon_regions_have_split(guest_root, tmp_path):
    # 10 aggregations of 1 s at 2 s intervals: no hot page moves before interval 5, then the hot region does.
    agent, kernel, placement, info, _stream = make_agent(
        guest_root, tmp_path, {"direction": "both"},
        damon={"sample_us": 100000, "aggr_us": 1000000, "warmup_aggregations": 10})
    for _interval in range(4):
        agent.step()
    assert all(node == 1 for node in placement.values())
    agent.step()
    assert agent.state["workloads"]["wl"]["promoted_total"] > 0.85 * info["hot_pages"]
    agent.close()


def test_move_budget_caps_an_interval_and_the_rest_follows(guest_root, tmp_path):
    budget = 2048
    agent, _kernel, placement, info, stream = make_agent(
        guest_root, tmp_path, {"pmem_max_percent": 30},
        mover={"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3,
               "block_pages": 1, "max_pages_per_interval": budget})
    total = info["length"] // 4096
    agent.run(max_intervals=1)
    assert sum(1 for node in placement.values() if node == 0) == budget
    state = json.loads(open(agent.cfg["state_file"]).read())
    needed = total - int(total * 0.30)
    assert state["workloads"]["wl"]["deferred_pages"] == needed - budget
    assert state["move_budget"] == {"pages": budget, "deferred_pages": needed - budget}
    assert any("event=move_budget_reached budget_pages=%d deferred_pages=%d" % (budget, needed - budget) in line
               for line in stream.lines)
    assert 'tierd_pages_deferred{workload="wl"} %d' % (needed - budget) in metrics.render(state)
    # The hottest pages went first: all of the budget is in the hot part.
    hot = [placement[(info["pid"], info["address"] + i * 4096)] for i in range(info["hot_pages"])]
    assert hot.count(0) == min(budget, info["hot_pages"])


def test_demoted_pages_are_grouped_by_the_tier_below_the_node_each_is_on(tmp_path):
    """Agent._demotion_targets over the two-socket topology: one task's pages on both sockets' DRAM
    go to the PMEM near each page, and a page with no allowed target to the caller's node."""
    from types import SimpleNamespace

    from test_topology import two_socket

    topology = two_socket(tmp_path, [(100, 1)], mems_allowed="0-2")
    agent = SimpleNamespace(pmem_nodes=[2, 3], kernel=topology.kernel, topology=topology)
    pages = [(0x1000, 0, 7), (0x2000, 1, 7), (0x3000, 0, 7)]
    # Node 3 is outside the cpuset (0-2): node 1's page goes to node 2, the nearest allowed.
    assert Agent._demotion_targets(agent, 100, pages, 3) == [(2, pages)]
    topology = two_socket(tmp_path, [(100, 1)])
    agent.kernel, agent.topology = topology.kernel, topology
    assert Agent._demotion_targets(agent, 100, pages, 3) == [(2, [pages[0], pages[2]]), (3, [pages[1]])]
    agent.pmem_nodes = [2]
    assert Agent._demotion_targets(agent, 100, pages, 2) == [(2, pages)]


def test_a_node_budget_demotes_the_coldest_pages_on_that_node(guest_root, tmp_path):
    """The workload starts wholly on DRAM node 0 with a node budget of a quarter of it (and a
    host-wide budget too big to matter, so only the node's budget acts): the pages over it go to
    PMEM, coldest first; the state, status and metrics show the budget and its use."""
    info = recorded_workload()
    total = info["length"] // 4096
    budget = total // 4
    agent, _kernel, placement, info, stream = make_agent(
        guest_root, tmp_path, {"direction": "demote"}, dram_budget="1T",
        dram_budget_per_node={"0": budget * 4096},
        mover={"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3, "block_pages": 1})
    for key in placement:
        placement[key] = 0
    agent.run(max_intervals=4)
    pages = [placement[(info["pid"], info["address"] + i * 4096)] for i in range(total)]
    assert pages.count(0) <= budget
    assert pages.count(0) >= budget - 1024  # not more demoted than the budget asks (one batch of slack)
    # coldest first: what stayed on DRAM is mostly the hot part
    assert pages[:info["hot_pages"]].count(0) >= 0.8 * min(budget, info["hot_pages"])
    assert any("event=node_budget_exceeded workload=wl node=0" in line for line in stream.lines)
    state = json.load(open(str(tmp_path / "state.json")))
    assert state["node_budgets"] == {"0": {"budget_pages": budget, "used_pages": pages.count(0)}}
    assert "node 0 budget %.1f MiB" % (budget * 4096 / 1048576.0) in status.render(state)
    assert 'tierd_node_budget_used_pages{node="0"} %d' % pages.count(0) in metrics.render(state)


def over_a_budget_with_a_second_dram_node(guest_root, tmp_path, budget, dry_run=False):
    """(agent, placement, info, stream): DRAM nodes 0 and 2 (by config), PMEM node 1, the workload
    wholly on node 0 under a budget of ``budget`` pages there, its cpuset allowing node 2."""
    node_dir = os.path.join(guest_root, "sys/devices/system/node")
    os.makedirs(os.path.join(node_dir, "node2"))
    with open(os.path.join(node_dir, "node0", "meminfo")) as handle:
        meminfo = handle.read().replace("Node 0 ", "Node 2 ")
    with open(os.path.join(node_dir, "node2", "meminfo"), "w") as handle:
        handle.write(meminfo)
    with open(os.path.join(node_dir, "node2", "cpulist"), "w") as handle:
        handle.write("\n")
    with open(os.path.join(node_dir, "online"), "w") as handle:
        handle.write("0-2\n")
    status_path = os.path.join(guest_root, "proc", str(recorded_workload()["pid"]), "status")
    with open(status_path) as handle:
        status_text = handle.read()
    with open(status_path, "w") as handle:  # the recorded task's cpuset allows the nodes it had: 0-1
        handle.write(status_text.replace("Mems_allowed_list:\t0-1", "Mems_allowed_list:\t0-2"))
    agent, _kernel, placement, info, stream = make_agent(
        guest_root, tmp_path, {"direction": "demote"}, dram_budget="1T", dram_budget_per_node={"0": budget * 4096},
        nodes={"dram": [0, 2], "pmem": [1]},
        mover={"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3, "block_pages": 1})
    agent.dry_run = dry_run
    for key in placement:
        placement[key] = 0
    return agent, placement, info, stream


def test_hot_pages_over_a_node_budget_go_to_another_dram_node_not_down_a_tier(guest_root, tmp_path):
    """Two DRAM nodes (0 and 2, by config) and PMEM node 1; the workload starts wholly on node 0,
    whose budget (2048 pages) is smaller than its hot set (3276): the cold pages over it are
    demoted, the hot ones it cannot keep go to node 2 in one move, not to PMEM (from where they
    would be promoted again next interval), and are counted as relocated. With the recorded cpuset
    (nodes 0-1) node 2 is not allowed, and they are demoted as before."""
    budget = 2048
    agent, placement, info, _stream = over_a_budget_with_a_second_dram_node(guest_root, tmp_path, budget)
    agent.run(max_intervals=4)
    total = info["length"] // 4096
    pages = [placement[(info["pid"], info["address"] + i * 4096)] for i in range(total)]
    hot, cold = pages[:info["hot_pages"]], pages[info["hot_pages"]:]
    assert pages.count(0) <= budget
    # The recorded DAMON regions leave 356 pages of the hot part below the hot threshold: those go
    # down as cold pages do. Demoting the hot pages too sent 1518 there.
    assert hot.count(1) <= 0.12 * len(hot), "hot pages were demoted: %d of %d on PMEM" % (hot.count(1), len(hot))
    assert hot.count(2) >= len(hot) - budget - 0.12 * len(hot)
    assert cold.count(1) >= 0.9 * len(cold)
    wl = agent.state["workloads"]["wl"]
    assert wl["relocated_total"] == pages.count(2) > 0
    assert 'tierd_pages_moved_total{direction="relocate",workload="wl"} %d' % pages.count(2) in metrics.render(agent.state)


def _moves_logged(stream, event):
    """{(direction, node): pages} of the ``event`` lines (moved / would_move)."""
    moves = {}
    for line in stream.lines:
        if "event=%s " % event in line:
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            key = (fields["direction"], fields["node"])
            moves[key] = moves.get(key, 0) + int(fields["pages"])
    return moves


def test_a_dry_run_over_a_node_budget_predicts_the_real_runs_moves_relocation_included(tmp_path):
    """Two intervals with and without dry_run, each on its own copy of the guest (the second the
    first that moves pages, so both decide from the same placement): what the dry run says it would move then, per direction and node, is
    what the real run moves (it once predicted every page over the budget as demoted, none
    relocated), and it moves nothing."""
    agents = {}
    for dry_run in (True, False):
        base = tmp_path / ("dry" if dry_run else "real")
        base.mkdir()
        agents[dry_run] = over_a_budget_with_a_second_dram_node(copy_guest_root(base), base, 2048, dry_run=dry_run)
    for agent, _placement, _info, _stream in agents.values():
        agent.run(max_intervals=2)
    lines = agents[False][3].lines
    first_interval_end = next(i for i, line in enumerate(lines) if "event=interval n=1 " in line)
    assert not any("event=moved " in line for line in lines[:first_interval_end]), "not one moving interval"
    real = _moves_logged(agents[False][3], "moved")
    assert ("relocate", "2") in real, real
    assert _moves_logged(agents[True][3], "would_move") == real
    assert set(agents[True][1].values()) == {0}


def test_hot_pages_over_a_node_budget_are_demoted_where_the_cpuset_allows_no_other_dram_node(guest_root, tmp_path):
    """As above without widening the task's cpuset (nodes 0-1): node 2 may not hold its pages, so
    what has to leave node 0 is demoted to node 1, hot or not, and nothing is counted as relocated."""
    node_dir = os.path.join(guest_root, "sys/devices/system/node")
    shutil.copytree(os.path.join(node_dir, "node0"), os.path.join(node_dir, "node2"))
    with open(os.path.join(node_dir, "online"), "w") as handle:
        handle.write("0-2\n")
    agent, _kernel, placement, info, _stream = make_agent(
        guest_root, tmp_path, {"direction": "demote"}, dram_budget="1T", dram_budget_per_node={"0": 2048 * 4096},
        nodes={"dram": [0, 2], "pmem": [1]},
        mover={"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3, "block_pages": 1})
    for key in placement:
        placement[key] = 0
    agent.run(max_intervals=4)
    pages = list(placement.values())
    assert pages.count(0) <= 2048 and pages.count(2) == 0
    assert agent.state["workloads"]["wl"]["relocated_total"] == 0


def test_promotions_fill_a_node_only_to_its_budget(guest_root, tmp_path):
    """A 30 % PMEM quota wants 70 % of the pages on DRAM; node 0's budget allows 2048 pages: the
    budget wins (as the host-wide one does), the hottest pages take it, nothing more moves."""
    agent, _kernel, placement, info, stream = make_agent(
        guest_root, tmp_path, {"pmem_max_percent": 30}, dram_budget="1T", dram_budget_per_node={"0": 2048 * 4096},
        mover={"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3, "block_pages": 1})
    agent.run(max_intervals=3)
    assert sum(1 for node in placement.values() if node == 0) == 2048
    hot = [placement[(info["pid"], info["address"] + i * 4096)] for i in range(info["hot_pages"])]
    assert hot.count(0) == 2048


def test_a_node_budget_for_a_node_that_is_not_dram_is_warned_about_once(guest_root, tmp_path):
    agent, _kernel, placement, _info, stream = make_agent(
        guest_root, tmp_path, {"pmem_max_percent": 30}, dram_budget_per_node={"5": "1G"})
    agent.run(max_intervals=2)
    warnings = [line for line in stream.lines if "event=dram_budget_node_unknown" in line]
    assert len(warnings) == 1 and "node=5 dram_nodes=0" in warnings[0]
    assert agent.state["node_budgets"] == {}
    assert sum(1 for node in placement.values() if node == 0) > 0  # no budget: the quota is met


def test_mappings_are_selected_again_only_when_the_maps_text_changes(guest_root, tmp_path, monkeypatch):
    agent, kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    from tierd import discovery
    selections = []
    select = discovery.select_vmas
    monkeypatch.setattr(discovery, "select_vmas", lambda text, vma_filter: selections.append(text) or
                        select(text, vma_filter))
    first, _assignment = agent._targets()
    again, _assignment = agent._targets()
    assert again == first and len(selections) == 1
    maps = kernel.proc_text(info["pid"], "maps")
    grown = maps + "7ffff0000000-7ffff4000000 rw-p 00000000 00:00 0 \n"  # a new 64 MiB anonymous mapping
    monkeypatch.setattr(kernel, "proc_text", lambda pid, name: grown if name == "maps" else None)
    changed, _assignment = agent._targets()
    assert len(selections) == 2
    assert changed[info["pid"]] == first[info["pid"]] + [(0x7ffff0000000, 0x7ffff4000000, "")]
    agent.cfg["workloads"][0]["vmas"] = {"min_size": 128 << 20}  # a reload's new filter: selected again
    assert info["pid"] not in agent._targets()[0] and len(selections) == 3
