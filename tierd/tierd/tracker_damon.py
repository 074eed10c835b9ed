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

    def sample(self, targets, pagemap=None):
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
