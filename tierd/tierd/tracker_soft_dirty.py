"""Soft-dirty write tracker: which pages were written since the previous interval."""

from array import array

from .kernel import PAGEMAP_PRESENT, PAGEMAP_SOFT_DIRTY
from .tracker import PagemapReads, Tracker, pages_to_runs


class SoftDirtyTracker(Tracker):
    """Write signal: pagemap bit 55 since the last `echo 4 > /proc/PID/clear_refs`, as runs (1 = written).

    Reading pagemap costs one entry per page, so unlike DAMON it grows with the mapping: off by default.
    """

    name = "soft_dirty"

    def __init__(self, kernel):
        self.kernel = kernel
        self.cleared = set()

    def sample(self, targets, pagemap=None):
        """Call after the tracking backend's sample of the same interval, sharing its ``pagemap``:
        this clears the soft-dirty bits, which page_idle does not read."""
        result = {}
        pagemap = pagemap or PagemapReads(self.kernel)
        for pid, vmas in targets.items():
            entries = pagemap.mappings(pid, vmas)
            if entries is None:
                continue
            # The first read sees everything dirty since the process started: not a signal.
            if pid in self.cleared:
                # One byte per page (-1: not present, no reading), not a list of Python objects.
                result[pid] = {start: pages_to_runs(start, array("b", [(1 if e & PAGEMAP_SOFT_DIRTY else 0)
                                                                       if e & PAGEMAP_PRESENT else -1
                                                                       for e in mapping]), missing=-1)
                               for start, mapping in entries.items()}
            if self.kernel.clear_soft_dirty(pid):
                self.cleared.add(pid)
        self.cleared &= set(targets)
        return result
