"""The kernel's promotion rate bounded while tierd demotes for a quota (promotion_bound.py), on
real sysctl files under a test root, and through the agent over the recorded trixie guest."""

import json
import os

import pytest

from conftest import ListStream, recorded_workload
from test_agent import make_agent
from test_mode import set_knobs
from tierd import metrics, promotion_bound, status
from tierd.config import ConfigError, validate
from tierd.kernel import Kernel
from tierd.log import Logger

RATE_FILE = "proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"


def rate(root):
    with open(os.path.join(root, RATE_FILE)) as handle:
        return int(handle.read())


def set_rate(root, mbps):
    with open(os.path.join(root, RATE_FILE), "w") as out:
        out.write("%d\n" % mbps)


@pytest.fixture
def bound(tmp_path):
    root = str(tmp_path / "root")
    set_knobs(root, numa_balancing=2)
    stream = ListStream()
    owner = promotion_bound.PromotionBound(Kernel(root), Logger(stream), str(tmp_path / "run" / "state.json"))
    os.makedirs(str(tmp_path / "run"))
    return root, owner, stream


def test_bound_lets_one_batch_per_interval_over_all_dram_nodes():
    # 1024 pages (4 MiB) per 3-s interval: 1 MB/s (the kernel's unit is whole MB/s); two nodes halve it.
    assert promotion_bound.bound_mbps(1024, 3, 1) == 1
    assert promotion_bound.bound_mbps(8192, 5, 1) == 6
    assert promotion_bound.bound_mbps(8192, 5, 2) == 3
    assert promotion_bound.bound_mbps(16, 60, 2) == 1  # never 0: that would stop every promotion


def test_lowered_while_contended_and_put_back_after_quiet_intervals(bound):
    root, owner, stream = bound
    owner.update("auto", "kernel_promotes", False, 8192, 5, 1)
    assert rate(root) == 65536 and owner.state() == {"bound_mbps": None, "original_mbps": None}
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    assert rate(root) == 6 and owner.state() == {"bound_mbps": 6, "original_mbps": 65536}
    assert "event=kernel_promotions_bounded promote_rate_limit_mbps=6 was=65536" in stream.lines[-1]
    record = json.load(open(owner.record))
    assert record == {"original_mbps": 65536, "bound_mbps": 6}
    for _interval in range(promotion_bound.RELEASE_INTERVALS - 1):
        owner.update("auto", "kernel_promotes", False, 8192, 5, 1)
    assert rate(root) == 6
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)  # contended again: the count starts over
    for _interval in range(promotion_bound.RELEASE_INTERVALS):
        owner.update("auto", "kernel_promotes", False, 8192, 5, 1)
    assert rate(root) == 65536 and not os.path.exists(owner.record)
    assert "event=kernel_promotions_unbounded promote_rate_limit_mbps=65536" in stream.lines[-1]


def test_released_on_stop_on_a_mode_change_and_when_turned_off(bound):
    root, owner, _stream = bound
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    owner.release("tierd stops")
    assert rate(root) == 65536
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    owner.update("auto", "tierd", True, 8192, 5, 1)  # tierd promotes itself: nothing to bound
    assert rate(root) == 65536
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    owner.update("off", "kernel_promotes", True, 8192, 5, 1)
    assert rate(root) == 65536 and owner.state()["bound_mbps"] is None


def test_an_operators_value_is_left_alone_with_one_warning(bound):
    root, owner, stream = bound
    set_rate(root, 1024)  # as the kernel_tiering role sets it (kernel_tiering_promote_rate_limit_mbps)
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    assert rate(root) == 1024
    warnings = [line for line in stream.lines if "event=kernel_promotions_not_bounded" in line]
    assert len(warnings) == 1 and "promote_rate_limit_mbps=1024" in warnings[0]
    set_rate(root, 4)  # already below the bound: nothing to do, nothing said
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    assert rate(root) == 4 and len(stream.lines) == 1


def test_a_value_changed_by_someone_else_ends_the_bound_without_a_restore(bound):
    root, owner, stream = bound
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    set_rate(root, 500)
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    assert rate(root) == 500
    assert any("event=kernel_promotions_unbounded" in line and "changed by someone else" in line
               for line in stream.lines)
    owner.release("tierd stops")
    assert rate(root) == 500


def test_a_crashed_runs_bound_is_put_back_at_the_next_start(bound, tmp_path):
    root, owner, stream = bound
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)  # and then killed: no release
    assert rate(root) == 6
    again = promotion_bound.PromotionBound(Kernel(root), Logger(stream), str(tmp_path / "run" / "state.json"))
    again.recover()
    assert rate(root) == 65536 and not os.path.exists(again.record)
    # A record whose bound is no longer the value (someone set another since) puts nothing back.
    owner.update("auto", "kernel_promotes", True, 8192, 5, 1)
    set_rate(root, 300)
    promotion_bound.PromotionBound(Kernel(root), Logger(stream), str(tmp_path / "run" / "state.json")).recover()
    assert rate(root) == 300 and not os.path.exists(owner.record)


def test_config_kernel_promotion_bound():
    assert validate({})["kernel_promotion_bound"] == "auto"
    assert validate({"kernel_promotion_bound": "off"})["kernel_promotion_bound"] == "off"
    with pytest.raises(ConfigError, match="kernel_promotion_bound: 'always' is not valid; choose one of: auto, off"):
        validate({"kernel_promotion_bound": "always"})


def test_the_agent_bounds_the_kernel_while_a_budget_demotes_and_puts_it_back_on_stop(guest_root, tmp_path):
    """kernel_promotes, the workload wholly on DRAM over a host-wide budget smaller than its hot
    set (the kernel would promote back what the budget demotes): the interval that demotes hot ones
    for the budget lowers the limit to one batch (1024 pages, 4 MiB) per 2-s interval, 2 MB/s; status and
    metrics say so; stop puts back the kernel's default."""
    set_knobs(guest_root, numa_balancing=2)
    info = recorded_workload()
    budget = info["hot_pages"] // 3
    agent, _kernel, placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"},
                                                          dram_budget=budget * 4096)
    for key in placement:
        placement[key] = 0
    for _interval in range(3):
        agent.step()
    assert list(placement.values()).count(0) <= budget
    assert rate(guest_root) == 2
    assert agent.state["kernel_promotion_bound"] == {"bound_mbps": 2, "original_mbps": 65536}
    assert "kernel promotions bounded at 2 MB/s per node (was 65536)" in status.render(agent.state)
    assert "tierd_kernel_promotion_bound_mbps 2" in metrics.render(agent.state)
    agent.close()
    assert rate(guest_root) == 65536
    assert any("event=kernel_promotions_unbounded promote_rate_limit_mbps=65536 reason=\"tierd stops\"" in line
               for line in stream.lines)


def test_the_agent_in_tierd_mode_leaves_the_limit(guest_root, tmp_path):
    set_knobs(guest_root, numa_balancing=0)
    budget = recorded_workload()["hot_pages"] // 3
    agent, _kernel, placement, _info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"},
                                                           dram_budget=budget * 4096, tiering_mode="tierd")
    for key in placement:
        placement[key] = 0
    for _interval in range(4):
        agent.step()
    assert list(placement.values()).count(0) <= budget and rate(guest_root) == 65536
    agent.close()


def test_a_budget_met_by_demoting_cold_pages_needs_no_bound(guest_root, tmp_path):
    """The budget (a quarter of the buffer) is above the hot set: heat's own demotions of the cold
    pages meet it, the kernel will not promote those back, and the limit is left as it is."""
    set_knobs(guest_root, numa_balancing=2)
    total = recorded_workload()["length"] // 4096
    agent, _kernel, placement, _info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"},
                                                           dram_budget=(total // 4) * 4096)
    for key in placement:
        placement[key] = 0
    for _interval in range(4):
        agent.step()
    assert list(placement.values()).count(0) <= total // 4 and rate(guest_root) == 65536
    agent.close()
