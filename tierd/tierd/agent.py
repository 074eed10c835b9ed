"""One tracking interval: discover → sample → age heat → locate pages → plan → move → report."""

import json
import threading
import time

from . import discovery, metrics, policy as policy_mod
from .kernel import PAGE_SIZE, KernelError
from .mover import Mover, RateLimiter, discover_nodes, query_nodes
from .tracking import HeatMap, SoftDirtyTracker, choose_backend


class Agent:
    def __init__(self, kernel, cfg, logger, clock=time.monotonic, dry_run=False):
        self.kernel = kernel
        self.cfg = cfg
        self.logger = logger
        self.clock = clock
        self.dry_run = dry_run
        self.stop_event = threading.Event()
        self.backend = choose_backend(kernel, cfg, logger)
        self.dram_nodes, self.pmem_nodes, how = discover_nodes(kernel, cfg["nodes"])
        logger.info("start", backend=self.backend.name, dram_nodes=_nodes(self.dram_nodes),
                    pmem_nodes=_nodes(self.pmem_nodes), nodes_from=how, dry_run=str(dry_run).lower())
        self.heat = HeatMap(cfg["heat"]["decay"], cfg["heat"]["write_weight"],
                            initial=(cfg["heat"]["hot_threshold"] + cfg["heat"]["cold_threshold"]) / 2)
        self.block_pages = cfg["mover"]["block_pages"]
        if self.block_pages == "auto":
            self.block_pages = kernel.thp_pages()
        logger.info("blocks", pages=self.block_pages,
                    reason="transparent huge pages move whole" if self.block_pages > 1 else "per page")
        self.writes = SoftDirtyTracker(kernel) if cfg["heat"]["soft_dirty"] else None
        self.intervals = 0
        self.moved_at = {}  # (pid, address) -> interval of its last move (residency / anti-thrash)
        self.totals = {}  # workload -> {"promoted_total", "demoted_total", "failed_total"}
        self.state = {}
        self.http = None
        self._apply_config(cfg, initial=True)

    def _apply_config(self, cfg, initial=False):
        mover_cfg = cfg["mover"]
        rate = mover_cfg["rate_limit_mbps"] * 1024 * 1024
        self.limiter = RateLimiter(rate, mover_cfg["batch_pages"] * PAGE_SIZE, clock=self.clock,
                                   sleep=self.stop_event.wait)
        self.mover = Mover(self.kernel, mover_cfg["batch_pages"], self.limiter,
                           should_stop=self.stop_event.is_set, logger=self.logger)
        port = cfg["metrics"]["http_port"]
        old_port = None if initial else self.cfg["metrics"]["http_port"]
        if self.http and port != old_port:
            self.http.close()
            self.http = None
        if port and not self.http:
            self.http = metrics.MetricsServer(port)
        self.cfg = cfg

    def reload(self, cfg):
        if cfg["backend"] != self.cfg["backend"] or cfg["damon"] != self.cfg["damon"] or cfg["nodes"] != self.cfg["nodes"]:
            self.logger.warning("reload_partial", reason="backend, damon and nodes settings apply after a restart")
            for key in ("backend", "damon", "nodes"):
                cfg[key] = self.cfg[key]
        if cfg["heat"]["soft_dirty"] and not self.writes:
            self.writes = SoftDirtyTracker(self.kernel)
        elif not cfg["heat"]["soft_dirty"]:
            self.writes = None
        self.heat.decay = cfg["heat"]["decay"]
        self.heat.write_weight = cfg["heat"]["write_weight"]
        self._apply_config(cfg)
        self.logger.info("reloaded", workloads=len(cfg["workloads"]))

    # ------------------------------------------------------------------------------------------
    def _targets(self):
        """({pid: vmas}, {workload: [pids]}) for workloads that have a policy."""
        managed = [w for w in self.cfg["workloads"] if w["policy"] is not None]
        assignment = discovery.assign_workloads(self.kernel, managed)
        targets = {}
        for workload in managed:
            kept = []
            for pid in assignment[workload["name"]]:
                maps = self.kernel.proc_text(pid, "maps")
                if maps is None:
                    continue
                vmas = discovery.select_vmas(maps, workload["vmas"])
                if vmas:
                    targets[pid] = vmas
                    kept.append(pid)
            assignment[workload["name"]] = kept
        return targets, assignment

    def _free_dram_pages(self):
        free = 0
        reserve = self.cfg["dram_free_reserve_percent"] / 100.0
        for node in self.dram_nodes:
            info = self.kernel.node_meminfo(node)
            free += info.get("MemFree", 0) - int(info.get("MemTotal", 0) * reserve)
        return max(0, free // PAGE_SIZE)

    def _pick_node(self, nodes):
        return max(nodes, key=lambda n: (self.kernel.node_meminfo(n).get("MemFree", 0), -n))

    def step(self):
        """Run one interval's scan, plan and moves (the tracking wait happens in run())."""
        started = self.clock()
        self.intervals += 1
        heat_cfg = self.cfg["heat"]
        targets, assignment = self._targets()
        samples = self.backend.sample(targets)
        writes = self.writes.sample(targets) if self.writes else {}
        self.heat.forget(set(targets))
        self.moved_at = {k: v for k, v in self.moved_at.items() if k[0] in targets}
        residency = self.cfg["mover"]["min_residency_intervals"]
        dram = set(self.dram_nodes)
        pmem = set(self.pmem_nodes)
        not_hot = heat_cfg["hot_threshold"] * 0.999
        block_bytes = self.block_pages * PAGE_SIZE
        policies = {w["name"]: w["policy"] for w in self.cfg["workloads"] if w["policy"] is not None}

        views = []
        report = {}
        for name, pids in assignment.items():
            per_node = {}
            hot = cold = 0
            promote, demote = [], []
            dram_count = pmem_count = 0  # pages that may move this interval
            dram_total = pmem_total = 0
            groups = {}
            live = []
            for pid in pids:
                vmas = targets[pid]
                self.heat.update(pid, vmas, samples.get(pid), writes.get(pid))
                addresses = [a for start, end, _n in vmas for a in range(start, end, PAGE_SIZE)]
                try:
                    status = query_nodes(self.kernel, pid, addresses)
                except KernelError as exc:  # e.g. EPERM: a process tierd may not inspect
                    self.logger.warning("pid_skipped", workload=name, pid=pid, reason=exc)
                    continue
                if status is None:
                    continue
                live.append(pid)
                index = 0
                for start, end, _n in vmas:
                    heat = self.heat.get(pid, start, end)
                    warm = self.heat.sampled(pid, start, end) >= heat_cfg["warmup_intervals"]
                    for i in range((end - start) // PAGE_SIZE):
                        node = status[index]
                        index += 1
                        if node < 0:
                            continue
                        per_node[node] = per_node.get(node, 0) + 1
                        if node in pmem:
                            pmem_total += 1
                        elif node in dram:
                            dram_total += 1
                        value = heat[i]
                        if value >= heat_cfg["hot_threshold"]:
                            hot += 1
                        elif value <= heat_cfg["cold_threshold"]:
                            cold += 1
                        address = start + i * PAGE_SIZE
                        if self.intervals - self.moved_at.get((pid, address), -residency) < residency:
                            continue
                        group = groups.setdefault((address // block_bytes, node), [0.0, []])
                        if value > group[0]:
                            group[0] = value
                        group[1].append(address)
                        if node in pmem:
                            pmem_count += 1
                        elif node in dram:
                            dram_count += 1
                    # A huge page moves whole, so pages are decided per aligned block and node: a block
                    # is as hot as its hottest page and cold only if all its pages are.
                    for (_block, node), (value, block_addresses) in groups.items():
                        key = (pid, block_addresses, node)
                        if node in pmem:
                            # Until a mapping has warmed up, heat only orders quota promotions.
                            promote.append((value if warm else min(value, not_hot), key, len(block_addresses)))
                        elif node in dram and warm:
                            demote.append((value, key, len(block_addresses)))
                    groups.clear()
            promote.sort(key=lambda item: -item[0])
            demote.sort(key=lambda item: item[0])
            resident = sum(per_node.values())
            views.append(policy_mod.WorkloadView(name, policies[name], resident, dram_total, pmem_total,
                                                 promote, demote))
            report[name] = {"pids": live, "pages_per_node": {str(n): c for n, c in sorted(per_node.items())},
                            "resident_pages": resident, "hot_pages": hot, "cold_pages": cold}

        budget = self.cfg["dram_budget"]
        decisions = policy_mod.plan(views, heat_cfg["hot_threshold"], heat_cfg["cold_threshold"],
                                    None if budget is None else budget // PAGE_SIZE, self._free_dram_pages())
        stopped = False
        # Demotions first: they make room on DRAM for the promotions after them.
        for kind in ("demote", "promote"):
            for view in sorted(views, key=lambda v: (-v.priority, v.name)):
                keys = getattr(decisions[view.name], kind)
                nodes = self.pmem_nodes if kind == "demote" else self.dram_nodes
                if not keys or stopped or not nodes:
                    continue
                node = self._pick_node(nodes)
                stopped = self._move(view.name, kind, keys, node, report[view.name]) or stopped
        for view in views:
            wl = report[view.name]
            wl.update(self.totals.setdefault(view.name, {"promoted_total": 0, "demoted_total": 0, "failed_total": 0}))
            wl["pmem_limit_pages"] = decisions[view.name].pmem_limit
            wl["dram_granted_pages"] = decisions[view.name].dram_granted
            wl["planned_promote"] = len(decisions[view.name].promote)
            wl["planned_demote"] = len(decisions[view.name].demote)
            wl["policy"] = policies[view.name]
        self.state = {
            "time": time.time(), "backend": self.backend.name, "intervals": self.intervals,
            "dram_nodes": self.dram_nodes, "pmem_nodes": self.pmem_nodes, "page_size": PAGE_SIZE,
            "interval_seconds": round(self.clock() - started, 4), "dry_run": self.dry_run,
            "unmanaged_workloads": [w["name"] for w in self.cfg["workloads"] if w["policy"] is None],
            "workloads": report,
        }
        self._publish()
        self.logger.info("interval", n=self.intervals, seconds=self.state["interval_seconds"],
                         **{"%s_%s" % (n, k): v for n, wl in report.items()
                            for k, v in (("pages", wl["resident_pages"]), ("hot", wl["hot_pages"]),
                                         ("promoted", wl["promoted_total"]), ("demoted", wl["demoted_total"]))})
        return not stopped

    def _move(self, name, kind, keys, node, report):
        """Move the pages of ``keys`` (pid, addresses, source node) to ``node``; True if stopped.

        The report's per-node counts are corrected from a status query of the moved pages, so
        `tierd status` shows where pages are after the interval, not before it.
        """
        by_pid = {}
        for pid, addresses, source in keys:
            by_pid.setdefault(pid, []).extend((address, source) for address in addresses)
        totals = self.totals.setdefault(name, {"promoted_total": 0, "demoted_total": 0, "failed_total": 0})
        per_node = report["pages_per_node"]
        for pid, pages in sorted(by_pid.items()):
            pages.sort()
            addresses = [address for address, _source in pages]
            if self.dry_run:
                self.logger.info("would_move", workload=name, pid=pid, direction=kind, pages=len(addresses), node=node)
                continue
            self.mover.errors = {}
            moved, failed, stopped = self.mover.move(pid, addresses, node)
            totals["%sd_total" % kind] += moved
            totals["failed_total"] += failed
            for address in addresses:
                self.moved_at[(pid, address)] = self.intervals
            try:
                now = query_nodes(self.kernel, pid, addresses) or []
            except KernelError:
                now = []
            for (_address, source), current in zip(pages, now):
                if current >= 0 and current != source:
                    per_node[str(source)] = per_node.get(str(source), 0) - 1
                    per_node[str(current)] = per_node.get(str(current), 0) + 1
            self.logger.info("moved", workload=name, pid=pid, direction=kind, node=node, pages=moved, failed=failed,
                             status=",".join("%s:%d" % kv for kv in sorted(self.mover.errors.items())) or "-")
            if stopped:
                return True
        return False

    def _publish(self):
        try:
            metrics.write_atomic(self.cfg["state_file"], json.dumps(self.state, indent=1, sort_keys=True))
        except OSError as exc:
            self.logger.warning("state_not_written", path=self.cfg["state_file"], error=exc.strerror)
        text = metrics.render(self.state)
        if self.cfg["metrics"]["textfile"]:
            try:
                metrics.write_atomic(self.cfg["metrics"]["textfile"], text)
            except OSError as exc:
                self.logger.warning("metrics_not_written", path=self.cfg["metrics"]["textfile"], error=exc.strerror)
        if self.http:
            self.http.text = text

    def run(self, max_intervals=None, reload_source=None):
        """Loop until stop_event (SIGTERM) or ``max_intervals``; ``reload_source()`` gives a new config or None."""
        try:
            while not self.stop_event.is_set():
                begin = self.clock()
                if not self.step():
                    break
                if max_intervals is not None and self.intervals >= max_intervals:
                    break
                if reload_source:
                    new = reload_source()
                    if new is not None:
                        self.reload(new)
                remaining = self.cfg["interval_seconds"] - (self.clock() - begin)
                if remaining > 0:
                    self.stop_event.wait(remaining)
        finally:
            self.close()

    def close(self):
        self.backend.close()
        if self.http:
            self.http.close()
            self.http = None
        self.logger.info("stop", intervals=self.intervals)


def _nodes(nodes):
    return ",".join(str(n) for n in nodes)
