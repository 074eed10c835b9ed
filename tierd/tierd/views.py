"""The planner's view of a workload: its extents' heat and estimated placement, added up.

Per extent, only counts: pages estimated on each tier, whether the extent is hot or cold, and
which page ranges it offers for promotion and demotion (``policy.plan`` decides how many).
"""

from .policy import WorkloadView


class WorkloadScan:
    """One workload in one interval, gathered PID by PID: pages per node, hot and cold pages, and
    its promotion and demotion candidates ``(heat, (pid, mapping start, low, high), pages)``."""

    def __init__(self, dram_nodes, pmem_nodes, hot_threshold, cold_threshold, block_bytes):
        self.dram = set(dram_nodes)
        self.pmem = set(pmem_nodes)
        self.hot_threshold = hot_threshold
        self.cold_threshold = cold_threshold
        # Just below hot: an extent not yet warmed up may be promoted for the quota, never as hot.
        self.not_hot = hot_threshold * 0.999
        self.block_bytes = block_bytes
        self.per_node = {}
        self.hot = self.cold = 0
        self.promote, self.demote = [], []
        self.live = []

    def add(self, pid, counts, extents, estimates, warm_vmas):
        """A PID's exact pages per node per mapping (``counts``), its ``[(mapping, extent)]`` with
        the estimated pages per node of each, and the starts of its mappings that have warmed up."""
        self.live.append(pid)
        for per_vma in counts.values():
            for node, pages in per_vma.items():
                self.per_node[node] = self.per_node.get(node, 0) + pages
        block_bytes = self.block_bytes
        for ((vma_start, vma_end, _n), (low, high, heat)), estimate in zip(extents, estimates):
            if not estimate:
                continue  # nothing present in the sampled pages
            on_pmem = on_dram = present = 0.0
            for node, pages in estimate.items():
                present += pages
                if node in self.pmem:
                    on_pmem += pages
                elif node in self.dram:
                    on_dram += pages
            if heat >= self.hot_threshold:
                self.hot += present
            elif heat <= self.cold_threshold:
                self.cold += present
            warm = vma_start in warm_vmas
            on_pmem = int(round(on_pmem))
            on_dram = int(round(on_dram))
            # A huge page moves whole: a promotion covers every block the extent touches
            # (a block is as hot as its hottest page), a demotion only blocks inside it.
            if on_pmem:
                wide = (max(vma_start, low // block_bytes * block_bytes),
                        min(vma_end, -(-high // block_bytes) * block_bytes))
                # Until a mapping has warmed up, heat only orders quota promotions.
                self.promote.append((heat if warm else min(heat, self.not_hot), (pid, vma_start) + wide, on_pmem))
            narrow = (-(-low // block_bytes) * block_bytes, high // block_bytes * block_bytes)
            if on_dram and warm and narrow[0] < narrow[1]:
                share = float(narrow[1] - narrow[0]) / (high - low)
                self.demote.append((heat, (pid, vma_start) + narrow, int(on_dram * share)))

    def view(self, name, policy):
        """The ``policy.WorkloadView``: candidates hottest first for promotion, coldest first for demotion."""
        self.promote.sort(key=lambda item: -item[0])
        self.demote.sort(key=lambda item: item[0])
        return WorkloadView(name, policy, self.resident, self._on(self.dram), self._on(self.pmem),
                            self.promote, self.demote)

    @property
    def resident(self):
        return sum(self.per_node.values())

    def _on(self, nodes):
        return sum(v for n, v in self.per_node.items() if n in nodes)

    def report(self):
        """The workload's entry in the state file, before the moves."""
        return {"pids": self.live, "pages_per_node": {str(n): c for n, c in sorted(self.per_node.items())},
                "resident_pages": self.resident, "hot_pages": int(round(self.hot)),
                "cold_pages": int(round(self.cold))}
