import json
import os
import shutil

import pytest

from conftest import ListStream, SimulatedDamon, recorded_pagemap, recorded_workload, write_sparse_pagemap
from tierd.config import validate
from tierd.kernel import PAGEMAP_PFN_MASK, Kernel, KernelError
from tierd.log import Logger
from tierd.heat import HeatMap, age_extents
from tierd.tracker import BackendUnavailable, PagemapReads, pages_to_runs
from tierd.tracker_damon import DamonBackend, regions_to_runs
from tierd.tracker_page_idle import PageIdleBackend
from tierd.tracker_soft_dirty import SoftDirtyTracker
from tierd.tracking import choose_backend

KDAMONDS = "sys/kernel/mm/damon/admin/kdamonds"


P = 4096


def per_page(extents):
    """One heat value per page of an extent list (for asserting on small mappings)."""
    return [heat for low, high, heat in extents for _page in range(low, high, P)]


def test_heat_ages_over_intervals():
    heat = HeatMap(decay=0.5, initial=0.5)
    base = 0x10000
    vmas = [(base, base + 4 * P, "")]
    for sample in ([1, 0, 1, -1], [1, 0, 0, -1], [1, 0, 0, 1]):
        heat.update(7, vmas, {base: pages_to_runs(base, sample)})
    h = per_page(heat.extents(7, base, base + 4 * P))
    assert h[0] == pytest.approx(0.9375)  # 0.5 → 0.75 → 0.875 → 0.9375: hot after a few intervals, not at once
    assert h[1] == pytest.approx(0.0625)  # 0.5 → 0.25 → 0.125 → 0.0625: cools down by half each idle interval
    assert h[2] == pytest.approx(0.1875)  # 0.75, then idle twice: 0.375 → 0.1875
    assert h[3] == pytest.approx(0.75)  # unknown samples (-1) leave heat unchanged; then one access
    assert heat.sampled(7, base, base + 4 * P) == 3
    assert heat.heat_at(7, base + 3 * P) == pytest.approx(0.75)


def test_write_weight_and_forget():
    heat = HeatMap(decay=0.5, write_weight=0.5)
    vmas = [(0, 2 * P, "")]
    heat.update(1, vmas, {0: [(0, 2 * P, 1.0)]}, {0: pages_to_runs(0, [1, 0])})
    assert per_page(heat.extents(1, 0, 2 * P)) == [pytest.approx(0.75), pytest.approx(0.5)]
    heat.forget({2})
    assert heat.extents(1, 0, 2 * P) is None


def test_a_grown_mapping_keeps_the_heat_of_its_old_pages():
    heat = HeatMap(decay=0.5, initial=0.5)
    for _interval in range(4):
        heat.update(1, [(0, 2 * P, "")], {0: [(0, P, 1.0), (P, 2 * P, 0.0)]})
    hot, cold = per_page(heat.extents(1, 0, 2 * P))
    heat.update(1, [(0, 4 * P, "")], None)  # a heap grown by brk: the same start, a new end
    assert per_page(heat.extents(1, 0, 4 * P)) == [hot, cold, 0.5, 0.5]
    assert heat.sampled(1, 0, 4 * P) == 4  # the old pages' history counts; the new ones start between thresholds
    assert heat.extents(1, 0, 2 * P) is None


def test_a_split_or_merged_mapping_keeps_its_heat_and_a_new_one_starts_between_thresholds():
    heat = HeatMap(decay=0.5, initial=0.5)
    for _interval in range(3):
        heat.update(1, [(0, 4 * P, ""), (8 * P, 9 * P, "")], {0: pages_to_runs(0, [1, 0, 1, 0]), 8 * P: [(8 * P, 9 * P, 1.0)]})
    before = per_page(heat.extents(1, 0, 4 * P))
    heat.update(1, [(0, 2 * P, ""), (2 * P, 4 * P, ""), (8 * P, 10 * P, ""), (20 * P, 21 * P, "")], None)
    assert per_page(heat.extents(1, 0, 2 * P)) + per_page(heat.extents(1, 2 * P, 4 * P)) == before  # mprotect split it
    assert per_page(heat.extents(1, 8 * P, 10 * P)) == [pytest.approx(0.9375), 0.5]  # grew into an unsampled page
    assert heat.extents(1, 20 * P, 21 * P) == [(20 * P, 21 * P, 0.5)] and heat.sampled(1, 20 * P, 21 * P) == 0
    heat.update(1, [(0, 4 * P, "")], None)  # merged again
    assert per_page(heat.extents(1, 0, 4 * P)) == before and heat.sampled(1, 0, 4 * P) == 3


def test_extents_follow_regions_not_pages():
    # A 1 GiB mapping (262144 pages) sampled as three DAMON regions stays three extents.
    size = 1 << 30
    extents = [(0, size, 0.5)]
    for _interval in range(5):
        extents = age_extents(extents, [(0, size // 5, 1.0), (size // 5, size // 2, 0.0), (size // 2, size, 0.0)],
                              [], 0.5, 0.0)
    assert len(extents) == 2  # the two idle regions age alike and merge back into one extent
    assert extents[0][:2] == (0, size // 5) and extents[0][2] == pytest.approx(1 - 0.5 ** 6)
    assert extents[1][:2] == (size // 5, size) and extents[1][2] == pytest.approx(0.5 ** 6)


def test_moving_region_boundaries_do_not_fragment_the_heat():
    # DAMON redraws its boundaries every aggregation; the hot part is always the first quarter.
    size = 1000 * P
    extents = [(0, size, 0.5)]
    for interval in range(30):
        cut = (250 + (interval * 37) % 50 - 25) * P
        extents = age_extents(extents, [(0, cut, 1.0), (cut, size, 0.0)], [], 0.5, 0.0)
    assert len(extents) <= 8
    assert per_page(extents)[100] > 0.9 and per_page(extents)[500] < 0.01


def test_pages_to_runs_skips_gaps():
    assert pages_to_runs(0, [1, 1, None, 0, 0, 1]) == [(0, 2 * P, 1), (3 * P, 5 * P, 0), (5 * P, 6 * P, 1)]
    assert pages_to_runs(0, []) == []


def _recorded_regions(root):
    base = os.path.join(root, KDAMONDS, "0/contexts/0/schemes/0/tried_regions")
    regions = []
    for name in os.listdir(base):
        if name.isdigit():
            regions.append(tuple(_read_int(os.path.join(base, name, f)) for f in ("start", "end", "nr_accesses")))
    return regions


def test_recorded_damon_regions_find_the_hot_part(guest_root):
    info = recorded_workload()
    vmas = [tuple(v) for v in info["vmas"]]
    runs = regions_to_runs(vmas, _recorded_regions(guest_root), max_accesses=10)[info["address"]]
    samples = [value for low, high, value in runs for _page in range(low, high, P)]
    assert len(samples) == info["length"] // P  # the regions cover the whole mapping
    hot = samples[:info["hot_pages"]]
    cold = samples[info["hot_pages"]:]
    # Recorded on trixie: DAMON saw accesses in most of the hot 20 % and none in the rest.
    assert sum(1 for s in hot if s > 0) / len(hot) >= 0.85
    assert sum(1 for s in cold if s > 0) / len(cold) <= 0.05
    assert len(runs) <= 1000  # one run per region, whatever the mapping's size


def test_damon_backend_configures_its_kdamond(guest_root):
    info = recorded_workload()
    kernel = SimulatedDamon(guest_root)
    nr = os.path.join(guest_root, KDAMONDS, "nr_kdamonds")
    open(nr, "w").write("0\n")  # nothing of anyone else's running
    cfg = validate({"interval_seconds": 2, "damon": {"sample_us": 100000, "aggr_us": 1000000}})
    backend = DamonBackend(kernel, cfg["damon"], Logger(ListStream()))
    samples = backend.sample({info["pid"]: [tuple(v) for v in info["vmas"]]})
    ctx = os.path.join(guest_root, KDAMONDS, "0/contexts/0")

    def read(rel):
        with open(os.path.join(ctx, rel)) as handle:
            return handle.read().strip()

    assert read("operations") == "vaddr"
    assert read("targets/0/pid_target") == str(info["pid"])
    assert read("monitoring_attrs/intervals/aggr_us") == "1000000"
    assert read("schemes/0/action") == "stat"
    # The pitfall: access-pattern maxima default to 0 and would match nothing.
    assert read("schemes/0/access_pattern/sz/max") == str((1 << 64) - 1)
    assert read("schemes/0/access_pattern/age/max") == str((1 << 32) - 1)
    assert read("schemes/0/access_pattern/nr_accesses/max") == str((1 << 32) - 1)
    assert read("schemes/0/filters/0/type") == "target"  # its tried regions are target 0's alone
    assert read("schemes/0/filters/0/damon_target_idx") == "0"
    assert read("schemes/0/filters/0/matching") == "N"
    assert kernel.commands == ["on", "update_schemes_tried_regions"]
    sample = samples[info["pid"]][info["address"]]
    assert max(value for _low, _high, value in sample) > 0
    backend.close()
    assert open(nr).read() == "0"


def test_damon_backend_refuses_someone_elses_kdamonds(guest_root):
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("1\n")
    os.makedirs(os.path.join(guest_root, "proc", "123"), exist_ok=True)  # a live PID to track
    backend = DamonBackend(Kernel(guest_root), validate({})["damon"], Logger(ListStream()))
    with pytest.raises(KernelError) as err:
        backend.track([123])
    assert "another tool is using DAMON; tierd will not clobber it" in str(err.value)
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read() == "1\n"


def test_backend_choice(guest_root, tmp_path):
    stream = ListStream()
    assert choose_backend(Kernel(guest_root), validate({}), Logger(stream)).name == "damon"
    with pytest.raises(BackendUnavailable) as err:
        choose_backend(Kernel(guest_root), validate({"backend": "page_idle"}), Logger(stream))
    assert "CONFIG_IDLE_PAGE_TRACKING" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackendUnavailable) as err:
        choose_backend(Kernel(str(empty)), validate({}), Logger(stream))
    assert "no access-tracking backend" in str(err.value)


def _idle_bitmap(root, pfns, idle):
    """A page_idle bitmap file big enough for the PFNs, with the given frames marked idle."""
    path = os.path.join(root, "sys/kernel/mm/page_idle/bitmap")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    words = bytearray(((max(pfns) >> 6) + 1) * 8)
    for pfn in idle:
        words[(pfn >> 6) * 8 + ((pfn & 63) >> 3)] |= 1 << (pfn & 7)
    open(path, "wb").write(bytes(words))
    return path


def _read_bits(path, pfn):
    data = open(path, "rb").read()
    return (data[(pfn >> 6) * 8 + ((pfn & 63) >> 3)] >> (pfn & 7)) & 1


def test_page_idle_marks_then_reads_back(guest_root):
    info = recorded_workload()
    start, entries = recorded_pagemap()
    pfns = [e & PAGEMAP_PFN_MASK for e in entries]
    vmas = [(start, start + len(entries) * 4096, "")]
    path = _idle_bitmap(guest_root, pfns, idle=[])
    backend = PageIdleBackend(Kernel(guest_root), Logger(ListStream()))
    first = backend.sample({info["pid"]: vmas})[info["pid"]][start]
    assert {value for _low, _high, value in first} == {-1.0}  # nothing was marked before: unknown, not "hot"
    assert all(_read_bits(path, pfn) for pfn in pfns)  # every present frame now marked idle

    # Between intervals the kernel clears the idle flag of the frames that were accessed:
    accessed = set(pfns[:100])
    data = bytearray(open(path, "rb").read())
    for pfn in accessed:
        data[(pfn >> 6) * 8 + ((pfn & 63) >> 3)] &= ~(1 << (pfn & 7)) & 0xFF
    open(path, "wb").write(bytes(data))
    second = backend.sample({info["pid"]: vmas})[info["pid"]][start]
    pages = [value for low, high, value in second for _page in range(low, high, P)]
    assert [i for i, s in enumerate(pages) if s == 1.0] == list(range(100))
    assert all(s == 0.0 for s in pages[100:])


def test_soft_dirty_first_read_is_not_a_signal(guest_root):
    info = recorded_workload()
    start, entries = recorded_pagemap()
    vmas = [(start, start + len(entries) * 4096, "")]
    tracker = SoftDirtyTracker(Kernel(guest_root))
    assert tracker.sample({info["pid"]: vmas}) == {}
    assert open(os.path.join(guest_root, "proc", str(info["pid"]), "clear_refs")).read() == "4"
    second = tracker.sample({info["pid"]: vmas})[info["pid"]][start]
    expected = [(1 if (e >> 55) & 1 else 0) if (e >> 63) & 1 else None for e in entries]
    assert second == pages_to_runs(start, expected)
    assert any(value == 1 for _low, _high, value in second)


class CountingKernel(Kernel):
    def __init__(self, root):
        super().__init__(root)
        self.pagemap_reads = 0

    def read_pagemap(self, pid, start, npages):
        self.pagemap_reads += 1
        return super().read_pagemap(pid, start, npages)


def test_page_idle_and_soft_dirty_share_one_pagemap_read_per_interval(guest_root):
    info = recorded_workload()
    start, entries = recorded_pagemap()
    pfns = [e & PAGEMAP_PFN_MASK for e in entries]
    _idle_bitmap(guest_root, pfns, idle=[])
    kernel = CountingKernel(guest_root)
    targets = {info["pid"]: [(start, start + len(entries) * 4096, "")]}
    backend, tracker = PageIdleBackend(kernel, Logger(ListStream())), SoftDirtyTracker(kernel)
    for interval in (1, 2):
        pagemap = PagemapReads(kernel)
        backend.sample(targets, pagemap)
        writes = tracker.sample(targets, pagemap)
        assert kernel.pagemap_reads == interval  # one mapping, one read, for both users
    expected = [(1 if (e >> 55) & 1 else 0) if (e >> 63) & 1 else None for e in entries]
    assert writes[info["pid"]][start] == pages_to_runs(start, expected)


def _owner(tmp_path, root, tierd_pid):
    kdamond_pid = open(os.path.join(root, KDAMONDS, "0/pid")).read().strip()
    path = tmp_path / "damon-owner.json"
    path.write_text('{"tierd_pid": %d, "nr_kdamonds": 1, "kdamond_pids": ["%s"]}' % (tierd_pid, kdamond_pid))
    return str(path)


def test_leftover_kdamond_of_a_killed_tierd_is_taken_back(guest_root, tmp_path):
    info = recorded_workload()
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("1\n")
    owner = _owner(tmp_path, guest_root, 999999)  # that tierd is gone (kill -9)
    stream = ListStream()
    backend = DamonBackend(SimulatedDamon(guest_root), validate({})["damon"], Logger(stream), owner)
    backend.track([info["pid"]])
    assert any("event=damon_adopted kdamonds=1 previous_tierd_pid=999999" in line for line in stream.lines)
    assert '"tierd_pid": %d' % os.getpid() in open(owner).read()


def test_kdamond_of_a_live_tierd_is_not_taken(guest_root, tmp_path):
    info = recorded_workload()
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("1\n")
    # the recorded workload's process stands in for a live tierd: its cmdline is checked for "tierd"
    cmdline = os.path.join(guest_root, "proc", str(info["pid"]), "cmdline")
    open(cmdline, "w").write("/usr/bin/python3\0/usr/local/sbin/tierd\0run\0")
    owner = _owner(tmp_path, guest_root, info["pid"])
    backend = DamonBackend(Kernel(guest_root), validate({})["damon"], Logger(ListStream()), owner)
    with pytest.raises(KernelError):
        backend.track([info["pid"]])


def test_young_idle_region_is_unknown_not_cold():
    vmas = [(0, 4 * 4096, "")]
    regions = [(0, 2 * 4096, 0, 1), (2 * 4096, 3 * 4096, 0, 5), (3 * 4096, 4 * 4096, 7, 0)]
    runs = regions_to_runs(vmas, regions, max_accesses=10, min_idle_age=3)[0]
    assert runs == [(0, 2 * P, -1.0), (2 * P, 3 * P, 0.0), (3 * P, 4 * P, pytest.approx(0.7))]


def _read_int(path):
    with open(path) as handle:
        return int(handle.read())


def test_page_idle_tracks_a_huge_page_through_its_head_frame(tmp_path):
    """The kernel keeps a huge page's idle flag on its head frame: tail frames always read as
    accessed. 512 pages of one huge page and 512 small pages, none accessed: all must read idle."""
    root = str(tmp_path)
    pid, start = 42, 0x40000000  # a 2 MiB-aligned mapping
    head = 0x80000  # an aligned frame number
    small = [0x200000 + 7 * i for i in range(512)]
    pfns = list(range(head, head + 512)) + small
    write_sparse_pagemap(root, pid, start, [(1 << 63) | pfn for pfn in pfns])
    thp = os.path.join(root, "sys/kernel/mm/transparent_hugepage")
    os.makedirs(thp)
    open(os.path.join(thp, "hpage_pmd_size"), "w").write("2097152\n")
    with open(os.path.join(root, "proc/kpageflags"), "wb") as out:
        out.seek(head * 8)
        out.write((1 << 22 | 1 << 15).to_bytes(8, "little"))  # THP, compound head
    path = _idle_bitmap(root, pfns, idle=[])
    backend = PageIdleBackend(Kernel(root), Logger(ListStream()))
    vmas = [(start, start + 1024 * P, "")]
    backend.sample({pid: vmas})
    # only frames the kernel can mark were written: the head, not its 511 tails
    assert _read_bits(path, head) == 1 and not any(_read_bits(path, pfn) for pfn in range(head + 1, head + 512))
    assert all(_read_bits(path, pfn) for pfn in small)
    runs = backend.sample({pid: vmas})[pid][start]
    assert runs == [(start, start + 1024 * P, 0.0)]  # all idle, huge page included
    # an access to any byte of the huge page clears its head's flag: all 512 pages read accessed
    data = bytearray(open(path, "rb").read())
    data[(head >> 6) * 8 + ((head & 63) >> 3)] &= ~(1 << (head & 7)) & 0xFF
    open(path, "wb").write(bytes(data))
    runs = backend.sample({pid: vmas})[pid][start]
    assert runs == [(start, start + 512 * P, 1.0), (start + 512 * P, start + 1024 * P, 0.0)]


# --- one kdamond, many targets ------------------------------------------------------------------
def _damon_with_processes(guest_root, pids):
    """A SimulatedDamon with a /proc/PID for each of ``pids``, each PID having its own regions."""
    kernel = SimulatedDamon(guest_root)
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("0\n")
    for pid in pids:
        _spawn(guest_root, kernel, pid)
    return kernel


def _spawn(guest_root, kernel, pid):
    os.makedirs(os.path.join(guest_root, "proc", str(pid)), exist_ok=True)
    # Every process has the same addresses (as forked workers do): only the access count tells them apart.
    kernel.regions_by_pid[pid] = [(0x10000, 0x10000 + 4 * P, pid % 10, 9)]


def _exit(guest_root, pid):
    shutil.rmtree(os.path.join(guest_root, "proc", str(pid)))


def _targets(pids):
    return {pid: [(0x10000, 0x10000 + 4 * P, "")] for pid in pids}


def test_one_kdamond_serves_every_pid_and_commits_changes_in_place(guest_root):
    kernel = _damon_with_processes(guest_root, [101, 102, 103, 104])
    stream = ListStream()
    backend = DamonBackend(kernel, validate({})["damon"], Logger(stream))
    first = backend.sample(_targets([101, 102, 103, 104]))
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read() == "1"
    assert [t["pid"] for t in kernel.kernel_targets] == [101, 102, 103, 104]
    serial = {t["pid"]: t["serial"] for t in kernel.kernel_targets}
    # Each PID reads its own regions although all share their addresses (the per-target filter).
    top = backend.max_accesses
    assert {pid: runs[0x10000][0][2] for pid, runs in first.items()} == {
        101: pytest.approx(1 / top), 102: pytest.approx(2 / top), 103: pytest.approx(3 / top), 104: pytest.approx(4 / top)}

    _exit(guest_root, 102)
    _spawn(guest_root, kernel, 105)
    second = backend.sample(_targets([101, 103, 104, 105]))
    assert kernel.commands == ["on", "update_schemes_tried_regions", "commit", "update_schemes_tried_regions"]
    # 105 took the index 102 left; the others kept theirs, and with them their kernel-side history.
    assert [t["pid"] for t in kernel.kernel_targets] == [101, 105, 103, 104] == backend.pids
    assert all(t["serial"] == serial[t["pid"]] for t in kernel.kernel_targets if t["pid"] != 105)
    assert backend.restarted == {105}
    assert second[105][0x10000][0][2] == pytest.approx(5 / top)
    assert second[103][0x10000][0][2] == pytest.approx(3 / top)
    assert any("event=damon_tracking targets=4 new=1 moved=0 how=commit" in line for line in stream.lines)

    backend.sample(_targets([101, 103, 104, 105]))  # nothing changed: no commit
    assert kernel.commands.count("commit") == 1 and backend.restarted == set()
    backend.close()
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read() == "0"


def test_when_more_pids_leave_than_come_only_the_last_ones_move_and_warm_up_again(guest_root):
    kernel = _damon_with_processes(guest_root, [201, 202, 203, 204, 205])
    backend = DamonBackend(kernel, validate({})["damon"], Logger(ListStream()))
    backend.track([201, 202, 203, 204, 205])
    serial = {t["pid"]: t["serial"] for t in kernel.kernel_targets}
    for pid in (201, 205):
        _exit(guest_root, pid)
    backend.track([202, 203, 204])
    # Index 0 lost its PID and nothing new came: 204 (past the new count of 3) moves into it.
    assert backend.pids == [204, 202, 203] == [t["pid"] for t in kernel.kernel_targets]
    assert backend.restarted == {204}
    assert kernel.kernel_targets[1]["serial"] == serial[202] and kernel.kernel_targets[2]["serial"] == serial[203]


def test_index_assignment_keeps_staying_pids_put():
    assert DamonBackend.assign_indexes([1, 2, 3], [1, 3, 4]) == ([1, 4, 3], {4})
    assert DamonBackend.assign_indexes([1, 2, 3, 4], [4, 1]) == ([1, 4], {4})
    assert DamonBackend.assign_indexes([], [9, 8]) == ([8, 9], {8, 9})
    assert DamonBackend.assign_indexes([5, 6], [5, 6, 7]) == ([5, 6, 7], {7})


def test_a_pid_gone_before_the_commit_is_dropped_not_fatal(guest_root):
    kernel = _damon_with_processes(guest_root, [301, 302])
    backend = DamonBackend(kernel, validate({})["damon"], Logger(ListStream()))
    backend.track([301, 302])
    serial = {t["pid"]: t["serial"] for t in kernel.kernel_targets}
    _spawn(guest_root, kernel, 303)
    _exit(guest_root, 303)  # exits between discovery and the commit
    backend.track([301, 302, 303])
    assert backend.pids == [301, 302] == [t["pid"] for t in kernel.kernel_targets]
    # Dropped before the commit, so the kernel never refused one (which would stop the kdamond).
    assert "commit" not in kernel.commands and kernel.commands.count("on") == 1
    assert all(t["serial"] == serial[t["pid"]] for t in kernel.kernel_targets)


def _exits_after_check(monkeypatch, guest_root, kernel, pid, checks):
    """``pid`` exits right after tierd's ``checks``-th look at /proc/PID."""
    real_exists = kernel.exists
    seen = []

    def exists(path):
        alive = real_exists(path)
        if path == "/proc/%d" % pid:
            seen.append(path)
            if len(seen) == checks:
                _exit(guest_root, pid)
        return alive
    monkeypatch.setattr(kernel, "exists", exists)


def test_a_pid_gone_while_the_targets_are_written_is_dropped_before_the_commit(guest_root, monkeypatch):
    """313 is alive at the check after discovery and gone once the target files are written (seconds
    for hundreds of targets on a slow host): the look right before the commit drops it, the kdamond
    keeps running and the staying targets their regions (make test's scale lab restarted it 3 times
    in 10 intervals before)."""
    kernel = _damon_with_processes(guest_root, [311, 312])
    backend = DamonBackend(kernel, validate({})["damon"], Logger(ListStream()))
    backend.track([311, 312])
    serial = {t["pid"]: t["serial"] for t in kernel.kernel_targets}
    _spawn(guest_root, kernel, 313)
    _exits_after_check(monkeypatch, guest_root, kernel, 313, checks=1)
    backend.track([311, 312, 313])
    assert kernel.commands.count("on") == 1 and kernel.commands[-1] == "commit"
    assert backend.pids == [311, 312] == [t["pid"] for t in kernel.kernel_targets]
    assert all(t["serial"] == serial[t["pid"]] for t in kernel.kernel_targets)


def test_a_refused_commit_restarts_the_stopped_kdamond_with_the_live_pids(guest_root, monkeypatch):
    kernel = _damon_with_processes(guest_root, [311, 312])
    backend = DamonBackend(kernel, validate({})["damon"], Logger(ListStream()))
    backend.track([311, 312])
    _spawn(guest_root, kernel, 313)
    # Gone after the last look, right before the commit: the kernel refuses it and stops the kdamond.
    _exits_after_check(monkeypatch, guest_root, kernel, 313, checks=2)
    backend.track([311, 312, 313])
    assert kernel.commands[-1] == "on" and backend.pids == [311, 312] == [t["pid"] for t in kernel.kernel_targets]
    assert backend.restarted == {311, 312}


def test_kdamond_restarts_when_it_stopped_by_itself(guest_root):
    kernel = _damon_with_processes(guest_root, [401])
    backend = DamonBackend(kernel, validate({})["damon"], Logger(ListStream()))
    backend.track([401])
    kernel.write_text("/" + KDAMONDS + "/0/state", "off")  # what a kdamond does when its targets exit
    _spawn(guest_root, kernel, 402)
    backend.track([401, 402])
    assert kernel.commands[-1] == "on" and backend.restarted == {401, 402}


def test_leftover_kdamonds_of_an_older_tierd_are_replaced_by_one(guest_root, tmp_path):
    kernel = _damon_with_processes(guest_root, [501])
    open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds"), "w").write("2\n")
    for index in (0, 1):
        os.makedirs(os.path.join(guest_root, KDAMONDS, str(index)), exist_ok=True)
        open(os.path.join(guest_root, KDAMONDS, str(index), "pid"), "w").write("%d\n" % (900 + index))
    owner = tmp_path / "damon-owner.json"  # the format of a tierd with one kdamond per PID
    owner.write_text('{"tierd_pid": 999999, "nr_kdamonds": 2, "kdamond_pids": ["900", "901"]}')
    stream = ListStream()
    backend = DamonBackend(kernel, validate({})["damon"], Logger(stream), str(owner))
    backend.track([501])
    assert any("event=damon_adopted kdamonds=2" in line for line in stream.lines)
    assert open(os.path.join(guest_root, KDAMONDS, "nr_kdamonds")).read() == "1"
    record = json.loads(owner.read_text())
    assert record["nr_kdamonds"] == 1 and record["targets"] == [501] and record["tierd_pid"] == os.getpid()


def test_restarted_warmup_keeps_heat_but_counts_again():
    heat = HeatMap(decay=0.5, initial=0.5)
    vmas = [(0x10000, 0x10000 + 4 * P, "")]
    for _sample in range(3):
        heat.update(7, vmas, {0x10000: [(0x10000, 0x10000 + 4 * P, 1.0)]})
    before = heat.extents(7, 0x10000, 0x10000 + 4 * P)
    heat.restart_warmup(7)
    assert heat.sampled(7, 0x10000, 0x10000 + 4 * P) == 0
    assert heat.extents(7, 0x10000, 0x10000 + 4 * P) == before
