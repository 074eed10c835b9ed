"""Access tracking without page faults: DAMON (vaddr) or page_idle, plus heat aged per extent.

A backend's ``sample(targets)`` returns, per PID and per tracked mapping (keyed by its start), a
sorted list of runs ``(start, end, value)``: the access frequency seen in the last interval
(0..1), or -1 (UNKNOWN) where nothing is known yet. Addresses no run covers are unknown too.
``HeatMap`` ages those runs into heat kept per extent (a range of pages with one heat), so the
work per interval follows the number of DAMON regions, not the number of pages.
"""

import json
import os
from array import array

from .kernel import DAMON_ADMIN, KPF_THP, PAGE_SIZE, PAGEMAP_PFN_MASK, PAGEMAP_PRESENT, PAGEMAP_SOFT_DIRTY, KernelError

UNKNOWN = -1.0
ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
# Neighbouring extents whose heat differs by less than this are merged: DAMON moves its region
# boundaries every aggregation, and without merging every boundary it ever drew would stay an
# extent. 0.01 is far below any sensible gap between the hot and cold thresholds.
HEAT_TOLERANCE = 0.01


class BackendUnavailable(KernelError):
    pass


def choose_backend(kernel, cfg, logger):
    """The backend named in config, or DAMON when the kernel has it, else page_idle; refuse with neither."""
    wanted = cfg["backend"]
    damon_ok, damon_why = DamonBackend.available(kernel)
    idle_ok, idle_why = PageIdleBackend.available(kernel)
    if wanted == "damon" and not damon_ok:
        raise BackendUnavailable("backend damon requested but unavailable: %s" % damon_why)
    if wanted == "page_idle" and not idle_ok:
        raise BackendUnavailable("backend page_idle requested but unavailable: %s" % idle_why)
    if wanted == "auto" and not damon_ok and not idle_ok:
        raise BackendUnavailable("no access-tracking backend: DAMON: %s; page_idle: %s. tierd needs a kernel "
                                 "with CONFIG_DAMON_SYSFS+CONFIG_DAMON_VADDR or CONFIG_IDLE_PAGE_TRACKING"
                                 % (damon_why, idle_why))
    if wanted == "page_idle" or (wanted == "auto" and not damon_ok):
        return PageIdleBackend(kernel, logger)
    owner_file = os.path.join(os.path.dirname(cfg["state_file"]), "damon-owner.json")
    return DamonBackend(kernel, cfg["damon"], logger, owner_file)


class HeatMap:
    """Heat per extent of each tracked mapping: heat = decay * heat + (1 - decay) * sample.

    Each mapping's extents are a sorted list of ``(start, end, heat)`` covering it without gaps.
    """

    def __init__(self, decay, write_weight=0.0, initial=0.0):
        self.decay = decay
        # New pages start between the thresholds: neither hot nor cold until samples say so.
        self.initial = initial
        self.write_weight = write_weight
        self.heat = {}  # pid -> {(start, end): [(start, end, heat), ...]}
        self.samples = {}  # pid -> {(start, end): intervals sampled}, so new mappings warm up first

    def update(self, pid, vmas, samples, writes=None):
        old = self.heat.get(pid, {})
        old_counts = self.samples.get(pid, {})
        new = {}
        counts = {}
        for start, end, _name in vmas:
            extents = old.get((start, end)) or [(start, end, self.initial)]
            sample = (samples or {}).get(start)
            dirty = (writes or {}).get(start)
            counts[(start, end)] = old_counts.get((start, end), 0) + (1 if sample is not None else 0)
            if sample or dirty:
                extents = age_extents(extents, sample or [], dirty or [], self.decay, self.write_weight)
            new[(start, end)] = extents
        self.heat[pid] = new
        self.samples[pid] = counts

    def sampled(self, pid, start, end):
        return self.samples.get(pid, {}).get((start, end), 0)

    def extents(self, pid, start, end):
        return self.heat.get(pid, {}).get((start, end))

    def heat_at(self, pid, address):
        for (start, end), extents in self.heat.get(pid, {}).items():
            if start <= address < end:
                for low, high, heat in extents:
                    if low <= address < high:
                        return heat
        return None

    def forget(self, live_pids):
        for pid in list(self.heat):
            if pid not in live_pids:
                del self.heat[pid]
                self.samples.pop(pid, None)


def age_extents(extents, samples, writes, decay, write_weight, tolerance=HEAT_TOLERANCE):
    """New extents after one interval's sample runs (and soft-dirty runs, 1 = written) are aged in.

    Work is O(n log n) in the number of extents and runs, whatever the size of the mapping.
    """
    cuts = set()
    for runs in (extents, samples, writes):
        for run in runs:
            cuts.add(run[0])
            cuts.add(run[1])
    low, high = extents[0][0], extents[-1][1]
    points = sorted(c for c in cuts if low <= c <= high)
    keep = decay
    take = 1.0 - decay
    result = []
    e = s = w = 0
    n_samples = len(samples)
    n_writes = len(writes)
    for begin, finish in zip(points, points[1:]):
        # Three cursors walk the sorted lists once: each piece lies inside one run of each, or none.
        while extents[e][1] <= begin:
            e += 1
        heat = extents[e][2]
        while s < n_samples and samples[s][1] <= begin:
            s += 1
        if s < n_samples and samples[s][0] <= begin and samples[s][2] >= 0:
            value = samples[s][2]
            while w < n_writes and writes[w][1] <= begin:
                w += 1
            if w < n_writes and writes[w][0] <= begin and writes[w][2]:
                value += write_weight
            heat = keep * heat + take * value
        if result and abs(result[-1][2] - heat) < tolerance:
            first, _last, previous = result[-1]
            result[-1] = (first, finish, (previous * (begin - first) + heat * (finish - begin)) / (finish - first))
        else:
            result.append((begin, finish, heat))
    return result


def regions_to_runs(vmas, regions, max_accesses, min_idle_age=0):
    """Runs of access frequency per mapping from DAMON regions [(start, end, nr_accesses, age)].

    A region seen idle for fewer than ``min_idle_age`` aggregations gives UNKNOWN: right after
    start (or a split) DAMON samples one random page of a large mixed region, and a zero there
    does not mean the hot pages in it went cold.
    """
    samples = {}
    for start, end, _name in vmas:
        runs = []
        for region in regions:
            rstart, rend, nr_accesses = region[:3]
            age = region[3] if len(region) > 3 else min_idle_age
            low = max(start, rstart)
            high = min(end, rend)
            if low >= high:
                continue
            value = min(1.0, float(nr_accesses) / max_accesses)
            if nr_accesses == 0 and age < min_idle_age:
                value = UNKNOWN
            runs.append((low, high, value))
        samples[start] = sorted(runs)
    return samples


def pages_to_runs(start, values):
    """Runs of equal values from one value per page starting at ``start`` (None = no run)."""
    runs = []
    run_start = None
    current = None
    for index, value in enumerate(values):
        if value != current:
            if current is not None:
                runs.append((run_start, start + index * PAGE_SIZE, current))
            run_start = start + index * PAGE_SIZE
            current = value
    if current is not None:
        runs.append((run_start, start + len(values) * PAGE_SIZE, current))
    return runs


class DamonBackend:
    """DAMON sysfs, vaddr operations: one kdamond of tierd's own per tracked PID, a `stat` scheme
    whose tried regions carry each region's access count. tierd only ever touches kdamonds it
    created, and creates none while another tool has kdamonds.

    A tierd killed with SIGKILL leaves its kdamonds running. The owner file (next to the state
    file) records them, so the restarted tierd recognises and takes back its own leftovers, and
    still refuses kdamonds it cannot prove are its own.
    """

    name = "damon"
    KDAMONDS = DAMON_ADMIN + "/kdamonds"

    def __init__(self, kernel, damon_cfg, logger, owner_file=None):
        self.kernel = kernel
        self.cfg = damon_cfg
        self.logger = logger
        self.owner_file = owner_file
        self.pids = []  # pids[i] is tracked by kdamonds/i

    @classmethod
    def available(cls, kernel):
        if not kernel.exists(cls.KDAMONDS + "/nr_kdamonds"):
            return False, "%s missing (kernel without CONFIG_DAMON_SYSFS)" % (cls.KDAMONDS + "/nr_kdamonds")
        return True, "ok"

    def warmup_intervals(self, interval_seconds):
        """Intervals before a new target's regions are worth trusting: DAMON starts from a few big
        regions and splits them once per aggregation, so right after (re)start a hot region still
        holds cold pages, which would be promoted with it."""
        aggregations = self.cfg["warmup_aggregations"] * self.cfg["aggr_us"] / 1e6
        return int(-(-aggregations // interval_seconds))

    @property
    def max_accesses(self):
        return max(1, self.cfg["aggr_us"] // self.cfg["sample_us"])

    def _k(self, index, rel=""):
        return "%s/%d%s" % (self.KDAMONDS, index, rel)

    def _nr_kdamonds(self):
        return int(self.kernel.read_text(self.KDAMONDS + "/nr_kdamonds"))

    def _stop_ours(self):
        for index in range(len(self.pids)):
            try:
                if self.kernel.read_text(self._k(index, "/state"), default="off") == "on":
                    self.kernel.write_text(self._k(index, "/state"), "off")
            except OSError:
                pass

    def _configure(self, index, pid):
        w = self.kernel.write_text
        ctx = "/contexts/0"
        w(self._k(index, "/contexts/nr_contexts"), 1)
        w(self._k(index, ctx + "/operations"), "vaddr")
        w(self._k(index, ctx + "/monitoring_attrs/intervals/sample_us"), self.cfg["sample_us"])
        w(self._k(index, ctx + "/monitoring_attrs/intervals/aggr_us"), self.cfg["aggr_us"])
        w(self._k(index, ctx + "/monitoring_attrs/intervals/update_us"), max(self.cfg["aggr_us"], 1000000))
        w(self._k(index, ctx + "/monitoring_attrs/nr_regions/min"), self.cfg["min_nr_regions"])
        w(self._k(index, ctx + "/monitoring_attrs/nr_regions/max"), self.cfg["max_nr_regions"])
        w(self._k(index, ctx + "/targets/nr_targets"), 1)
        w(self._k(index, ctx + "/targets/0/pid_target"), pid)
        scheme = ctx + "/schemes/0"
        w(self._k(index, ctx + "/schemes/nr_schemes"), 1)
        w(self._k(index, scheme + "/action"), "stat")
        # The access-pattern ranges default to 0..0 and would match nothing: open them fully.
        for attr, high in (("sz", ULONG_MAX), ("nr_accesses", UINT_MAX), ("age", UINT_MAX)):
            w(self._k(index, scheme + "/access_pattern/%s/min" % attr), 0)
            w(self._k(index, scheme + "/access_pattern/%s/max" % attr), high)

    def track(self, pids):
        """Make the set of tracked PIDs equal ``pids`` (rebuilds tierd's kdamonds on change)."""
        pids = sorted(pids)
        if pids == self.pids:
            return
        current = self._nr_kdamonds()
        if current and not self.pids and self._adopt_leftovers(current):
            self.pids = [0] * current
        if current != len(self.pids):
            raise KernelError("DAMON has %d kdamonds but tierd created %d: another tool is using DAMON; "
                              "tierd will not clobber it (stop that tool, or set backend to page_idle)"
                              % (current, len(self.pids)))
        self._stop_ours()
        self.kernel.write_text(self.KDAMONDS + "/nr_kdamonds", len(pids))
        self.pids = pids
        started = []
        for index, pid in enumerate(pids):
            try:
                self._configure(index, pid)
                self.kernel.write_text(self._k(index, "/state"), "on")
                started.append(pid)
            except OSError as exc:
                # The process may have exited between discovery and here.
                self.logger.debug("damon_target_failed", pid=pid, error=exc.strerror or exc)
        self._write_owner()
        self.logger.info("damon_tracking", pids=",".join(map(str, started)) or "-", kdamonds=len(pids))

    def _kdamond_pids(self):
        return [self.kernel.read_text(self._k(i, "/pid"), default="") for i in range(len(self.pids))]

    def _write_owner(self):
        if not self.owner_file:
            return
        record = {"tierd_pid": os.getpid(), "nr_kdamonds": len(self.pids), "kdamond_pids": self._kdamond_pids()}
        try:
            os.makedirs(os.path.dirname(self.owner_file), exist_ok=True)
            with open(self.owner_file + ".tmp", "w") as out:
                json.dump(record, out)
            os.rename(self.owner_file + ".tmp", self.owner_file)
        except OSError as exc:
            self.logger.warning("damon_owner_not_written", path=self.owner_file, error=exc.strerror)

    def _adopt_leftovers(self, current):
        """True when the running kdamonds are the ones a dead tierd recorded in the owner file."""
        if not self.owner_file:
            return False
        try:
            with open(self.owner_file) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return False
        previous = record.get("tierd_pid")
        if previous == os.getpid() or record.get("nr_kdamonds") != current:
            return False
        cmdline = self.kernel.proc_text(previous, "cmdline") if isinstance(previous, int) else None
        if cmdline is not None and "tierd" in cmdline:
            return False  # that tierd is still alive: two agents must not share DAMON
        now = [self.kernel.read_text(self._k(i, "/pid"), default="") for i in range(current)]
        if now != record.get("kdamond_pids"):
            return False
        self.logger.info("damon_adopted", kdamonds=current, previous_tierd_pid=previous)
        return True

    def _regions(self, index):
        return sorted(self.kernel.numbered_rows(self._k(index, "/contexts/0/schemes/0/tried_regions"),
                                                ("start", "end", "nr_accesses", "age")))

    def sample(self, targets, _pagemap=None):
        """{pid: {vma start: runs of access frequency}} for tracked PIDs whose kdamond is running
        (the pagemap reads are for backends that need them; DAMON does not)."""
        self.track(list(targets))
        result = {}
        for index, pid in enumerate(self.pids):
            try:
                if self.kernel.read_text(self._k(index, "/state")) == "off":
                    continue  # kdamond stops by itself when its target exits
                self.kernel.write_text(self._k(index, "/state"), "update_schemes_tried_regions")
            except OSError:
                continue
            result[pid] = regions_to_runs(targets[pid], self._regions(index), self.max_accesses,
                                          self.cfg["min_idle_aggregations"])
        return result

    def close(self):
        if not self.pids:
            return
        try:
            if self._nr_kdamonds() == len(self.pids):
                self._stop_ours()
                self.kernel.write_text(self.KDAMONDS + "/nr_kdamonds", 0)
                self.logger.info("damon_released", kdamonds=len(self.pids))
                if self.owner_file and os.path.exists(self.owner_file):
                    os.unlink(self.owner_file)
            else:
                self.logger.warning("damon_not_released", reason="kdamond count changed by another tool")
        except OSError as exc:
            self.logger.warning("damon_not_released", reason=exc.strerror or exc)
        self.pids = []


class PagemapReads:
    """One interval's pagemap entries per mapping, read once: page_idle (PFNs) and soft-dirty
    (bit 55) both need them, and a pagemap read is one entry per page."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.entries = {}

    def read(self, pid, start, end):
        """Pagemap entries of a mapping, or None when the process is gone."""
        key = (pid, start, end)
        if key not in self.entries:
            self.entries[key] = self.kernel.read_pagemap(pid, start, (end - start) // PAGE_SIZE)
        return self.entries[key]


def fold_huge_pages(kernel, start, pfns, huge_pages):
    """``pfns`` with every frame of a transparent huge page replaced by its head frame.

    page_idle keeps a huge page's idle flag on its head frame only: a tail frame can be neither
    marked nor read (it always reads as accessed). A huge page mapped whole sits on an aligned
    virtual block with aligned, consecutive frames; /proc/kpageflags confirms it is one.
    """
    if huge_pages <= 1:
        return pfns
    first = (-(start // PAGE_SIZE)) % huge_pages
    candidates = [i for i in range(first, len(pfns) - huge_pages + 1, huge_pages)
                  if pfns[i] and pfns[i] % huge_pages == 0 and pfns[i + huge_pages - 1] == pfns[i] + huge_pages - 1]
    if not candidates:
        return pfns
    flags = kernel.read_kpageflags([pfns[i] for i in candidates])
    folded = array("Q", pfns)
    for i in candidates:
        if flags.get(pfns[i], 0) & KPF_THP:
            folded[i:i + huge_pages] = array("Q", [pfns[i]]) * huge_pages
    return folded


class PageIdleBackend:
    """page_idle: mark each present page's frame idle, read the flag back one interval later.

    Pages of a transparent huge page are tracked through its head frame (see fold_huge_pages).
    """

    name = "page_idle"

    def __init__(self, kernel, logger):
        self.kernel = kernel
        self.logger = logger
        self.marked = {}  # pid -> {vma start: array('Q') of PFNs marked last interval (0 = none)}
        size = kernel.read_text("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", default="0")
        self.huge_pages = max(1, int(size) // PAGE_SIZE) if size.isdigit() else 1

    @staticmethod
    def warmup_intervals(_interval_seconds):
        return 0  # a reading per page from the first interval on

    @classmethod
    def available(cls, kernel):
        if not kernel.page_idle_available():
            return False, "/sys/kernel/mm/page_idle/bitmap missing (kernel without CONFIG_IDLE_PAGE_TRACKING)"
        return True, "ok"

    def track(self, pids):
        for pid in list(self.marked):
            if pid not in pids:
                del self.marked[pid]

    def sample(self, targets, pagemap=None):
        self.track(targets)
        pagemap = pagemap or PagemapReads(self.kernel)
        frames = {}  # pid -> {vma start: array('Q') of current PFNs}
        for pid, vmas in targets.items():
            per_vma = {}
            for start, end, _name in vmas:
                entries = pagemap.read(pid, start, end)
                if entries is None:
                    break
                pfns = array("Q", (e & PAGEMAP_PFN_MASK if e & PAGEMAP_PRESENT else 0 for e in entries))
                if len(pfns) < (end - start) // PAGE_SIZE:
                    pfns.extend([0] * ((end - start) // PAGE_SIZE - len(pfns)))
                per_vma[start] = fold_huge_pages(self.kernel, start, pfns, self.huge_pages)
            else:
                frames[pid] = per_vma
        present = [pfn for per_vma in frames.values() for pfns in per_vma.values() for pfn in pfns if pfn]
        words = self.kernel.read_idle_words(sorted({pfn >> 6 for pfn in present}))
        result = {}
        for pid, per_vma in frames.items():
            old = self.marked.get(pid, {})
            samples = {}
            for start, pfns in per_vma.items():
                before = old.get(start)
                sample = array("d", [UNKNOWN]) * len(pfns)
                for i, pfn in enumerate(pfns):
                    if pfn and before is not None and i < len(before) and before[i] == pfn:
                        idle = (words.get(pfn >> 6, 0) >> (pfn & 63)) & 1
                        sample[i] = 0.0 if idle else 1.0
                samples[start] = pages_to_runs(start, sample)
            result[pid] = samples
        mark = {}
        for pfn in present:
            mark[pfn >> 6] = mark.get(pfn >> 6, 0) | (1 << (pfn & 63))
        self.kernel.write_idle_words(mark)
        self.marked = frames
        return result

    def close(self):
        self.marked = {}


class SoftDirtyTracker:
    """Write signal: pagemap bit 55 since the last `echo 4 > /proc/PID/clear_refs`, as runs (1 = written).

    Reading pagemap costs one entry per page, so unlike DAMON it grows with the mapping: off by default.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self.cleared = set()

    def sample(self, targets, pagemap=None):
        """Call after the tracking backend's sample of the same interval, sharing its ``pagemap``:
        this clears the soft-dirty bits, which page_idle does not read."""
        result = {}
        pagemap = pagemap or PagemapReads(self.kernel)
        for pid, vmas in targets.items():
            per_vma = {}
            for start, end, _name in vmas:
                entries = pagemap.read(pid, start, end)
                if entries is None:
                    break
                per_vma[start] = pages_to_runs(start, [(1 if e & PAGEMAP_SOFT_DIRTY else 0) if e & PAGEMAP_PRESENT
                                                       else None for e in entries])
            else:
                # The first read sees everything dirty since the process started: not a signal.
                if pid in self.cleared:
                    result[pid] = per_vma
                if self.kernel.clear_soft_dirty(pid):
                    self.cleared.add(pid)
        self.cleared &= set(targets)
        return result
