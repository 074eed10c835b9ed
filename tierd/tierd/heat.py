"""Heat per extent: each interval's sample runs aged into heat kept per range of pages.

``HeatMap`` ages a tracker's runs (see tracker.py) into heat kept per extent (a range of pages
with one heat), so the work per interval follows the number of DAMON regions, not the number of
pages.
"""

# Neighbouring extents whose heat differs by less than this are merged: DAMON moves its region
# boundaries every aggregation, and without merging every boundary it ever drew would stay an
# extent. 0.01 is far below any sensible gap between the hot and cold thresholds.
HEAT_TOLERANCE = 0.01


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
            extents = old.get((start, end))
            sampled = old_counts.get((start, end), 0)
            if extents is None:
                extents, sampled = carried_over(old, old_counts, start, end, self.initial)
            sample = (samples or {}).get(start)
            dirty = (writes or {}).get(start)
            counts[(start, end)] = sampled + (1 if sample is not None else 0)
            if sample or dirty:
                extents = age_extents(extents, sample or [], dirty or [], self.decay, self.write_weight)
            new[(start, end)] = extents
        self.heat[pid] = new
        self.samples[pid] = counts

    def restart_warmup(self, pid):
        """The backend's readings of ``pid`` start over (DAMON gave its target another's
        regions): its heat stays, but it warms up again before anything is demoted by it."""
        if pid in self.samples:
            self.samples[pid] = {key: 0 for key in self.samples[pid]}

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


def carried_over(old, old_counts, start, end, initial):
    """(extents, intervals sampled) of a mapping that is not one of ``old``'s: the heat of the pages
    it shares with old mappings, ``initial`` for the rest.

    A heap grown by brk, an mmap merged with its neighbour or split by mprotect changes its
    (start, end); without this its pages would lose their heat and warm up again. The count is the
    largest of the overlapping mappings': the new pages start at ``initial``, between the thresholds,
    so they are neither promoted nor demoted before samples say so."""
    pieces = []
    sampled = 0
    for (low, high), runs in old.items():
        if low < end and high > start:
            sampled = max(sampled, old_counts.get((low, high), 0))
            pieces.extend((max(a, start), min(b, end), heat) for a, b, heat in runs if a < end and b > start)
    pieces.sort()
    extents = []
    cursor = start
    for low, high, heat in pieces:
        if low > cursor:
            extents.append((cursor, low, initial))
        if high > cursor:
            extents.append((max(low, cursor), high, heat))
            cursor = high
    if cursor < end:
        extents.append((cursor, end, initial))
    return extents, sampled


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
