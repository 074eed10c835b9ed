"""Moving pages with move_pages(2): batches, a MB/s rate limit, and NUMA node discovery."""

import time

from .kernel import PAGE_SIZE, KernelError


class NodeError(KernelError):
    pass


def discover_nodes(kernel, nodes_cfg):
    """(dram nodes, pmem nodes): config, else memory tiers, else nodes with CPUs vs CPU-less nodes."""
    online = kernel.online_nodes()
    if nodes_cfg.get("dram") is not None:
        missing = [n for n in nodes_cfg["dram"] + nodes_cfg["pmem"] if n not in online]
        if missing:
            raise NodeError("nodes: node %d from the config is not online (online: %s)"
                            % (missing[0], ",".join(map(str, online)) or "none"))
        return list(nodes_cfg["dram"]), list(nodes_cfg["pmem"]), "config"
    with_memory = [n for n in online if kernel.node_meminfo(n).get("MemTotal", 0) > 0]
    tiers = kernel.memory_tiers()
    tiered = {t: [n for n in nodes if n in with_memory] for t, nodes in tiers.items()}
    tiered = {t: nodes for t, nodes in tiered.items() if nodes}
    if len(tiered) >= 2:
        fastest = min(tiered)
        dram = tiered[fastest]
        pmem = sorted(n for t, nodes in tiered.items() if t != fastest for n in nodes)
        return dram, pmem, "memory_tiering"
    dram = [n for n in with_memory if kernel.node_cpus(n)]
    pmem = [n for n in with_memory if not kernel.node_cpus(n)]
    if not dram or not pmem:
        raise NodeError("no PMEM tier found: online nodes with memory %s, CPU-less ones %s, memory tiers %s; "
                        "online the pmem as system-ram on its own node or set nodes.dram and nodes.pmem"
                        % (with_memory or "none", pmem or "none", sorted(tiers) or "none"))
    return dram, pmem, "cpuless"


class RateLimiter:
    """Token bucket in bytes per second; ``clock`` and ``sleep`` are injectable for tests.

    ``sleep`` returns True when the wait was interrupted (e.g. SIGTERM), so movers stop between batches.
    """

    def __init__(self, bytes_per_second, burst_bytes, clock=time.monotonic, sleep=None):
        self.rate = float(bytes_per_second)
        self.burst = float(burst_bytes)
        self.clock = clock
        self.sleep = sleep or (lambda seconds: time.sleep(seconds) or False)
        self.tokens = self.burst
        self.last = clock()
        self.waited = 0.0

    def acquire(self, nbytes):
        """Wait until ``nbytes`` may be moved; False if interrupted while waiting."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < nbytes:
            wait = (nbytes - self.tokens) / self.rate
            self.waited += wait
            if self.sleep(wait):
                return False
            now = self.clock()
            self.tokens = min(max(self.burst, nbytes), self.tokens + (now - self.last) * self.rate)
            self.last = now
        self.tokens -= nbytes
        return True


def batches(items, size):
    for offset in range(0, len(items), size):
        yield items[offset:offset + size]


class Mover:
    def __init__(self, kernel, batch_pages, limiter, should_stop=lambda: False, logger=None):
        self.kernel = kernel
        self.batch_pages = batch_pages
        self.limiter = limiter
        self.should_stop = should_stop
        self.logger = logger
        self.calls = 0
        self.errors = {}
        self.last_status = []  # per page of the last move(): the node it is on now, or -errno

    def move(self, pid, addresses, node):
        """Move pages of one process to ``node``; (moved, failed, stopped).

        Per-page errors (e.g. -EBUSY for a page under I/O or pinned) are counted in ``self.errors``.
        """
        moved = failed = 0
        self.last_status = []
        for batch in batches(addresses, self.batch_pages):
            if self.should_stop() or not self.limiter.acquire(len(batch) * PAGE_SIZE):
                return moved, failed, True
            self.calls += 1
            try:
                status = self.kernel.move_pages(pid, batch, [node] * len(batch))
            except KernelError as exc:
                if self.logger:
                    self.logger.warning("move_failed", pid=pid, node=node, pages=len(batch), error=exc)
                failed += len(batch)
                self.last_status.extend([-1] * len(batch))
                continue
            if status is None:  # process exited
                failed += len(batch)
                break
            self.last_status.extend(status)
            done = 0
            for code in status:
                if code == node:
                    done += 1
                else:
                    self.errors[code] = self.errors.get(code, 0) + 1
            moved += done
            failed += len(batch) - done
        return moved, failed, False
