"""Demotion through the kernel's own per-page LRU: a workload's cgroup v2 ``memory.reclaim``.

Measured in a trixie guest (Debian's 6.12, MGLRU on, ``demotion_enabled`` true, issue #14 item 7;
numbers in bench/RESULTS.md): writing N bytes to a cgroup's memory.reclaim demoted N bytes of its
DRAM pages to the PMEM node in ~0.3 s, the coldest first: of a 64 MiB buffer whose hot set is a
scattered 10 % of its 4 KiB pages, all 1,638 hot pages stayed on DRAM for any request up to 63 MiB;
asking 70 MiB (more than its cold pages) took 924 hot pages as well. DAMON's regions cannot tell such
pages apart, so for a workload that is a cgroup tierd decides how many pages leave DRAM (its budget,
quotas and cold estimate) and the kernel decides which.

Only where that is safe and exact: demotion must be on (otherwise the same write swaps anonymous
memory out and drops page cache), and memory.reclaim takes from the whole cgroup, so only a
workload matched by its cgroup alone qualifies. Pages demoted this way are not known one by one, so
``min_residency_intervals`` cannot hold them.

Not the default (``mover.demote_with: move_pages``): tierd still decides how many pages, from its
DAMON readings, and on scattered pages those overstate the cold ones, so the LRU has to give hot
pages too (bench/peers, kernel_promotes, bench/RESULTS.md: the hot set wholly demoted by the end of
W2 when the workload's TLB was never flushed, as under TCG; 100 % kept when it was flushed, which is
closer to a real CPU's small TLB).
"""

from .kernel import PAGE_SIZE
from .mover import batches


def method_for(workload, wanted, demotion_enabled, kernel):
    """(method, reason): how ``workload``'s demotions are made this interval."""
    if wanted == "move_pages":
        return "move_pages", "configured"
    if set(workload["match"]) != {"cgroup"}:
        return "move_pages", "matched by more than its cgroup, and memory.reclaim would take from all of the cgroup"
    if demotion_enabled is not True:
        return "move_pages", "demotion_enabled is not true: memory.reclaim would swap out or drop pages, not demote them"
    if not kernel.cgroup_can_reclaim(workload["match"]["cgroup"]):
        return "move_pages", "the cgroup has no memory.reclaim (memory controller off there, or a kernel before 5.19)"
    return "reclaim", "configured"


class Reclaimer:
    """Asks the kernel to demote a number of a cgroup's pages, in batches under the mover's rate limit."""

    def __init__(self, kernel, batch_pages, limiter, should_stop=lambda: False):
        self.kernel = kernel
        self.batch_pages = batch_pages
        self.limiter = limiter
        self.should_stop = should_stop

    def demote(self, cgroup, pages):
        """(pages demoted as memory.stat counts them, pages asked, short: the kernel found no more,
        stopped). A KernelError from the write propagates."""
        before = self.kernel.cgroup_demoted_pages(cgroup)
        asked = 0
        short = stopped = False
        for chunk in batches(range(pages), self.batch_pages):
            if self.should_stop() or not self.limiter.acquire(len(chunk) * PAGE_SIZE):
                stopped = True
                break
            asked += len(chunk)
            if not self.kernel.cgroup_reclaim(cgroup, len(chunk) * PAGE_SIZE):
                short = True
                break
        after = self.kernel.cgroup_demoted_pages(cgroup)
        demoted = 0 if before is None or after is None else max(0, after - before)
        return demoted, asked, short, stopped
