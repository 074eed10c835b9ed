"""Where a workload's pages are, at a cost that follows extents, not pages.

Exact placement of every page needs a move_pages(2) status entry per page: 26 M entries per
interval at 100 GiB. Instead tierd keeps
- per mapping, the per-node page counts of /proc/PID/numa_maps (counted by the kernel, but by
  walking the page tables: ~6 ms of CPU per GiB of 4 KiB pages), kept exact between reads by
  adding tierd's own moves, and re-read when the mappings change, when the sampled estimate
  drifts from them by more than DRIFT (the kernel or the workload moved or faulted pages), and at
  least every ``refresh_intervals`` intervals;
- per heat extent, an estimate from a few sampled pages (one status query for all extents);
- exact placement only for the pages about to move (``pick_pages``).
"""

import bisect

from .kernel import PAGE_SIZE
from .mover import query_nodes

SAMPLES_PER_EXTENT = 8
# Share of a process's pages whose node may differ between the sampled estimate and the counts
# before numa_maps is re-read; above the sampling noise of a few hundred extents.
DRIFT = 0.02
PICK_CHUNK = 4096


class Placement:
    def __init__(self, kernel, refresh_intervals):
        self.kernel = kernel
        self.refresh_intervals = refresh_intervals
        self.cache = {}  # pid -> (mapping keys, interval read, {mapping start: {node: pages}})
        self.reads = 0

    def forget(self, live_pids):
        for pid in list(self.cache):
            if pid not in live_pids:
                del self.cache[pid]

    def invalidate(self, pids):
        """Read these processes' numa_maps again next time (the kernel moved pages tierd cannot list)."""
        for pid in pids:
            self.cache.pop(pid, None)

    def node_pages(self, pid, vmas, interval, reread=False):
        """{mapping start: {node: pages}} for the tracked mappings, or None when the process is gone."""
        keys = tuple((start, end) for start, end, _name in vmas)
        cached = self.cache.get(pid)
        if not reread and cached and cached[0] == keys and interval - cached[1] < self.refresh_intervals:
            return cached[2]
        parsed = self.kernel.numa_maps(pid, {start for start, _end in keys})
        if parsed is None:
            return None
        self.reads += 1
        per_vma = {}
        complete = True
        for start, _end, _name in vmas:
            entry = parsed.get(start)
            if entry is None:
                complete = False  # the mapping changed since maps was read: re-read next interval
                entry = {}
            per_vma[start] = {int(key[1:]): value for key, value in entry.items()
                              if key[:1] == "N" and key[1:].isdigit() and isinstance(value, int)}
        self.cache[pid] = (keys, interval if complete else -self.refresh_intervals, per_vma)
        return per_vma

    def drifted(self, counts, estimates):
        """True when the sampled estimates put a node's share of the pages off the counts by > DRIFT."""
        counted = {}
        for per_node in counts.values():
            for node, pages in per_node.items():
                counted[node] = counted.get(node, 0) + pages
        estimated = {}
        for per_node in estimates:
            for node, pages in per_node.items():
                estimated[node] = estimated.get(node, 0) + pages
        total_counted = float(sum(counted.values()))
        total_estimated = float(sum(estimated.values()))
        if not total_counted or not total_estimated:
            return total_counted != total_estimated
        return any(abs(counted.get(node, 0) / total_counted - estimated.get(node, 0) / total_estimated) > DRIFT
                   for node in set(counted) | set(estimated))

    def record_move(self, pid, vma_start, source, target, pages):
        cached = self.cache.get(pid)
        if not cached or vma_start not in cached[2]:
            return
        counts = cached[2][vma_start]
        counts[source] = counts.get(source, 0) - pages
        counts[target] = counts.get(target, 0) + pages

    def estimate(self, pid, ranges):
        """[{node: estimated pages}] for each (low, high) range from sampled pages; None if gone."""
        addresses = []
        spans = []
        for low, high in ranges:
            npages = (high - low) // PAGE_SIZE
            if npages <= SAMPLES_PER_EXTENT:
                picks = [low + i * PAGE_SIZE for i in range(npages)]
            else:
                step = npages / float(SAMPLES_PER_EXTENT)
                picks = [low + int((i + 0.5) * step) * PAGE_SIZE for i in range(SAMPLES_PER_EXTENT)]
            spans.append((len(addresses), len(picks), npages))
            addresses.extend(picks)
        status = query_nodes(self.kernel, pid, addresses)
        if status is None:
            return None
        result = []
        for offset, count, npages in spans:
            per_node = {}
            for code in status[offset:offset + count]:
                if code >= 0:
                    per_node[code] = per_node.get(code, 0) + 1
            scale = float(npages) / count if count else 0.0
            result.append({node: hits * scale for node, hits in per_node.items()})
        return result


class RecentMoves:
    """Ranges moved in the last ``residency`` intervals, per PID: they stay put (anti-thrash)."""

    def __init__(self):
        self.ranges = {}  # pid -> sorted [(low, high, interval)]

    def add(self, pid, addresses, interval):
        runs = self.ranges.setdefault(pid, [])
        low = previous = None
        for address in sorted(addresses):
            if low is not None and address == previous + PAGE_SIZE:
                previous = address
                continue
            if low is not None:
                runs.append((low, previous + PAGE_SIZE, interval))
            low = previous = address
        if low is not None:
            runs.append((low, previous + PAGE_SIZE, interval))
        runs.sort()

    def expire(self, live_pids, interval, residency):
        for pid in list(self.ranges):
            kept = [r for r in self.ranges[pid] if interval - r[2] < residency] if pid in live_pids else []
            if kept:
                self.ranges[pid] = kept
            else:
                del self.ranges[pid]

    def blocked(self, pid):
        """A test ``address -> bool`` for this PID's recently moved pages."""
        runs = self.ranges.get(pid)
        if not runs:
            return lambda address: False
        starts = [r[0] for r in runs]
        longest = max(r[1] - r[0] for r in runs)

        def test(address):
            index = bisect.bisect_right(starts, address) - 1
            while index >= 0 and runs[index][0] + longest > address:
                if runs[index][0] <= address < runs[index][1]:
                    return True
                index -= 1
            return False
        return test


def pick_pages(kernel, pid, low, high, sources, wanted, block_pages, overshoot, blocked):
    """[(address, node)] of pages in [low, high) on ``sources`` nodes, whole blocks at a time,
    until ``wanted`` pages (``overshoot``: finish the last block; else never exceed); None if gone.

    Only the pages looked at here get a status query, so the cost follows what is moved.
    """
    picked = []
    block_bytes = block_pages * PAGE_SIZE
    chunk = max(PICK_CHUNK // block_pages, 1) * block_bytes
    address = low
    while address < high and len(picked) < wanted:
        stop = min(high, address + chunk)
        addresses = list(range(address, stop, PAGE_SIZE))
        status = query_nodes(kernel, pid, addresses)
        if status is None:
            return None
        block = []
        block_index = None
        for page, node in zip(addresses, status):
            index = page // block_bytes
            if index != block_index:
                if block and not _add_block(picked, block, wanted, overshoot):
                    return picked
                block = []
                block_index = index
            if node in sources and not blocked(page):
                block.append((page, node))
        if block and not _add_block(picked, block, wanted, overshoot):
            return picked
        address = stop
    return picked


def _add_block(picked, block, wanted, overshoot):
    """Add a block's pages if the rules allow; False when picking is done."""
    if len(picked) >= wanted:
        return False
    if not overshoot and len(picked) + len(block) > wanted:
        return False
    picked.extend(block)
    return True
