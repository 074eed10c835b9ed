"""Where a moved page goes on a host with more than one DRAM node (two sockets, or more).

A promotion goes to the DRAM node of the CPUs the task runs on (most of its threads' last CPUs),
within the nodes its cpuset allows: a VM pinned to socket 1 gets its hot pages on socket 1's DRAM,
not on the DRAM with the most free memory. A demotion goes from the node the page is on to the
nearest node of the next lower memory tier (what the kernel itself picks as that node's demotion
target: the nearest nodes of the next tier by the node distances, SLIT or HMAT's), so socket 1's
cold pages land on socket 1's PMEM, and with three tiers (DRAM, CXL, PMEM) DRAM's cold pages go to
the CXL tier, not past it. Where the task's CPUs are unknown (it exited, or a kernel thread) or no
allowed node is left, the caller's fallback decides (the node with the most free memory, as
before). With one DRAM node and one lower node every answer is that node, so single-socket hosts
behave as they always did.

Reads through Kernel only (node CPUs, distances, memory tiers, threads' last CPUs, Mems_allowed).
"""


class Topology:
    def __init__(self, kernel, dram_nodes, pmem_nodes):
        self.kernel = kernel
        self.dram_nodes = list(dram_nodes)
        self.pmem_nodes = list(pmem_nodes)
        self.cpu_node = {}
        for node in self.dram_nodes:
            for cpu in kernel.node_cpus(node):
                self.cpu_node[cpu] = node
        self.distances = {node: kernel.node_distances(node) for node in self.dram_nodes + self.pmem_nodes}
        # The lower tiers in order, each a list of nodes; without memory_tiering (or when it does not
        # cover the nodes) all lower nodes are one tier.
        self.lower_tiers = _lower_tiers(kernel.memory_tiers(), self.dram_nodes, self.pmem_nodes)

    def distance(self, a, b):
        row = self.distances.get(a) or []
        return row[b] if b < len(row) else (10 if a == b else 255)

    def home(self, pid):
        """The DRAM node most of the task's threads last ran on, or None when that is unknown."""
        counts = {}
        for cpu in self.kernel.task_cpus(pid):
            node = self.cpu_node.get(cpu)
            if node is not None:
                counts[node] = counts.get(node, 0) + 1
        if not counts:
            return None
        return max(sorted(counts), key=lambda node: counts[node])

    def _nearest(self, home, candidates):
        return min(candidates, key=lambda node: (self.distance(home, node), node)) if candidates else None

    def promotion_node(self, pid):
        """The DRAM node ``pid``'s promotions go to, or None to leave it to the fallback."""
        if len(self.dram_nodes) < 2:
            return None
        home = self.home(pid)
        if home is None:
            return None
        allowed = self.kernel.task_mems_allowed(pid)
        dram = [n for n in self.dram_nodes if allowed is None or n in allowed]
        return home if home in dram else self._nearest(home, dram)

    def demotion_target(self, source, allowed=None):
        """The node a page on ``source`` is demoted to: the nearest allowed node of the tier below
        ``source``'s (the first lower tier for a DRAM node); None when there is none."""
        below = self.lower_tiers
        for index, tier in enumerate(self.lower_tiers):
            if source in tier:
                below = self.lower_tiers[index + 1:]
                break
        for tier in below:
            candidates = [n for n in tier if allowed is None or n in allowed]
            if candidates:
                return self._nearest(source, candidates)
        return None

    def fill_by_headroom(self, groups, headroom):
        """Promotions [(node, [(key, pages)])] re-split so that no DRAM node is filled past its own
        free-memory reserve: what does not fit on a node goes to the nearest DRAM node that still has
        room, and what fits nowhere is dropped (the plan already capped the total by the sum).

        ``headroom`` {node: pages free above that node's reserve} is used up in place. A reserve kept
        per node matters on two sockets: socket 1's DRAM can be full while socket 0's is empty, and a
        host-wide sum would promote into the full one until the kernel reclaims there.
        """
        placed = {}
        for node, items in groups:
            order = sorted(headroom, key=lambda other: (other != node, self.distance(node, other), other))
            for key, pages in items:
                for target in order:
                    if pages <= 0:
                        break
                    take = min(pages, headroom.get(target, 0))
                    if take > 0:
                        placed.setdefault(target, []).append((key, take))
                        headroom[target] -= take
                        pages -= take
        return sorted(placed.items())


def _lower_tiers(tiers, dram_nodes, pmem_nodes):
    """[[nodes of the fastest lower tier], [next], ...] over ``pmem_nodes``."""
    ordered = [[n for n in nodes if n in pmem_nodes] for _tier, nodes in sorted(tiers.items())]
    ordered = [nodes for nodes in ordered if nodes]
    if sorted(n for nodes in ordered for n in nodes) != sorted(pmem_nodes):
        return [list(pmem_nodes)] if pmem_nodes else []
    return ordered
