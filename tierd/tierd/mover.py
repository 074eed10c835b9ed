"""Moving pages with move_pages(2): batches, a MB/s rate limit, and NUMA node discovery."""

import time

from .kernel import PAGE_SIZE, KernelError

# Addresses per move_pages(2) status query.
QUERY_CHUNK = 16384


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


def query_nodes(kernel, pid, addresses):
    """Node of each page (negative errno for pages not present); None when the process is gone."""
    status = []
    for offset in range(0, len(addresses), QUERY_CHUNK):
        part = kernel.move_pages(pid, addresses[offset:offset + QUERY_CHUNK])
        if part is None:
            return None
        status.extend(part)
    return status


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

    def move(self, pid, addresses, node, block_pages=1):
        """Move pages of one process to ``node``; (moved, failed, stopped).

        Per-page errors (e.g. -EBUSY for a page under I/O or pinned) are counted in ``self.errors``;
        ``self.last_status`` has each address's node afterwards (or -errno).

        With ``block_pages`` > 1 (transparent huge pages), only the first given address of each
        block goes to move_pages(2) first. Given every address of a huge page, the kernel queues
        the folio at the first one, finds it busy at the second (-EBUSY), migrates it alone right
        there, and then looks up the other 510: one migration per huge page. Given only one
        address per block, a call migrates all its huge pages together. Then one status query of
        each block's last page tells which blocks were huge pages (they moved whole); the pages of
        the other blocks (small pages) are checked and moved one by one after it.
        """
        status = {}
        if block_pages <= 1:
            stopped = self._move_pages(pid, addresses, node, self.batch_pages, status)
        else:
            block_bytes = block_pages * PAGE_SIZE
            blocks = []  # the given addresses of each block, in order
            for address in addresses:
                if blocks and address // block_bytes == blocks[-1][0] // block_bytes:
                    blocks[-1].append(address)
                else:
                    blocks.append([address])
            heads = [block[0] for block in blocks]
            stopped = self._move_pages(pid, heads, node, max(1, self.batch_pages // block_pages), status,
                                       bytes_per_address=block_bytes)
            if not stopped and all(address in status for address in heads):
                # Every given page was on a source node, and a huge page moves whole: if a block's
                # last given page moved with its head, the block was one huge page and all of it moved.
                multi = [block for block in blocks if len(block) > 1 and status[block[0]] == node]
                self._query(pid, [block[-1] for block in multi], status)
                rest = []
                for block in multi:
                    if status.get(block[-1]) == node:
                        status.update((address, node) for address in block[1:-1])
                    else:
                        rest.extend(block[1:-1])
                rest.extend(address for block in blocks if len(block) > 1 and status[block[0]] != node
                            for address in block[1:])
                self._query(pid, rest, status)
                leftovers = [a for a in rest + [b[-1] for b in multi]
                             if a in status and status[a] >= 0 and status[a] != node]
                # Their bytes were paid for with their block's head.
                stopped = self._move_pages(pid, sorted(leftovers), node, self.batch_pages, status, bytes_per_address=0)
        self.last_status = [status.get(address, -1) for address in addresses]
        moved = failed = 0
        for address, code in zip(addresses, self.last_status):
            if code == node:
                moved += 1
            elif address in status:
                failed += 1
                self.errors[code] = self.errors.get(code, 0) + 1
        return moved, failed, stopped

    def _query(self, pid, addresses, status):
        found = query_nodes(self.kernel, pid, addresses)
        if found is not None:
            status.update(zip(addresses, found))

    def _move_pages(self, pid, addresses, node, batch_size, status, bytes_per_address=PAGE_SIZE):
        """move_pages(2) calls of ``batch_size`` addresses; records each tried address's status. True if stopped."""
        for batch in batches(addresses, batch_size):
            if self.should_stop() or not self.limiter.acquire(len(batch) * bytes_per_address):
                return True
            self.calls += 1
            try:
                result = self.kernel.move_pages(pid, batch, [node] * len(batch))
            except KernelError as exc:
                if self.logger:
                    self.logger.warning("move_failed", pid=pid, node=node, pages=len(batch), error=exc)
                status.update((address, -1) for address in batch)
                continue
            if result is None:  # process exited
                status.update((address, -3) for address in batch)  # -ESRCH
                return False
            status.update(zip(batch, result))
        return False
