"""Who promotes hot pages: tierd alone, or the kernel's memory-tiering NUMA balancing with tierd
enforcing the quotas and demoting.

Measured on a trixie guest (issue #14: scattered 4 KiB hot pages, THP off), numa_balancing=2 put
a moving hot set wholly on DRAM within 33 s, where tierd's DAMON readings found none of it; but
the kernel demotes only under memory pressure and knows no per-workload quota. So in
``kernel_promotes`` mode tierd makes no heat-driven promotions (quota-driven ones stay: a PMEM
limit or DRAM minimum the kernel would not meet) and keeps its demotions and DRAM budget.
"""

MODES = ("auto", "tierd", "kernel_promotes")
# numa_balancing's bit for the memory-tiering mode (2); bit 1 is classic NUMA balancing.
MEMORY_TIERING_BIT = 2
# The sysctl is read again this often, so a changed numa_balancing is noticed within a minute
# at the default 5 s interval without a read every interval.
RECHECK_INTERVALS = 12


def choose_mode(kernel, wanted):
    """(mode, reason) for the configured ``tiering_mode``."""
    if wanted != "auto":
        return wanted, "configured"
    if kernel.memory_tiering_balancing_supported():
        return "kernel_promotes", "kernel has memory-tiering numa_balancing (mode 2)"
    return "tierd", "kernel lacks memory-tiering numa_balancing"


def conflict(mode, numa_balancing):
    """Why kernel.numa_balancing contradicts ``mode``, or None when it does not."""
    if numa_balancing is None:
        return "kernel.numa_balancing missing: nobody promotes" if mode == "kernel_promotes" else None
    if mode == "tierd" and numa_balancing & MEMORY_TIERING_BIT:
        return ("numa_balancing=%d promotes hot PMEM pages too: the kernel and tierd would both move pages; "
                "set kernel.numa_balancing=0 or tiering_mode kernel_promotes" % numa_balancing)
    if mode == "tierd" and numa_balancing:
        return ("numa_balancing=%d migrates pages towards the CPUs touching them, PMEM pages included: "
                "set kernel.numa_balancing=0 for tierd alone to place pages" % numa_balancing)
    if mode == "kernel_promotes" and numa_balancing == 0:
        return ("numa_balancing=0: nobody promotes hot pages (tierd leaves that to the kernel in this mode); "
                "set kernel.numa_balancing=2 or tiering_mode tierd")
    if mode == "kernel_promotes" and not numa_balancing & MEMORY_TIERING_BIT:
        # Classic balancing migrates a page to the faulting CPU's node too, but without memory
        # tiering's hot threshold and promotion rate limit: any page touched twice moves.
        return ("numa_balancing=%d is classic NUMA balancing, not memory tiering: it moves every page a CPU "
                "touches, hot or not, without a rate limit; set kernel.numa_balancing=2 or tiering_mode tierd"
                % numa_balancing)
    return None


class TieringMode:
    """The mode chosen at start (and on a reload), and the kernel settings last read against it."""

    def __init__(self, kernel, wanted, logger):
        self.kernel = kernel
        self.logger = logger
        self.choose(wanted)

    def choose(self, wanted):
        """Choose the mode and read the kernel's knobs; a contradiction is logged by announce()."""
        self.wanted = wanted
        self.mode, self.reason = choose_mode(self.kernel, wanted)
        self.numa_balancing = self.kernel.numa_balancing()
        self.demotion_enabled = self.kernel.demotion_enabled()
        self.warning = conflict(self.mode, self.numa_balancing)

    def announce(self):
        """The warning of choose(), once the start line (which names the mode) is out."""
        if self.warning:
            self.logger.warning("tiering_mode_conflict", mode=self.mode, reason=self.warning)

    @property
    def heat_promotions(self):
        """Whether tierd promotes pages because they are hot (quota promotions happen in both modes)."""
        return self.mode == "tierd"

    def read_kernel(self):
        """Read the kernel's knobs; log a warning when the contradiction they make with the mode
        appears or changes, and a line when it ends."""
        self.numa_balancing = self.kernel.numa_balancing()
        self.demotion_enabled = self.kernel.demotion_enabled()
        warning = conflict(self.mode, self.numa_balancing)
        if warning and warning != self.warning:
            self.logger.warning("tiering_mode_conflict", mode=self.mode, reason=warning)
        elif self.warning and not warning:
            self.logger.info("tiering_mode_conflict_resolved", mode=self.mode,
                             numa_balancing=_shown(self.numa_balancing))
        self.warning = warning

    def recheck(self, interval):
        if interval % RECHECK_INTERVALS == 0:
            self.read_kernel()

    def log_fields(self):
        return {"mode": self.mode, "mode_reason": self.reason, "numa_balancing": _shown(self.numa_balancing),
                "demotion_enabled": _shown(self.demotion_enabled)}

    def state(self):
        return {"mode": self.mode, "reason": self.reason, "numa_balancing": self.numa_balancing,
                "demotion_enabled": self.demotion_enabled, "warning": self.warning}


def _shown(value):
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return str(value).lower()
    return value
