"""DAMON backend: the kernel's own region-based access monitor (sysfs, vaddr operations)."""

import json
import os

from .kernel import DAMON_ADMIN, KernelError
from .tracker import UNKNOWN, Tracker

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


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


class DamonBackend(Tracker):
    """DAMON sysfs, vaddr operations: ONE kdamond of tierd's own (kdamonds/0, context 0) with one
    target per tracked PID, and per target a `stat` scheme whose tried regions carry that target's
    regions and access counts. tierd only ever touches the kdamond it created, and creates none
    while another tool has kdamonds.

    Processes come and go without a restart: the new targets are written and ``commit`` is
    written to the running kdamond's ``state``. The kernel (6.12 ``damon_commit_targets``)
    matches committed targets to running ones *by index*: a target whose index keeps its PID keeps
    its regions and their ages, a target given a new PID at an index keeps the regions of the one
    before (and DAMON fits them to the new address space at its next update), and targets past the
    new count are dropped. So PIDs that stay keep their index wherever possible; new PIDs fill the
    freed indexes, and only when more PIDs left than came do the last ones move down. A PID that
    is new at its index, or moved, starts its warm-up again (``restarted``).

    Why one scheme per target: a scheme's tried regions carry no target (start, end,
    nr_accesses, age only), and different processes' virtual addresses overlap. A ``target``
    filter (a core-layer filter, so vaddr honours it, and applied before the region is recorded
    as tried) with ``matching`` N filters out every target but its own. The kernel's cost per
    aggregation grows with targets × regions × schemes (a cheap range and filter check each).

    A tierd killed with SIGKILL leaves its kdamond running. The owner file (next to the state
    file) records it, so the restarted tierd recognises and takes back its own leftovers (also
    the several kdamonds of a tierd from before one kdamond served all), and still refuses
    kdamonds it cannot prove are its own.
    """

    name = "damon"
    KDAMONDS = DAMON_ADMIN + "/kdamonds"
    KDAMOND = KDAMONDS + "/0"
    CONTEXT = KDAMOND + "/contexts/0"

    def __init__(self, kernel, damon_cfg, logger, owner_file=None):
        self.kernel = kernel
        self.cfg = damon_cfg
        self.logger = logger
        self.owner_file = owner_file
        self.pids = []  # pids[i] is tracked by targets/i and schemes/i of kdamonds/0
        self.owned = 0  # kdamonds of tierd's own (more than 1 only when adopted from an older tierd)
        self.restarted = set()  # PIDs whose readings start over since the last track()
        self.commits = 0  # in-place target updates of the running kdamond
        self.starts = 0  # times the kdamond was (re)started from scratch

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

    def _running(self):
        return self.kernel.read_text(self.KDAMOND + "/state", default="off") == "on"

    def _stop_ours(self):
        for index in range(self.owned):
            try:
                if self.kernel.read_text(self._k(index, "/state"), default="off") == "on":
                    self.kernel.write_text(self._k(index, "/state"), "off")
            except OSError:
                pass

    def _configure_attrs(self):
        w = self.kernel.write_text
        ctx = self.CONTEXT
        w(self.KDAMOND + "/contexts/nr_contexts", 1)
        w(ctx + "/operations", "vaddr")
        w(ctx + "/monitoring_attrs/intervals/sample_us", self.cfg["sample_us"])
        w(ctx + "/monitoring_attrs/intervals/aggr_us", self.cfg["aggr_us"])
        w(ctx + "/monitoring_attrs/intervals/update_us", max(self.cfg["aggr_us"], 1000000))
        w(ctx + "/monitoring_attrs/nr_regions/min", self.cfg["min_nr_regions"])
        w(ctx + "/monitoring_attrs/nr_regions/max", self.cfg["max_nr_regions"])

    def _configure_scheme(self, index):
        w = self.kernel.write_text
        scheme = "%s/schemes/%d" % (self.CONTEXT, index)
        w(scheme + "/action", "stat")
        # The access-pattern ranges default to 0..0 and would match nothing: open them fully.
        for attr, high in (("sz", ULONG_MAX), ("nr_accesses", UINT_MAX), ("age", UINT_MAX)):
            w(scheme + "/access_pattern/%s/min" % attr, 0)
            w(scheme + "/access_pattern/%s/max" % attr, high)
        # Filtered out: memory that does NOT belong to target `index`, so the scheme's tried
        # regions are that target's alone.
        w(scheme + "/filters/nr_filters", 1)
        w(scheme + "/filters/0/type", "target")
        w(scheme + "/filters/0/damon_target_idx", index)
        w(scheme + "/filters/0/matching", "N")

    def _write_inputs(self, pids, changed):
        """Targets and schemes for ``pids``; only the indexes in ``changed`` when the count is
        the same (writing nr_targets or nr_schemes recreates every directory below it)."""
        w = self.kernel.write_text
        ctx = self.CONTEXT
        written = int(self.kernel.read_text(ctx + "/targets/nr_targets", default="0"))
        if written != len(pids):
            w(ctx + "/targets/nr_targets", len(pids))
            w(ctx + "/schemes/nr_schemes", len(pids))
            changed = range(len(pids))
            for index in changed:
                self._configure_scheme(index)
        for index in changed:
            w("%s/targets/%d/pid_target" % (ctx, index), pids[index])

    @staticmethod
    def assign_indexes(old, wanted):
        """New ``pids`` list, PIDs staying put where they can: (pids, PIDs new at their index)."""
        wanted = set(wanted)
        count = len(wanted)
        pids = [pid if index < count and pid in wanted else None for index, pid in enumerate(old[:count])]
        pids.extend([None] * (count - len(pids)))
        kept = set(p for p in pids if p is not None)
        # New PIDs first (they have no history to lose), then those past the new count.
        incoming = sorted(wanted - set(old)) + [p for p in old[count:] if p in wanted and p not in kept]
        moved = iter(incoming)
        for index, pid in enumerate(pids):
            if pid is None:
                pids[index] = next(moved)
        return pids, set(incoming)

    def _alive(self, pids):
        """The PIDs of ``pids`` that still exist, in their order."""
        return [pid for pid in pids if self.kernel.exists("/proc/%d" % pid)]

    def track(self, pids):
        """Make the set of tracked PIDs equal ``pids``: commit to the running kdamond, or start it."""
        # Discovery was a while ago (seconds for hundreds of PIDs on a slow host), and one PID gone by
        # the commit makes the kernel refuse it *and stop the kdamond* (6.12: a failed sysfs command
        # ends kdamond_fn), so every target's regions would be rebuilt: drop the exited ones first.
        wanted = self._alive(sorted(set(pids)))
        if wanted == sorted(self.pids) and (not wanted or self._running()):
            self.restarted = set()
            return
        self._take_kdamond()
        exc = None
        for attempt in (1, 2):
            try:
                self._apply(wanted)
                break
            except OSError as refused:
                exc = refused
                # A process exited between discovery and here: the kernel refuses the whole commit.
                alive = self._alive(wanted)
                self.logger.debug("damon_targets_refused", attempt=attempt, error=exc.strerror or exc,
                                  gone=len(wanted) - len(alive))
                wanted = alive
        else:
            # Not a race then: the kernel refused tierd's input itself. Loud, or nothing is tracked unseen.
            self.logger.warning("damon_targets_failed", error=exc.strerror or exc, targets=len(wanted),
                                action="tracking nothing this interval; trying again next interval")
            self.pids = []
            self.restarted = set()
        self._write_owner()

    def _take_kdamond(self):
        """Ensure kdamonds/0 is tierd's (created, or adopted from a dead tierd), and the only one."""
        current = self._nr_kdamonds()
        if current and not self.owned and self._adopt_leftovers(current):
            self.owned = current
            self.pids = []  # their targets are a dead tierd's; start over
            self._stop_ours()
            self.kernel.write_text(self.KDAMONDS + "/nr_kdamonds", 0)
            self.owned = current = 0
        if current != self.owned:
            raise KernelError("DAMON has %d kdamonds but tierd created %d: another tool is using DAMON; "
                              "tierd will not clobber it (stop that tool, or set backend to page_idle)"
                              % (current, self.owned))
        if not self.owned:
            self.kernel.write_text(self.KDAMONDS + "/nr_kdamonds", 1)
            self.owned = 1
            self.pids = []

    def _apply(self, wanted):
        if not wanted:
            if self._running():
                self.kernel.write_text(self.KDAMOND + "/state", "off")
            self.pids = []
            self.restarted = set()
            self.logger.info("damon_tracking", targets=0, new="-", moved=0, how="off")
            return
        running = self._running()
        if running:
            on_sysfs = self.pids
            for _attempt in range(3):
                pids, fresh = self.assign_indexes(self.pids, wanted)
                changed = [i for i, pid in enumerate(pids) if i >= len(on_sysfs) or on_sysfs[i] != pid]
                self._write_inputs(pids, changed)
                on_sysfs = pids
                # Writing the files took a while when the count changed (every target and scheme
                # directory again: seconds for hundreds under TCG); a PID gone meanwhile would have
                # the kernel refuse the commit and stop the kdamond. Looked at again right before it.
                gone = sorted(set(pids) - set(self._alive(pids)))
                if not gone:
                    break
                wanted = [pid for pid in wanted if pid not in gone]
                if not wanted:
                    break
            self.kernel.write_text(self.KDAMOND + "/state", "commit")
            self.commits += 1
            how = "commit"
        else:
            # Not started yet, or stopped by itself when every target had exited.
            pids, fresh = list(wanted), set(wanted)
            self._configure_attrs()
            self.kernel.write_text(self.CONTEXT + "/targets/nr_targets", 0)  # rewrite them all
            self._write_inputs(pids, range(len(pids)))
            self.kernel.write_text(self.KDAMOND + "/state", "on")
            self.starts += 1
            how = "start"
        moved = len(fresh - (set(wanted) - set(self.pids)))
        self.pids = pids
        self.restarted = fresh
        self.logger.info("damon_tracking", targets=len(pids), new=len(fresh) - moved, moved=moved, how=how)

    def _kdamond_pids(self):
        return [self.kernel.read_text(self._k(i, "/pid"), default="") for i in range(self.owned)]

    def _write_owner(self):
        if not self.owner_file:
            return
        # nr_kdamonds and kdamond_pids as before, so an older tierd still recognises the record.
        record = {"tierd_pid": os.getpid(), "nr_kdamonds": self.owned, "kdamond_pids": self._kdamond_pids(),
                  "targets": self.pids}
        try:
            os.makedirs(os.path.dirname(self.owner_file), exist_ok=True)
            with open(self.owner_file + ".tmp", "w") as out:
                json.dump(record, out)
            os.rename(self.owner_file + ".tmp", self.owner_file)
        except OSError as exc:
            self.logger.warning("damon_owner_not_written", path=self.owner_file, error=exc.strerror)

    def _adopt_leftovers(self, current):
        """True when the running kdamonds are the ones a dead tierd recorded in the owner file
        (one kdamond in this format, one per PID in the format before)."""
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
        return sorted(self.kernel.numbered_rows("%s/schemes/%d/tried_regions" % (self.CONTEXT, index),
                                                ("start", "end", "nr_accesses", "age")))

    def sample(self, targets, pagemap=None):
        """{pid: {vma start: runs of access frequency}} for the tracked PIDs (the pagemap reads
        are for backends that need them; DAMON does not)."""
        self.track(list(targets))
        result = {}
        if not self.pids:
            return result
        try:
            if not self._running():
                return result  # stopped by itself: every target exited since track()
            self.kernel.write_text(self.KDAMOND + "/state", "update_schemes_tried_regions")
        except OSError:
            return result
        for index, pid in enumerate(self.pids):
            if pid in targets:
                result[pid] = regions_to_runs(targets[pid], self._regions(index), self.max_accesses,
                                              self.cfg["min_idle_aggregations"])
        return result

    def close(self):
        if not self.owned:
            return
        try:
            if self._nr_kdamonds() == self.owned:
                self._stop_ours()
                self.kernel.write_text(self.KDAMONDS + "/nr_kdamonds", 0)
                self.logger.info("damon_released", kdamonds=self.owned)
                if self.owner_file and os.path.exists(self.owner_file):
                    os.unlink(self.owner_file)
            else:
                self.logger.warning("damon_not_released", reason="kdamond count changed by another tool")
        except OSError as exc:
            self.logger.warning("damon_not_released", reason=exc.strerror or exc)
        self.pids = []
        self.owned = 0
