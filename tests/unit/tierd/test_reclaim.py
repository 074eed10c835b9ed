"""Demotion through a workload cgroup's memory.reclaim (tierd/reclaim.py): when it is chosen, what tierd asks."""

import errno
import json
import os

import pytest
from conftest import ListStream, SimulatedPages, agent_without_waits, recorded_workload
from test_mode import set_knobs
from tierd import reclaim, status
from tierd.agent import Agent
from tierd.config import ConfigError, validate
from tierd.kernel import Kernel
from tierd.log import Logger
from tierd.mover import RateLimiter

KDAMONDS = "sys/kernel/mm/damon/admin/kdamonds"
CGROUP = "/tenant.slice/wl.scope"


class SimulatedReclaim(SimulatedPages):
    """memory.reclaim as 6.12 with demotion on does it: N bytes of the cgroup's DRAM pages go to the
    PMEM node, the coldest first (here: the recorded workload's pages past its hot part), counted in
    memory.stat's pgdemote_direct; EAGAIN once there is nothing left on DRAM."""

    def __init__(self, root, placement, hot_addresses):
        SimulatedPages.__init__(self, root, placement)
        self.hot = set(hot_addresses)
        self.reclaims = []
        self.demoted = 0
        self._write_stat()

    def _write_stat(self):
        with open(self.path(os.path.join("/sys/fs/cgroup", CGROUP.lstrip("/"), "memory.stat")), "w") as out:
            out.write("anon 67108864\npgdemote_kswapd 0\npgdemote_direct %d\npgpromote_success 0\n" % self.demoted)

    def cgroup_reclaim(self, cgroup_path, nbytes):
        assert cgroup_path == CGROUP
        self.reclaims.append(nbytes)
        wanted = nbytes // 4096
        on_dram = sorted(key for key, node in self.placement.items() if node == 0)
        order = [key for key in on_dram if key[1] not in self.hot] + [key for key in on_dram if key[1] in self.hot]
        for key in order[:wanted]:
            self.placement[key] = 1
        self.demoted += min(wanted, len(order))
        self._write_stat()
        return len(order) >= wanted


def make_cgroup(root, pid, reclaim_file=True):
    path = os.path.join(root, "sys/fs/cgroup", CGROUP.lstrip("/"))
    os.makedirs(path, exist_ok=True)
    open(os.path.join(path, "cgroup.procs"), "w").write("%d\n" % pid)
    if reclaim_file:
        open(os.path.join(path, "memory.reclaim"), "w").close()


def cgroup_agent(guest_root, tmp_path, match=None, dry_run=False, demote_with="reclaim", kernel_class=None, **extra):
    """The recorded workload faulted on DRAM, as a cgroup, with a 40 MiB DRAM budget, in kernel_promotes."""
    info = recorded_workload()
    set_knobs(guest_root, numa_balancing=2, demotion="true")
    make_cgroup(guest_root, info["pid"])
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("0\n")
    placement = {(info["pid"], info["address"] + i * 4096): 0 for i in range(info["length"] // 4096)}
    hot = [info["address"] + i * 4096 for i in range(info["hot_pages"])]
    kernel = (kernel_class or SimulatedReclaim)(guest_root, placement, hot)
    data = {"interval_seconds": 2, "damon": {"sample_us": 100000, "aggr_us": 1000000, "warmup_aggregations": 2},
            "heat": {"hot_threshold": 0.3, "cold_threshold": 0.05, "warmup_intervals": 2},
            "mover": {"batch_pages": 1024, "rate_limit_mbps": 100000, "min_residency_intervals": 3,
                      "demote_with": demote_with, "lru_gen_idle_seconds": 0},
            "dram_budget": "40M", "state_file": str(tmp_path / "state.json"),
            "workloads": [{"name": "wl", "match": match or {"cgroup": CGROUP}, "vmas": {"min_size": "32M"},
                           "policy": {"direction": "both"}}]}
    data.update(extra)
    stream = ListStream()
    return agent_without_waits(Agent, kernel, validate(data), Logger(stream), dry_run=dry_run), kernel, info, stream


def test_a_cgroup_workload_with_demote_with_reclaim_is_demoted_by_memory_reclaim(guest_root, tmp_path):
    agent, kernel, info, stream = cgroup_agent(guest_root, tmp_path)
    agent.run(max_intervals=3)
    said = ("event=demotion_method workload=wl method=reclaim "
            "reason=\"configured; from all of the cgroup's memory, not only the mappings its vmas select\"")
    assert sum(1 for line in stream.lines if said in line) == 1
    assert not [call for call in kernel.calls if call[2] is not None]  # no move_pages of tierd's own
    total = info["length"] // 4096
    budget = 40 * 256
    # Asked in batches of mover.batch_pages, as much as the budget needed: the kernel chose the pages.
    assert kernel.reclaims and max(kernel.reclaims) == 1024 * 4096
    # The budget and the recorded DAMON cold regions decided how many; the kernel kept the hot part.
    on_dram = [key for key, node in kernel.placement.items() if node == 0]
    assert len(on_dram) <= budget
    assert all(kernel.placement[(info["pid"], address)] == 0 for address in kernel.hot)
    state = json.load(open(str(tmp_path / "state.json")))
    wl = state["workloads"]["wl"]
    assert wl["demote_with"] == "reclaim" and wl["demoted_total"] == total - len(on_dram) == kernel.demoted
    assert any("event=reclaimed workload=wl cgroup=%s asked_pages=" % CGROUP in line for line in stream.lines)
    assert "wl: demoted through its cgroup's memory.reclaim" in status.render(state)


def test_dry_run_reports_the_reclaim_and_writes_nothing(guest_root, tmp_path):
    agent, kernel, _info, stream = cgroup_agent(guest_root, tmp_path, dry_run=True)
    agent.run(max_intervals=2)
    assert kernel.reclaims == []
    assert any("event=would_reclaim workload=wl cgroup=%s pages=" % CGROUP in line for line in stream.lines)


def test_move_pages_configured(guest_root, tmp_path):
    agent, kernel, _info, stream = cgroup_agent(guest_root, tmp_path, demote_with="move_pages")
    agent.run(max_intervals=3)
    assert kernel.reclaims == [] and [call for call in kernel.calls if call[2] == 1]
    assert not any("event=demotion_method" in line for line in stream.lines)


def test_auto_takes_lru_gen_beside_the_kernel_for_a_cgroup_workload(guest_root, tmp_path):
    assert validate({})["mover"]["demote_with"] == "auto"
    agent, kernel, _info, stream = cgroup_agent(guest_root, tmp_path, demote_with="auto", kernel_class=SimulatedLruGen)
    assert "demote_with=auto" in stream.lines[0]
    agent.run(max_intervals=3)
    line = next(line for line in stream.lines if "event=demotion_method" in line)
    assert line.startswith("level=info ") and "method=lru_gen" in line and "kernel_promotes" in line
    assert kernel.lru_commands and not [call for call in kernel.calls if call[2] is not None]


@pytest.mark.parametrize("change, method, reason", [
    ({}, "reclaim", "configured"),
    ({"wanted": "auto"}, "lru_gen", "kernel_promotes, a cgroup workload"),
    ({"wanted": "auto", "mode": "tierd"}, "move_pages", "tiering_mode tierd"),
    ({"wanted": "auto", "lru": False}, "move_pages", "multi-gen LRU is off"),
    ({"wanted": "reclaim", "mode": "tierd"}, "reclaim", "configured"),
    ({"wanted": "move_pages"}, "move_pages", "configured"),
    ({"match": {"cgroup": CGROUP, "comm": "^qemu"}}, "move_pages", "matched by more than its cgroup"),
    ({"match": {"cmdline": "x"}}, "move_pages", "matched by more than its cgroup"),
    ({"demotion": False}, "move_pages", "memory.reclaim would swap out or drop pages"),
    ({"demotion": None}, "move_pages", "memory.reclaim would swap out or drop pages"),
    ({"has_file": False}, "move_pages", "no memory.reclaim"),
    ({"wanted": "auto", "vmas": {"names": None, "min_size": 16 << 20}}, "lru_gen",
     "from all of the cgroup's memory, not only the mappings its vmas select"),
    ({"vmas": {"names": ["[heap]"], "min_size": 0}}, "reclaim", "configured; from all of the cgroup's memory"),
])
def test_method_for(tmp_path, change, method, reason):
    root = str(tmp_path)
    make_cgroup(root, 1, reclaim_file=change.get("has_file", True))
    if change.get("lru", True):
        os.makedirs(os.path.join(root, "sys/kernel/mm/lru_gen"))
        open(os.path.join(root, "sys/kernel/mm/lru_gen/enabled"), "w").write("0x0007\n")
        os.makedirs(os.path.join(root, "sys/kernel/debug"))
        open(os.path.join(root, "sys/kernel/debug/lru_gen"), "w").close()
    workload = {"name": "wl", "match": change.get("match", {"cgroup": CGROUP}),
                "vmas": change.get("vmas", {"names": None, "min_size": 0})}
    found = reclaim.method_for(workload, change.get("wanted", "reclaim"), change.get("mode", "kernel_promotes"),
                               change.get("demotion", True), Kernel(root))
    assert found[0] == method and reason in found[1]


def test_explicit_reclaim_that_cannot_be_used_is_a_warning_and_falls_back(guest_root, tmp_path):
    agent, kernel, _info, stream = cgroup_agent(guest_root, tmp_path, match={"cgroup": CGROUP, "comm": "."})
    agent.run(max_intervals=3)
    line = next(line for line in stream.lines if "event=demotion_method" in line)
    assert "level=warning" in line and "method=move_pages" in line
    assert kernel.reclaims == [] and [call for call in kernel.calls if call[2] == 1]
    assert sum(1 for line in stream.lines if "event=demotion_method" in line) == 1  # logged once, not per interval


def test_config_demote_with():
    with pytest.raises(ConfigError) as exc:
        validate({"mover": {"demote_with": "lru"}})
    assert str(exc.value) == "mover.demote_with: 'lru' is not valid; choose one of: auto, move_pages, reclaim, lru_gen"


class Recording(Kernel):
    def __init__(self, root, eagain_after=None):
        Kernel.__init__(self, root)
        self.writes = []
        self.eagain_after = eagain_after

    def cgroup_reclaim(self, cgroup_path, nbytes):
        self.writes.append(nbytes)
        return self.eagain_after is None or len(self.writes) <= self.eagain_after


def test_reclaimer_batches_stops_when_the_kernel_finds_no_more(tmp_path):
    limiter = RateLimiter(1 << 40, 1 << 30)
    kernel = Recording(str(tmp_path), eagain_after=1)
    demoted, asked, short, stopped = reclaim.Reclaimer(kernel, 512, limiter).demote(CGROUP, 1300)
    assert kernel.writes == [512 * 4096, 512 * 4096] and asked == 1024 and short and not stopped
    assert demoted == 0  # no memory.stat: nothing counted, nothing made up
    kernel = Recording(str(tmp_path))
    assert reclaim.Reclaimer(kernel, 512, limiter).demote(CGROUP, 1300)[1:] == (1300, False, False)
    assert kernel.writes == [512 * 4096, 512 * 4096, 276 * 4096]
    kernel = Recording(str(tmp_path))
    assert reclaim.Reclaimer(kernel, 512, limiter, should_stop=lambda: True).demote(CGROUP, 1300)[1:] == (0, False, True)


def test_kernel_memory_reclaim_errors(tmp_path, monkeypatch):
    root = str(tmp_path)
    make_cgroup(root, 1)
    kernel = Kernel(root)
    path = os.path.join(root, "sys/fs/cgroup", CGROUP.lstrip("/"))
    stat = "anon 1\npgdemote_kswapd 5\npgdemote_direct 7\npgdemote_khugepaged 1\npgpromote_success 9\n"
    open(os.path.join(path, "memory.stat"), "w").write(stat)
    assert kernel.cgroup_demoted_pages(CGROUP) == 13
    assert kernel.cgroup_reclaim(CGROUP, 8192) is True
    assert open(os.path.join(path, "memory.reclaim")).read() == "8192"

    def refuse(code):
        def write_text(_path, _value):
            raise OSError(code, os.strerror(code))
        return write_text
    monkeypatch.setattr(kernel, "write_text", refuse(errno.EAGAIN))
    assert kernel.cgroup_reclaim(CGROUP, 8192) is False
    monkeypatch.setattr(kernel, "write_text", refuse(errno.EBUSY))
    with pytest.raises(Exception) as exc:
        kernel.cgroup_reclaim(CGROUP, 8192)
    assert str(exc.value) == "memory.reclaim of %s: %s" % (CGROUP, os.strerror(errno.EBUSY))


class SimulatedLruGen(SimulatedReclaim):
    """The multi-gen LRU of one memcg on node 0: aging ("+") puts the pages accessed since (here: the
    hot ones) into a new youngest generation; eviction ("-") demotes the DRAM pages of the generations
    up to the one named, as many as asked; lru_gen_table() counts them per generation."""

    def __init__(self, root, placement, hot_addresses, memcg_id=31):
        SimulatedReclaim.__init__(self, root, placement, hot_addresses)
        self.memcg_id = memcg_id
        self.newest = 5
        self.generation = {key: self.newest for key in placement}
        self.lru_commands = []
        self.table_reads = 0

    def lru_gen_available(self):
        return True

    def lru_gen_table(self, wanted=None):
        self.table_reads += 1
        counts = {}
        for key, node in self.placement.items():
            if node == 0:
                counts[self.generation[key]] = counts.get(self.generation[key], 0) + 1
        oldest = min(counts) if counts else self.newest
        rows = [(gen, 1000 * (self.newest - gen), counts.get(gen, 0), 0) for gen in range(oldest, self.newest + 1)]
        return {CGROUP: (self.memcg_id, {0: rows, 1: [(self.newest, 0, 0, 0)]}), "/other": (2, {0: rows})}

    def lru_gen_command(self, command):
        self.lru_commands.append(command)
        op, memcg_id, node, gen = command.split()[:4]
        assert int(memcg_id) == self.memcg_id and int(node) == 0
        if op == "+":
            assert int(gen) == self.newest
            self.newest += 1
            for key in self.placement:
                if key[1] in self.hot:
                    self.generation[key] = self.newest
            return
        assert int(gen) + 2 <= self.newest  # the kernel refuses to evict the two youngest generations
        wanted = int(command.split()[5])
        idle = sorted(key for key, n in self.placement.items() if n == 0 and self.generation[key] <= int(gen))
        for key in idle[:wanted]:
            self.placement[key] = 1
        self.demoted += min(wanted, len(idle))
        self._write_stat()


def lru_gen_agent(guest_root, tmp_path, policy=None, **extra):
    agent, kernel, info, stream = cgroup_agent(guest_root, tmp_path, demote_with="lru_gen",
                                               kernel_class=SimulatedLruGen, **extra)
    if policy is not None:
        agent.cfg["workloads"][0]["policy"].update(policy)
    return agent, kernel, info, stream


def test_lru_gen_demotes_the_pages_idle_for_three_intervals_and_keeps_the_hot_ones(guest_root, tmp_path):
    agent, kernel, info, stream = lru_gen_agent(guest_root, tmp_path, dram_budget=None)
    cold = [key for key in kernel.placement if key[1] not in kernel.hot]
    agent.step()
    agent.step()
    assert all(kernel.placement[key] == 0 for key in cold)  # idle for two agings only: not yet
    assert kernel.lru_commands == ["+ 31 0 5 1 1", "+ 31 0 6 1 1"]
    agent.step()
    assert all(kernel.placement[key] == 1 for key in cold)
    assert all(kernel.placement[(info["pid"], address)] == 0 for address in kernel.hot)
    assert kernel.lru_commands[2:4] == ["+ 31 0 7 1 1", "- 31 0 5 200 1024"]
    assert not [call for call in kernel.calls if call[2] is not None] and kernel.reclaims == []
    assert agent.totals["wl"]["demoted_total"] == len(cold) == kernel.demoted
    assert any("event=evicted_idle workload=wl cgroup=%s demoted=%d" % (CGROUP, len(cold)) in line
               for line in stream.lines)
    assert any("event=demotion_method workload=wl method=lru_gen reason=\"configured; from all" in line for line in stream.lines)
    assert "wl: its pages idle for about 6 s demoted by the kernel's multi-gen LRU" in status.render(agent.state)


def test_lru_gen_idle_seconds_spaces_the_agings_so_pages_idle_for_less_stay(guest_root, tmp_path):
    """18 s with 2 s intervals: an aging every 6 s (three agings without an access evict a page), so
    the cold pages leave at the third aging, 12 s in, not at the third interval."""
    agent, kernel, _info, _stream = lru_gen_agent(guest_root, tmp_path, dram_budget=None)
    agent.cfg["mover"]["lru_gen_idle_seconds"] = 18
    now = [100.0]
    agent.clock = lambda: now[0]
    cold = [key for key in kernel.placement if key[1] not in kernel.hot]
    agings = []
    for _interval in range(7):
        agings.append(sum(1 for command in kernel.lru_commands if command.startswith("+")))
        if _interval < 6:
            assert all(kernel.placement[key] == 0 for key in cold)
        agent.step()
        now[0] += 2.0
    assert agings == [0, 1, 1, 1, 2, 2, 2]  # before each interval: aged at 0 s, 6 s, then 12 s
    assert all(kernel.placement[key] == 1 for key in cold)
    assert kernel.table_reads == 3  # the debugfs file is read only in the intervals that age
    assert "idle for about 18 s" in status.render(agent.state)


def test_lru_gen_keeps_to_the_pmem_limit_and_reclaims_what_the_budget_still_needs(guest_root, tmp_path):
    agent, kernel, info, _stream = lru_gen_agent(guest_root, tmp_path, policy={"pmem_max_percent": 50})
    total = info["length"] // 4096
    for _interval in range(4):
        agent.step()
    on_pmem = sum(1 for node in kernel.placement.values() if node == 1)
    # Eviction stops at the limit (+ one batch of the kernel's rounding); the 40 MiB budget is above
    # the half on DRAM, and memory.reclaim waits for 3 agings, so no counted reclaim was needed.
    assert total // 2 - 1024 <= on_pmem <= total // 2 + 1024
    assert kernel.reclaims == []


def test_lru_gen_reclaims_for_the_budget_only_once_the_pages_were_aged_three_times(guest_root, tmp_path):
    """An 8 MiB budget under the 3,276-page hot set: idle eviction cannot meet it, memory.reclaim must,
    but not before the cgroup's generations were aged IDLE_GENERATIONS times (before, they do not
    tell hot from cold)."""
    agent, kernel, _info, _stream = lru_gen_agent(guest_root, tmp_path, dram_budget="8M")
    agent.step()
    agent.step()
    assert kernel.reclaims == []
    agent.step()
    assert kernel.reclaims
    assert sum(1 for node in kernel.placement.values() if node == 0) <= 8 * 256 + 1024


def test_lru_gen_without_the_multigen_lru_falls_back_with_a_warning(tmp_path):
    root = str(tmp_path)
    make_cgroup(root, 1)
    os.makedirs(os.path.join(root, "sys/kernel/mm/lru_gen"))
    open(os.path.join(root, "sys/kernel/mm/lru_gen/enabled"), "w").write("0x0000\n")
    workload = {"name": "wl", "match": {"cgroup": CGROUP}}
    method, reason = reclaim.method_for(workload, "lru_gen", "kernel_promotes", True, Kernel(root))
    assert method == "move_pages" and "multi-gen LRU is off" in reason
    open(os.path.join(root, "sys/kernel/mm/lru_gen/enabled"), "w").write("0x0007\n")
    assert reclaim.method_for(workload, "lru_gen", "kernel_promotes", True, Kernel(root))[0] == "move_pages"  # no debugfs
    os.makedirs(os.path.join(root, "sys/kernel/debug"))
    open(os.path.join(root, "sys/kernel/debug/lru_gen"), "w").close()
    assert reclaim.method_for(workload, "lru_gen", "kernel_promotes", True, Kernel(root)) == ("lru_gen", "configured")


def test_parse_lru_gen_leaves_out_removed_memcgs():
    from tierd.kernel import parse_lru_gen
    text = ("memcg    27 /bench-peers\n node     0\n          0    1106328          0           0 \n"
            "          1    1106328          6         610 \n node     1\n          0    1106328          0           0 \n"
            "memcg     0 /gone\n node     0\n          0    5          5           0 \n"
            "memcg     1 /\n node     0\n          3    12          7           8 \n")
    assert parse_lru_gen(text) == {"/bench-peers": (27, {0: [(0, 1106328, 0, 0), (1, 1106328, 6, 610)],
                                                         1: [(0, 1106328, 0, 0)]}),
                                   "/": (1, {0: [(3, 12, 7, 8)]})}
    assert parse_lru_gen(text, wanted={"/"}) == {"/": (1, {0: [(3, 12, 7, 8)]})}


def test_a_workload_the_kernel_promotes_and_lru_gen_demotes_is_not_sampled_by_damon(guest_root, tmp_path):
    """kernel_promotes + lru_gen: nothing tierd decides needs heat, so DAMON gets no target for it
    (bench/RESULTS.md: its CPU without DAMON); demotions and the budget still work, and the state says so."""
    agent, kernel, info, stream = lru_gen_agent(guest_root, tmp_path, dram_budget=None)
    for _interval in range(3):
        agent.step()
    assert agent.backend.pids == []
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read().strip() == "0"
    assert all(kernel.placement[(info["pid"], address)] == 0 for address in kernel.hot)
    assert sum(1 for node in kernel.placement.values() if node == 1) == info["length"] // 4096 - len(kernel.hot)
    assert sum(1 for line in stream.lines if "event=tracking by_kernel=wl by_backend=-" in line) == 1
    assert agent.state["workloads"]["wl"]["tracked_by"] == "kernel"
    assert "not sampled by tierd (the kernel promotes)" in status.render(agent.state)


def test_a_node_budget_keeps_an_lru_gen_workload_tracked(guest_root, tmp_path):
    agent, _kernel, info, stream = lru_gen_agent(guest_root, tmp_path, dram_budget=None,
                                                 dram_budget_per_node={"0": "1G"})
    agent.step()
    assert agent.backend.pids == [info["pid"]]
    assert agent.state["workloads"]["wl"]["tracked_by"] == "damon"
    assert not any("event=tracking" in line for line in stream.lines)
    agent.close()


def test_a_memcg_missing_from_the_lru_gen_file_is_warned_about_once(guest_root, tmp_path):
    agent, kernel, _info, stream = lru_gen_agent(guest_root, tmp_path)
    kernel.lru_gen_table = lambda wanted=None: {"/other": (2, {0: []})}
    for _interval in range(3):
        agent.step()
    assert sum(1 for line in stream.lines if "event=lru_gen_memcg_missing workload=wl" in line) == 1
    assert kernel.lru_commands == []


def test_a_node_budget_counts_what_lru_gen_just_evicted(guest_root, tmp_path):
    """An 8,000-page budget on node 0 over a 16,384-page workload the multi-gen LRU demotes: once the
    idle pages are evicted (3,276 hot pages left) the node is within its budget, and tierd must see
    that from fresh counts rather than demote the node's 'excess' a second time (the hot pages)."""
    # Warm-up until the third interval: the node's excess is first acted on in the one that evicts.
    agent, kernel, info, _stream = lru_gen_agent(
        guest_root, tmp_path, dram_budget=None, dram_budget_per_node={"0": 8000 * 4096},
        heat={"hot_threshold": 0.3, "cold_threshold": 0.05, "warmup_intervals": 3})
    for _interval in range(5):
        agent.step()
    assert all(kernel.placement[(info["pid"], address)] == 0 for address in kernel.hot)
    assert agent.state["node_budgets"]["0"]["used_pages"] == len(kernel.hot)
    agent.close()


def test_a_workload_removed_by_a_reload_leaves_nothing_behind(guest_root, tmp_path):
    agent, _kernel, _info, stream = lru_gen_agent(guest_root, tmp_path)
    agent.step()
    assert "wl" in agent.demotion_methods and "wl" in agent.lru_agings
    cfg = json.loads(json.dumps({k: v for k, v in agent.cfg.items() if k == "state_file"}))
    assert agent.reload(validate(dict(cfg, workloads=[])))
    agent.step()
    assert agent.demotion_methods == {} and agent.lru_agings == {}
    agent.reload(validate(dict(cfg, tiering_mode="kernel_promotes", mover={"demote_with": "lru_gen"},
                               workloads=[{"name": "wl", "match": {"cgroup": CGROUP}, "vmas": {"min_size": "32M"},
                                           "policy": {"direction": "both"}}])))
    agent.step()
    # back: its method is said again, as for a new workload
    assert sum(1 for line in stream.lines if "event=demotion_method workload=wl method=lru_gen" in line) == 2
    agent.close()
