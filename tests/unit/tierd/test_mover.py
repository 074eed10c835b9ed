import os
import shutil

import pytest

from conftest import DAMON_FIXTURE, SimulatedPages
from tierd.kernel import Kernel
from tierd.mover import Mover, NodeError, RateLimiter, batches, discover_nodes

MIB = 1 << 20


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds
        return False


def test_batches_cover_everything_in_order():
    items = list(range(1300))
    parts = list(batches(items, 512))
    assert [len(p) for p in parts] == [512, 512, 276]
    assert sum(parts, []) == items


def test_rate_limit_paces_to_the_configured_mb_per_second():
    clock = FakeClock()
    limiter = RateLimiter(64 * MIB, 4 * MIB, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _round in range(64):  # 256 MiB in 4 MiB batches
        assert limiter.acquire(4 * MIB)
    # The first 4 MiB ride on the initial burst; the remaining 252 MiB take 252/64 s.
    assert clock.now - start == pytest.approx(252 / 64.0)
    assert max(clock.slept) == pytest.approx(4 / 64.0)


def test_rate_limit_does_not_wait_when_idle_long_enough():
    clock = FakeClock()
    limiter = RateLimiter(10 * MIB, 2 * MIB, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(2 * MIB)
    clock.now += 1.0  # refilled (capped at the burst)
    assert limiter.acquire(2 * MIB)
    assert clock.slept == []


def test_interrupted_wait_stops_the_mover():
    clock = FakeClock()
    limiter = RateLimiter(1 * MIB, 2 * MIB, clock=clock, sleep=lambda s: True)  # SIGTERM during the wait
    placement = {(5, 0x1000 * i): 1 for i in range(2048)}
    kernel = SimulatedPages(DAMON_FIXTURE + "/root", placement)
    mover = Mover(kernel, 512, limiter)
    moved, failed, stopped = mover.move(5, sorted(a for _p, a in placement), 0)
    assert stopped and moved == 512  # the first batch fit the burst, the wait for the second was cut short
    assert sum(1 for node in placement.values() if node == 0) == 512


def test_mover_batches_counts_failures_and_stops_between_batches():
    placement = {(5, 0x1000 * i): 1 for i in range(3000)}
    kernel = SimulatedPages(DAMON_FIXTURE + "/root", placement, fail=[(5, 0x1000 * 7)])
    clock = FakeClock()
    limiter = RateLimiter(1000 * MIB, 4 * MIB, clock=clock, sleep=clock.sleep)
    mover = Mover(kernel, 1024, limiter)
    moved, failed, stopped = mover.move(5, [0x1000 * i for i in range(3000)], 0)
    assert (moved, failed, stopped) == (2999, 1, False)
    assert [n for _pid, n, _node in kernel.calls] == [1024, 1024, 952]

    flags = iter([False, True])
    mover = Mover(kernel, 1024, limiter, should_stop=lambda: next(flags))
    moved, failed, stopped = mover.move(5, [0x1000 * i for i in range(3000)], 1)
    assert stopped and (moved, failed) == (1023, 1)  # one batch, then the stop flag


def test_nodes_from_recorded_memory_tiers():
    assert discover_nodes(Kernel(DAMON_FIXTURE + "/root"), {"dram": None, "pmem": None}) == ([0], [1], "memory_tiering")


def test_nodes_from_cpuless_fallback_config_and_refusal(tmp_path):
    root = str(tmp_path / "root")
    shutil.copytree(DAMON_FIXTURE + "/root/sys/devices/system/node", root + "/sys/devices/system/node")
    kernel = Kernel(root)  # no memory_tiering directory (older kernels)
    assert discover_nodes(kernel, {"dram": None, "pmem": None}) == ([0], [1], "cpuless")
    assert discover_nodes(kernel, {"dram": [1], "pmem": [0]}) == ([1], [0], "config")
    with pytest.raises(NodeError) as err:
        discover_nodes(kernel, {"dram": [0], "pmem": [3]})
    assert "node 3 from the config is not online" in str(err.value)
    os.unlink(root + "/sys/devices/system/node/node1/meminfo")  # pmem not onlined: node without memory
    with pytest.raises(NodeError) as err:
        discover_nodes(kernel, {"dram": None, "pmem": None})
    assert "no PMEM tier found" in str(err.value)


@pytest.mark.parametrize("huge", [True, False])
def test_blocks_move_by_their_first_page_then_the_rest(huge):
    """Huge pages: one address per block goes to move_pages, the rest are only checked; blocks of
    small pages get their other pages moved after that check."""
    placement = {(5, 0x200000 + 0x1000 * i): 1 for i in range(4 * 512)}
    kernel = SimulatedPages(DAMON_FIXTURE + "/root", placement, huge_pages=512 if huge else 0)
    mover = Mover(kernel, 8192, RateLimiter(1 << 40, 1 << 40))
    addresses = sorted(a for _p, a in placement)
    moved, failed, stopped = mover.move(5, addresses, 0, block_pages=512)
    assert (moved, failed, stopped) == (2048, 0, False)
    assert set(placement.values()) == {0}
    assert mover.last_status == [0] * 2048
    calls = [(n, node) for _pid, n, node in kernel.calls]
    if huge:
        assert calls == [(4, 0), (4, None)]  # 4 heads moved, each block's last page looked up
    else:
        assert calls == [(4, 0), (4, None), (2040, None), (2044, 0)]
