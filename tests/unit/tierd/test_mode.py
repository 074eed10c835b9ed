"""tiering_mode: who promotes (tierd, or the kernel's memory-tiering NUMA balancing), the kernel
knobs read through kernel.py from the recorded trixie tree, and the agent that follows the mode."""

import json
import os

import pytest

from conftest import ListStream
from test_agent import make_agent
from test_policy import policy, view
from tierd import metrics, mode as mode_mod, status
from tierd.config import ConfigError, validate
from tierd.kernel import Kernel
from tierd.log import Logger
from tierd.policy import plan


def set_knobs(root, numa_balancing=None, demotion=None, rate_limit=True):
    """Write the sysctl and sysfs files a trixie kernel has (the recorded tree has none of them)."""
    sysctl = os.path.join(root, "proc/sys/kernel")
    os.makedirs(sysctl, exist_ok=True)
    if numa_balancing is not None:
        open(os.path.join(sysctl, "numa_balancing"), "w").write("%d\n" % numa_balancing)
        if rate_limit:
            open(os.path.join(sysctl, "numa_balancing_promote_rate_limit_MBps"), "w").write("65536\n")
    if demotion is not None:
        os.makedirs(os.path.join(root, "sys/kernel/mm/numa"), exist_ok=True)
        open(os.path.join(root, "sys/kernel/mm/numa/demotion_enabled"), "w").write(demotion + "\n")


def test_kernel_reads_the_knobs(guest_root):
    kernel = Kernel(guest_root)
    assert kernel.numa_balancing() is None and kernel.demotion_enabled() is None
    set_knobs(guest_root, numa_balancing=2, demotion="true")
    assert kernel.numa_balancing() == 2
    assert kernel.demotion_enabled() is True
    assert kernel.memory_tiering_balancing_supported()
    set_knobs(guest_root, demotion="false")
    assert kernel.demotion_enabled() is False


def test_auto_takes_kernel_promotes_only_where_the_kernel_has_memory_tiering_balancing(tmp_path, guest_root):
    # The recorded tree has memory_tiering but no numa_balancing (a kernel without CONFIG_NUMA_BALANCING).
    assert mode_mod.choose_mode(Kernel(guest_root), "auto") == ("tierd", "kernel lacks memory-tiering numa_balancing")
    set_knobs(guest_root, numa_balancing=0)
    assert mode_mod.choose_mode(Kernel(guest_root), "auto")[0] == "kernel_promotes"
    # A kernel older than 6.1: numa_balancing without the memory-tiering mode's sysctl and sysfs.
    old = str(tmp_path / "old")
    set_knobs(old, numa_balancing=1, rate_limit=False)
    assert mode_mod.choose_mode(Kernel(old), "auto")[0] == "tierd"
    assert mode_mod.choose_mode(Kernel(old), "kernel_promotes") == ("kernel_promotes", "configured")


@pytest.mark.parametrize("mode, numa_balancing, contradicts", [
    ("tierd", 0, None), ("tierd", 1, "migrates pages towards the CPUs"), ("tierd", 2, "would both move pages"),
    ("tierd", 3, "would both move pages"), ("tierd", None, None),
    ("kernel_promotes", 2, None), ("kernel_promotes", 3, None), ("kernel_promotes", 0, "nobody promotes"),
    ("kernel_promotes", 1, "classic NUMA balancing, not memory tiering"),
    ("kernel_promotes", None, "missing: nobody promotes"),
])
def test_conflicts_between_mode_and_numa_balancing(mode, numa_balancing, contradicts):
    found = mode_mod.conflict(mode, numa_balancing)
    assert (found is None) if contradicts is None else (contradicts in found)


def test_config_tiering_mode():
    assert validate({})["tiering_mode"] == "auto"
    assert validate({"tiering_mode": "kernel_promotes"})["tiering_mode"] == "kernel_promotes"
    with pytest.raises(ConfigError) as exc:
        validate({"tiering_mode": "kernel"})
    assert str(exc.value) == "tiering_mode: 'kernel' is not valid; choose one of: auto, tierd, kernel_promotes"


def test_plan_without_heat_promotions_keeps_quota_promotions():
    hot = view("hot", policy(), dram_heats=[0.5] * 4, pmem_heats=[0.9] * 6)
    assert sum(n for _k, n in plan([hot], 0.6, 0.1)["hot"].promote) == 6
    assert plan([hot], 0.6, 0.1, heat_promotions=False)["hot"].promote == []
    capped = view("capped", policy(pmem_max_percent=30), dram_heats=[0.5] * 4, pmem_heats=[0.9, 0.2] * 3)
    decision = plan([capped], 0.6, 0.1, heat_promotions=False)["capped"]
    assert sum(n for _k, n in decision.promote) == 3  # 6 on PMEM, 3 allowed: the quota still promotes
    # Cold DRAM pages are still demoted: the kernel demotes only under memory pressure.
    cold = view("cold", policy(), dram_heats=[0.0] * 4, pmem_heats=[0.9] * 2)
    assert sum(n for _k, n in plan([cold], 0.6, 0.1, heat_promotions=False)["cold"].demote) == 4


def test_kernel_promotes_leaves_hot_pages_to_the_kernel(guest_root, tmp_path):
    set_knobs(guest_root, numa_balancing=2, demotion="true")
    agent, _kernel, placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    assert ("event=start backend=damon dram_nodes=0 pmem_nodes=1 nodes_from=memory_tiering dry_run=false "
            "mode=kernel_promotes mode_reason=\"kernel has memory-tiering numa_balancing (mode 2)\" "
            "numa_balancing=2 demotion_enabled=true") in stream.lines[0]
    agent.run(max_intervals=4)
    assert all(node == 1 for node in placement.values())  # the same run in tierd mode promotes the hot region
    assert not any("tiering_mode_conflict" in line for line in stream.lines)
    state = json.load(open(str(tmp_path / "state.json")))
    assert state["tiering"] == {"mode": "kernel_promotes", "reason": "kernel has memory-tiering numa_balancing (mode 2)",
                                "numa_balancing": 2, "demotion_enabled": True, "warning": None}
    prom = open(str(tmp_path / "prom" / "tierd.prom")).read()
    assert 'tierd_mode{mode="kernel_promotes"} 1' in prom and "tierd_mode_conflict 0" in prom


def test_kernel_promotes_still_enforces_the_pmem_limit(guest_root, tmp_path):
    set_knobs(guest_root, numa_balancing=2)
    agent, _kernel, placement, info, _stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    agent.run(max_intervals=2)
    total = info["length"] // 4096
    assert int(total * 0.30) - 1 <= sum(1 for node in placement.values() if node == 1) <= int(total * 0.30)


def test_tierd_mode_warns_while_the_kernel_also_promotes_and_notices_the_fix(guest_root, tmp_path, monkeypatch):
    monkeypatch.setattr(mode_mod, "RECHECK_INTERVALS", 2)
    set_knobs(guest_root, numa_balancing=2)
    agent, _kernel, placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"},
                                                          tiering_mode="tierd")
    assert "mode=tierd mode_reason=configured" in stream.lines[0]
    assert "event=tiering_mode_conflict mode=tierd" in stream.lines[1] and "would both move pages" in stream.lines[1]
    agent.step()
    text = status.render(agent.state)
    assert "mode tierd (configured)  numa_balancing 2  demotion_enabled missing" in text
    assert "warning: numa_balancing=2 promotes hot PMEM pages too" in text
    assert "tierd_mode_conflict 1" in metrics.render(agent.state)
    assert "tierd_kernel_numa_balancing 2" in metrics.render(agent.state)
    set_knobs(guest_root, numa_balancing=0)
    agent.step()  # interval 2: read again
    assert any("event=tiering_mode_conflict_resolved mode=tierd numa_balancing=0" in line for line in stream.lines)
    assert agent.state["tiering"]["warning"] is None
    assert sum(1 for line in stream.lines if "event=tiering_mode_conflict " in line) == 1
    agent.run(max_intervals=5)
    assert any(node == 0 for node in placement.values())  # tierd promotes in its own mode


def test_reload_changes_the_mode(guest_root, tmp_path):
    set_knobs(guest_root, numa_balancing=0)
    agent, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"},
                                                           tiering_mode="tierd")
    cfg = dict(agent.cfg, tiering_mode="kernel_promotes")
    assert agent.reload(cfg)
    assert agent.mode.mode == "kernel_promotes" and not agent.mode.heat_promotions
    assert any("event=tiering_mode_conflict mode=kernel_promotes" in line and "nobody promotes" in line
               for line in stream.lines)
    agent.close()


def test_logger_is_used_only_by_announce(guest_root):
    # Choosing a mode logs nothing by itself, so the start line comes first and names the mode.
    set_knobs(guest_root, numa_balancing=2)
    stream = ListStream()
    tiering = mode_mod.TieringMode(Kernel(guest_root), "tierd", Logger(stream))
    assert stream.lines == [] and tiering.warning
    tiering.announce()
    assert "event=tiering_mode_conflict" in stream.lines[0]
