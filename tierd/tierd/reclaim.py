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

``reclaim`` alone is never chosen by ``auto``: tierd still decides how many pages, from its DAMON
readings, and on scattered pages those overstate the cold ones, so the LRU has to give hot pages too
(bench/peers, kernel_promotes: the hot set of W2 17 % and 0 % on DRAM at the end in two runs, 100 %
in one whose workload flushed its TLB after each sweep).

``lru_gen`` goes further on a kernel whose multi-gen LRU is on (Debian's 6.12: enabled 0x0007) and
debugfs mounted: tierd ages the cgroup's generations on each DRAM node every
``mover.lru_gen_idle_seconds`` / IDLE_GENERATIONS seconds, in whole intervals (debugfs ``lru_gen``
"+" command, a page-table walk that moves every page accessed since into the youngest generation)
and evicts, which with demotion on demotes, the pages of the generations older than the
IDLE_GENERATIONS youngest ("-" command): pages no aging found accessed for that many agings, one by
one, as the kernel's LRU sees them. Aging every interval (3 s in bench/peers) also demoted the
workload's own interpreter and library pages touched every ten seconds or so, which the kernel then
promoted again: 1,330 of 3,446 such pages beside W2's buffer, +70 % hint faults over the kernel
alone; with the agings 6–15 s apart 0–286 came back (bench/RESULTS.md). Measured in the same guest
(bench/RESULTS.md): 64 MiB with a scattered 10 % hot set on DRAM, 3 s intervals: the cold pages
demoted after 10 s, every hot page kept; the hot set moved, the old one demoted 10 s later. The counted demotions a budget or quota needs still go
through memory.reclaim (the kernel then takes the coldest pages too). ``auto`` (the default) takes
lru_gen where it can run and the kernel promotes (tiering_mode kernel_promotes): in bench/peers it
was the best of tierd's ways on every workload it ran (bench/RESULTS.md); with tierd promoting by
its own heat, pages the kernel demoted could bounce, so move_pages stays there.
"""

from .kernel import PAGE_SIZE
from .mover import batches


def method_for(workload, wanted, mode, demotion_enabled, kernel):
    """(method, reason): how ``workload``'s demotions are made this interval. ``auto`` takes lru_gen
    where it can run and the kernel promotes; everywhere else move_pages."""
    if wanted == "move_pages":
        return "move_pages", "configured"
    if wanted == "auto" and mode != "kernel_promotes":
        return "move_pages", ("tiering_mode tierd: tierd promotes by its own heat, and pages the kernel demoted "
                              "cannot be held by min_residency_intervals")
    if set(workload["match"]) != {"cgroup"}:
        return "move_pages", "matched by more than its cgroup, and memory.reclaim would take from all of the cgroup"
    if demotion_enabled is not True:
        return "move_pages", "demotion_enabled is not true: memory.reclaim would swap out or drop pages, not demote them"
    if not kernel.cgroup_can_reclaim(workload["match"]["cgroup"]):
        return "move_pages", "the cgroup has no memory.reclaim (memory controller off there, or a kernel before 5.19)"
    if wanted in ("lru_gen", "auto") and not kernel.lru_gen_available():
        return "move_pages", ("the multi-gen LRU is off or its debugfs file missing (/sys/kernel/mm/lru_gen/enabled, "
                              "debugfs on /sys/kernel/debug)")
    if wanted == "auto":
        method, reason = "lru_gen", "kernel_promotes, a cgroup workload and the multi-gen LRU: idle pages demoted one by one"
    else:
        method, reason = wanted, "configured"
    vmas = workload.get("vmas") or {}
    if vmas.get("names") or vmas.get("min_size"):
        # Measured in bench/peers: beside W2's 64 MiB buffer (vmas.min_size 16M) lru_gen demoted
        # 2,146-3,399 of the interpreter's and libraries' pages too (bench/RESULTS.md).
        reason += "; from all of the cgroup's memory, not only the mappings its vmas select"
    return method, reason


# Generations kept when evicting: a page is demoted after this many agings (intervals) without an
# access. The kernel keeps at most 4 generations and evicts none of the 2 youngest, so 2 or 3.
IDLE_GENERATIONS = 3
ANON_FIRST = 200  # the eviction command's swappiness: anonymous pages before page cache


class Reclaimer:
    """Asks the kernel to demote a number of a cgroup's pages, in batches under the mover's rate limit."""

    def __init__(self, kernel, batch_pages, limiter, should_stop=lambda: False):
        self.kernel = kernel
        self.batch_pages = batch_pages
        self.limiter = limiter
        self.should_stop = should_stop

    def evict_idle(self, cgroup, memcg, nodes, limit=None):
        """Age the memcg's generations on each of ``nodes``, then demote the pages idle for
        IDLE_GENERATIONS intervals, at most ``limit`` (None: all), in batches under the rate limit.
        ``memcg`` is (memcg id, {node: [(generation, age ms, anon, file)]}) from kernel.lru_gen_table().
        (pages demoted, stopped); a refused command raises KernelError."""
        memcg_id, generations = memcg
        before = counted = self.kernel.cgroup_demoted_pages(cgroup)
        stopped = False
        left = limit
        for node in nodes:
            rows = generations.get(node)
            if not rows or stopped:
                continue
            newest = max(r[0] for r in rows)
            self.kernel.lru_gen_command("+ %d %d %d 1 1" % (memcg_id, node, newest))
            evict_through = newest + 1 - IDLE_GENERATIONS
            # Counted before the aging, which can only take pages out of these generations.
            idle = sum(anon + page_cache for gen, _age, anon, page_cache in rows if gen <= evict_through)
            while idle and (left is None or left > 0):
                chunk = self.batch_pages if left is None else min(left, self.batch_pages)
                if self.should_stop() or not self.limiter.acquire(chunk * PAGE_SIZE):
                    stopped = True
                    break
                self.kernel.lru_gen_command("- %d %d %d %d %d" % (memcg_id, node, evict_through, ANON_FIRST, chunk))
                now = self.kernel.cgroup_demoted_pages(cgroup)
                evicted, counted = _demoted(counted, now), now
                if left is not None:
                    left -= evicted
                if evicted < chunk:
                    break  # the idle generations are empty (or hold what cannot be demoted)
        return _demoted(before, self.kernel.cgroup_demoted_pages(cgroup)), stopped

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
        return _demoted(before, self.kernel.cgroup_demoted_pages(cgroup)), asked, short, stopped


def _demoted(before, after):
    """Pages demoted between two memory.stat readings (0 when either is missing)."""
    return 0 if before is None or after is None else max(0, after - before)
