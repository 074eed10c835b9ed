"""One tracking interval: discover → sample → age heat → place extents → plan → move → report."""

import json
import threading
import time

from . import discovery, heat_store, metrics, policy as policy_mod, reclaim
from .kernel import PAGE_SIZE, KernelError
from .mover import Mover, NodeError, RateLimiter, discover_nodes
from .placement import Placement, RecentMoves, pick_pages
from .heat import HeatMap
from .mode import TieringMode
from .tracker import PagemapReads
from .tracker_soft_dirty import SoftDirtyTracker
from .tracking import choose_backend
from .topology import Topology
from .views import WorkloadScan


class Agent:
    def __init__(self, kernel, cfg, logger, clock=time.monotonic, dry_run=False):
        self.kernel = kernel
        self.cfg = cfg
        self.logger = logger
        self.clock = clock
        self.dry_run = dry_run
        self.dry_run_moved = {}  # pid -> addresses this interval's dry run counted as moved
        self.stop_event = threading.Event()
        self.backend = choose_backend(kernel, cfg, logger)
        self.placement = Placement(kernel, cfg["mover"]["placement_refresh_intervals"])
        self.nodes_missing = None
        try:
            self.dram_nodes, self.pmem_nodes, how = discover_nodes(kernel, cfg["nodes"])
        except NodeError as exc:
            # The slow node may come online after tierd starts (a dax device onlined late in boot,
            # a CXL region created later): wait for it instead of failing the unit.
            self.dram_nodes, self.pmem_nodes, how = [], [], "waiting"
            self.nodes_missing = str(exc)
        self.topology = Topology(kernel, self.dram_nodes, self.pmem_nodes)
        self.mode = TieringMode(kernel, cfg["tiering_mode"], logger)
        logger.info("start", backend=self.backend.name, dram_nodes=_nodes(self.dram_nodes),
                    pmem_nodes=_nodes(self.pmem_nodes), nodes_from=how, dry_run=str(dry_run).lower(),
                    **self.mode.log_fields(), demote_with=cfg["mover"]["demote_with"],
                    lower_tiers=_tiers(self.topology.lower_tiers))
        self.mode.announce()
        if self.nodes_missing:
            logger.warning("nodes_missing", reason=self.nodes_missing, action="looking again every interval")
        self.heat = HeatMap(cfg["heat"]["decay"], cfg["heat"]["write_weight"],
                            initial=(cfg["heat"]["hot_threshold"] + cfg["heat"]["cold_threshold"]) / 2)
        self.block_pages = cfg["mover"]["block_pages"]
        if self.block_pages == "auto":
            self.block_pages = kernel.thp_pages()
        logger.info("blocks", pages=self.block_pages,
                    reason="transparent huge pages move whole" if self.block_pages > 1 else "per page")
        self.writes = SoftDirtyTracker(kernel) if cfg["heat"]["soft_dirty"] else None
        self.intervals = 0
        self.deferred_pages = 0  # pages mover.max_pages_per_interval left for later, last interval
        self.recent = RecentMoves()
        self.selected_vmas = {}  # pid -> (the workload's vmas filter, maps text, selected mappings)
        # workload -> {"promoted_total", "demoted_total", "relocated_total" (DRAM to DRAM), "failed_total"}
        self.totals = {}
        self.demotion_methods = {}  # workload -> (method, reason) last logged (reclaim.method_for)
        self.unknown_budget_nodes = set()  # dram_budget_per_node nodes warned about
        self.untracked = set()  # workloads whose pages only the kernel tracks (_tracked)
        self.lru_agings = {}  # workload -> (memcg id, times its generations were aged, clock then) for lru_gen
        self.lru_missing = set()  # lru_gen workloads whose memcg the debugfs file lacked (warned once)
        self.interval_targets = {}  # pid -> mappings, of the interval being run
        self.state = {}
        self.http = None
        self._apply_config(cfg, initial=True)
        self.heat_file = heat_store.path_for(cfg["state_file"])
        self.heat_owners = {}  # pid -> workload, of the last interval: whose heat is saved
        self.saved_heat = self._load_heat()

    def _apply_config(self, cfg, initial=False, new_http=None):
        mover_cfg = cfg["mover"]
        rate = mover_cfg["rate_limit_mbps"] * 1024 * 1024
        self.limiter = RateLimiter(rate, mover_cfg["batch_pages"] * PAGE_SIZE, clock=self.clock,
                                   sleep=self.stop_event.wait)
        self.mover = Mover(self.kernel, mover_cfg["batch_pages"], self.limiter,
                           should_stop=self.stop_event.is_set, logger=self.logger)
        self.reclaimer = reclaim.Reclaimer(self.kernel, mover_cfg["batch_pages"], self.limiter,
                                           should_stop=self.stop_event.is_set)
        port = cfg["metrics"]["http_port"]
        old_port = None if initial else self.cfg["metrics"]["http_port"]
        if self.http and port != old_port:
            self.http.close()
            self.http = None
        if new_http is not None:
            self.http = new_http
        elif port and not self.http:
            self.http = metrics.MetricsServer(port)
        self.placement.refresh_intervals = mover_cfg["placement_refresh_intervals"]
        self.cfg = cfg

    def reload(self, cfg):
        """Apply a checked config, or keep the running one whole (and return False) when it cannot be applied."""
        port = cfg["metrics"]["http_port"]
        new_http = None
        if port and port != self.cfg["metrics"]["http_port"]:
            # Listen before anything changes: a port in use must not leave half the new config applied.
            try:
                new_http = metrics.MetricsServer(port)
            except OSError as exc:
                self.logger.error("reload_rejected", reason="metrics.http_port %d: cannot listen on 127.0.0.1 (%s)"
                                  % (port, exc.strerror or exc), action="keeping the running config")
                return False
            if self.http:
                new_http.text = self.http.text
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
        self._apply_config(cfg, new_http=new_http)
        if cfg["tiering_mode"] != self.mode.wanted:
            self.mode.choose(cfg["tiering_mode"])
            self.mode.announce()
        self.logger.info("reloaded", workloads=len(cfg["workloads"]), mode=self.mode.mode)
        return True

    # ------------------------------------------------------------------------------------------
    def _targets(self):
        """({pid: vmas}, {workload: [pids]}) for workloads that have a policy."""
        managed = [w for w in self.cfg["workloads"] if w["policy"] is not None]
        assignment = discovery.assign_workloads(self.kernel, managed)
        targets = {}
        selected = {}
        for workload in managed:
            kept = []
            for pid in assignment[workload["name"]]:
                maps = self.kernel.proc_text(pid, "maps")
                if maps is None:
                    continue
                # A process's mappings rarely change between intervals: selecting them again from
                # the same maps text was almost half of the interval's discovery (bench/RESULTS.md).
                cached = self.selected_vmas.get(pid)
                if cached and cached[1] == maps and cached[0] == workload["vmas"]:
                    vmas = cached[2]
                else:
                    vmas = discovery.select_vmas(maps, workload["vmas"])
                selected[pid] = (workload["vmas"], maps, vmas)
                if vmas:
                    targets[pid] = vmas
                    kept.append(pid)
            assignment[workload["name"]] = kept
        self.selected_vmas = selected
        return targets, assignment

    def _dram_headroom(self):
        """{DRAM node: pages free above its own reserve}: the reserve holds on every node, not on their sum."""
        reserve = self.cfg["dram_free_reserve_percent"] / 100.0
        headroom = {}
        for node in self.dram_nodes:
            info = self.kernel.node_meminfo(node)
            headroom[node] = max(0, (info.get("MemFree", 0) - int(info.get("MemTotal", 0) * reserve)) // PAGE_SIZE)
        return headroom

    def _dram_room(self, report):
        """{DRAM node: pages it may still take}: its headroom above the reserve, held to what its
        own budget (dram_budget_per_node) has left."""
        headroom = self._dram_headroom()
        for node, room in policy_mod.node_budget_room(self._node_usage(report), self._node_budgets()).items():
            headroom[node] = min(headroom.get(node, 0), room)
        return headroom

    def _node_budgets(self):
        """{DRAM node: budget pages} of dram_budget_per_node; a listed node that is not a DRAM node
        here is left out, with a warning the first time (nodes are auto-detected unless configured)."""
        budgets = {}
        for node, size in sorted(self.cfg["dram_budget_per_node"].items()):
            if node in self.dram_nodes:
                budgets[node] = size // PAGE_SIZE
            elif node not in self.unknown_budget_nodes:
                self.unknown_budget_nodes.add(node)
                self.logger.warning("dram_budget_node_unknown", node=node, dram_nodes=_nodes(self.dram_nodes),
                                    action="no budget for it")
        return budgets

    def _host_budget_pages(self):
        """The host-wide budget for policy.plan: dram_budget, else the node budgets' sum when every
        DRAM node has one (then no more than that can be granted anyway), else none."""
        if self.cfg["dram_budget"] is not None:
            return self.cfg["dram_budget"] // PAGE_SIZE
        budgets = self._node_budgets()
        if budgets and set(budgets) == set(self.dram_nodes):
            return sum(budgets.values())
        return None

    def _node_usage(self, report):
        """{workload: {node: pages}} now: the interval's counts, kept current by every move_pages."""
        return {name: {int(node): pages for node, pages in wl["pages_per_node"].items()} for name, wl in report.items()}

    def _node_budget_state(self, report):
        """{node: {"budget_pages", "used_pages"}} after the interval's moves, for status and metrics."""
        usage = self._node_usage(report)
        return {str(node): {"budget_pages": budget, "used_pages": sum(held.get(node, 0) for held in usage.values())}
                for node, budget in self._node_budgets().items()}

    def _free_dram_pages(self):
        return sum(self._dram_headroom().values())

    def _pick_node(self, nodes):
        return max(nodes, key=lambda n: (self.kernel.node_meminfo(n).get("MemFree", 0), -n))

    def step(self):
        """Run one interval (the tracking wait happens in run()): discover the workloads' mappings,
        sample them, age their heat, place their extents, plan, move (demotions first), publish.
        False when a stop request cut the moves short.

        The work here follows the number of heat extents (DAMON regions), not of pages: placement
        comes from numa_maps totals and sampled extents, and only pages chosen to move are
        looked at one by one.
        """
        started = self.clock()
        self.intervals += 1
        self.dry_run_moved = {}
        self.mode.recheck(self.intervals)
        if self.nodes_missing and not self._find_nodes():
            self._report_waiting(started)
            return True
        targets, assignment = self._targets()
        self.interval_targets = targets
        self._restore_heat(assignment)
        self._forget_removed(assignment)
        methods = self._demotion_methods(assignment)
        tracked = self._tracked(targets, assignment, methods)
        pagemap = PagemapReads(self.kernel)
        samples = self.backend.sample(tracked, pagemap)
        for pid in self.backend.restarted:
            self.heat.restart_warmup(pid)
        writes = self.writes.sample(tracked, pagemap) if self.writes else {}
        live_pids = set(targets)
        self.heat.forget(live_pids)
        self.placement.forget(live_pids)
        self.recent.expire(live_pids, self.intervals, self.cfg["mover"]["min_residency_intervals"])
        views, report = self._workload_views(targets, assignment, samples, writes)
        for name in report:
            report[name]["demote_with"] = methods[name]
            report[name]["tracked_by"] = self.backend.name if name not in self.untracked else "kernel"
        decisions = policy_mod.plan(views, self.cfg["heat"]["hot_threshold"], self.cfg["heat"]["cold_threshold"],
                                    self._host_budget_pages(), self._free_dram_pages(),
                                    self.block_pages, heat_promotions=self.mode.heat_promotions)
        self._limit_moves(views, decisions)
        stopped = self._move_decided(views, decisions, report, assignment, methods)
        self._report(started, views, decisions, report)
        self.heat_owners = {pid: name for name, pids in assignment.items() for pid in pids}
        if self.intervals % heat_store.SAVE_INTERVALS == 0:
            self._save_heat()
        return not stopped

    def _find_nodes(self):
        """Discover the nodes again while the PMEM tier is missing; True once it is there."""
        try:
            self.dram_nodes, self.pmem_nodes, how = discover_nodes(self.kernel, self.cfg["nodes"])
        except NodeError as exc:
            self.nodes_missing = str(exc)
            return False
        self.nodes_missing = None
        self.topology = Topology(self.kernel, self.dram_nodes, self.pmem_nodes)
        self.logger.info("nodes_found", dram_nodes=_nodes(self.dram_nodes), pmem_nodes=_nodes(self.pmem_nodes),
                         nodes_from=how, lower_tiers=_tiers(self.topology.lower_tiers),
                         after_intervals=self.intervals - 1)
        return True

    def _report_waiting(self, started):
        self.state = {
            "time": time.time(), "backend": self.backend.name, "intervals": self.intervals,
            "tiering": self.mode.state(), "dram_nodes": [], "pmem_nodes": [], "page_size": PAGE_SIZE,
            "interval_seconds": round(self.clock() - started, 4), "dry_run": self.dry_run,
            "waiting_for_nodes": self.nodes_missing,
            "unmanaged_workloads": [w["name"] for w in self.cfg["workloads"] if w["policy"] is None],
            "workloads": {},
        }
        self._publish()

    def _load_heat(self):
        restored, why_not = heat_store.load(self.heat_file, self.kernel)
        if why_not:
            self.logger.warning("heat_not_restored", path=self.heat_file, reason=why_not, action="starting cold")
        return restored

    def _restore_heat(self, assignment):
        """Give each PID its saved heat when it is still in the same workload (once, at the first interval)."""
        if not self.saved_heat:
            return
        restored = 0
        for name, pids in assignment.items():
            for pid in pids:
                saved = self.saved_heat.get(pid)
                if saved and saved[0] == name:
                    self.heat.heat[pid], self.heat.samples[pid] = saved[1], saved[2]
                    restored += 1
        self.logger.info("heat_restored", pids=restored, saved_pids=len(self.saved_heat), path=self.heat_file)
        self.saved_heat = {}

    def _save_heat(self):
        if self.dry_run or not self.heat_owners:
            return
        try:
            heat_store.save(self.heat_file, self.heat, self.heat_owners, self.kernel)
        except OSError as exc:
            self.logger.warning("heat_not_saved", path=self.heat_file, error=exc.strerror)

    def _workload_views(self, targets, assignment, samples, writes):
        """Age each PID's heat and place its extents: ([policy.WorkloadView], {workload: report})."""
        heat_cfg = self.cfg["heat"]
        backend_warmup = self.backend.warmup_intervals(self.cfg["interval_seconds"])
        warmup = max(heat_cfg["warmup_intervals"], backend_warmup)
        policies = {w["name"]: w["policy"] for w in self.cfg["workloads"] if w["policy"] is not None}
        views = []
        report = {}
        for name, pids in assignment.items():
            scan = WorkloadScan(self.dram_nodes, self.pmem_nodes, heat_cfg["hot_threshold"],
                                heat_cfg["cold_threshold"], self.block_pages * PAGE_SIZE)
            for pid in pids:
                vmas = targets[pid]
                self.heat.update(pid, vmas, samples.get(pid), writes.get(pid))
                placed = self._place(name, pid, vmas)
                if placed is None:
                    continue
                # Restored heat counts its samples from before a restart, but the backend starts
                # afresh (a new kdamond's regions are coarse): it warms up again either way. An
                # untracked workload's one extent per mapping is as good as it gets at once: its
                # pages are candidates for what a quota or budget needs, never hot or cold.
                warm_vmas = {start for start, end, _n in vmas
                             if name in self.untracked
                             or (self.heat.sampled(pid, start, end) >= warmup and self.intervals >= backend_warmup)}
                scan.add(pid, *placed, warm_vmas)
            views.append(scan.view(name, policies[name]))
            report[name] = scan.report()
        return views, report

    def _place(self, name, pid, vmas):
        """(pages per node per mapping, [(mapping, extent)], estimated pages per node per extent),
        or None when the process exited during the scan or tierd may not inspect it."""
        try:
            counts = self.placement.node_pages(pid, vmas, self.intervals)
            extents = [(vma, extent) for vma in vmas
                       for extent in self.heat.extents(pid, vma[0], vma[1])]
            estimates = None if counts is None else self.placement.estimate(
                pid, [(low, high) for _vma, (low, high, _heat) in extents])
            if estimates is not None and self.placement.drifted(counts, estimates):
                counts = self.placement.node_pages(pid, vmas, self.intervals, reread=True)
        except KernelError as exc:  # e.g. EPERM: a process tierd may not inspect
            self.logger.warning("pid_skipped", workload=name, pid=pid, reason=exc)
            return None
        if estimates is None or counts is None:
            return None
        return counts, extents, estimates

    def _limit_moves(self, views, decisions):
        """Hold the interval's moves to mover.max_pages_per_interval, quota moves first (policy.limit_moves)."""
        budget = self.cfg["mover"]["max_pages_per_interval"]
        self.deferred_pages = policy_mod.limit_moves(decisions, views, budget, self.block_pages)
        if self.deferred_pages:
            self.logger.info("move_budget_reached", budget_pages=budget, deferred_pages=self.deferred_pages,
                             deferred_demote=sum(d.deferred_demote for d in decisions.values()),
                             deferred_promote=sum(d.deferred_promote for d in decisions.values()))

    def _move_decided(self, views, decisions, report, assignment, methods):
        """Carry out the plan's moves, higher priority first; True if a stop request cut them short."""
        stopped = False
        by_priority = sorted(views, key=lambda v: (-v.priority, v.name))
        lru = [v for v in by_priority if methods[v.name] == "lru_gen" and v.direction != "promote"
               and self.pmem_nodes and self._lru_gen_work(v.name, decisions[v.name])]
        # Read only in the intervals that age or reclaim: the file lists every memcg of the host.
        table = self.kernel.lru_gen_table({self._cgroup_of(v.name) for v in lru}) if lru else {}
        for view in lru:
            # Idle pages go whatever the plan says; the pages a quota needs beyond them, by memory.reclaim.
            stopped = stopped or self._evict_idle(view, decisions[view.name], table, assignment[view.name],
                                                  report[view.name])
        # Demotions first: they make room on DRAM for the promotions after them.
        for kind in ("demote", "promote"):
            if kind == "promote" and not stopped:
                stopped = self._hold_node_budgets(by_priority, decisions, report, methods, assignment)
            for view in by_priority:
                chosen = getattr(decisions[view.name], kind)
                nodes = self.pmem_nodes if kind == "demote" else self.dram_nodes
                if not chosen or stopped or not nodes or (kind == "demote" and methods[view.name] == "lru_gen"):
                    continue
                if kind == "demote" and methods[view.name] == "reclaim":
                    stopped = self._reclaim(view.name, sum(n for _key, n in chosen), assignment[view.name],
                                            report[view.name])
                    continue
                for node, items in self._by_target(kind, chosen, nodes, report):
                    stopped = self._move(view.name, kind, items, node, report[view.name]) or stopped
                    if stopped:
                        break
        return stopped

    def _hold_node_budgets(self, by_priority, decisions, report, methods, assignment):
        """Move each workload's pages over its share of a node's budget (policy.node_budget_excess)
        off that node, coldest first, after the plan's demotions; True if a stop request cut it short.
        By move_pages whatever demote_with says: memory.reclaim cannot be told which node."""
        budgets = self._node_budgets()
        if not budgets or not self.pmem_nodes:
            return False
        for view in by_priority:
            if methods[view.name] != "move_pages":
                # The kernel just demoted pages tierd cannot list: count them again, or the node's
                # excess would be demoted a second time.
                self._recount(report[view.name], assignment[view.name])
        usage = self._node_usage(report)
        promoting = {}
        for view in by_priority:
            for node, items in self._promotion_groups(decisions[view.name].promote, self.dram_nodes).items():
                promoting.setdefault(view.name, {})[node] = sum(pages for _key, pages in items)
        excess = policy_mod.node_budget_excess(usage, budgets, {v.name: v.priority for v in by_priority}, promoting)
        for view in by_priority:
            for node, pages in sorted(excess.get(view.name, {}).items()):
                if view.direction == "promote":
                    self.logger.warning("node_budget_exceeded", workload=view.name, node=node, over_pages=pages,
                                        action="none: its direction is promote")
                    continue
                self.logger.info("node_budget_exceeded", workload=view.name, node=node, over_pages=pages,
                                 budget_pages=budgets[node], action="demoting its coldest pages there")
                if self._leave_node(view, node, pages, report):
                    return True
        return False

    def _leave_node(self, view, node, pages, report):
        """Move ``pages`` of the workload's pages off DRAM ``node``, coldest first: those not hot go to
        the tier below; hot ones straight to another DRAM node with room (demoted, they would be
        promoted again next interval: two migrations for one), and what still has to go after that
        is demoted too. True if a stop request cut it short."""
        hot_threshold = self.cfg["heat"]["hot_threshold"]
        hot = [(key, size) for heat, key, size in view.demote_candidates if heat >= hot_threshold]
        cold = [(key, size) for heat, key, size in view.demote_candidates if heat < hot_threshold]
        stopped, moved = self._off_node(view.name, "demote", cold, None, report, node, pages)
        left = pages - moved
        if stopped or left <= 0 or not hot:
            return stopped
        target, room, allowed = self._relocation_target(node, hot, report)
        if target is not None:
            stopped, moved = self._off_node(view.name, "relocate", allowed, target, report, node, min(left, room))
            left -= moved
            if stopped or left <= 0:
                return stopped
        return self._off_node(view.name, "demote", hot, None, report, node, left)[0]

    def _off_node(self, name, kind, chosen, target, report, node, limit):
        """(stopped, pages that left ``node``) of one _move that takes pages from ``node`` only."""
        per_node = report[name]["pages_per_node"]
        before = per_node.get(str(node), 0)
        stopped = self._move(name, kind, chosen, target, report[name], sources={node}, limit=limit)
        return stopped, before - per_node.get(str(node), 0)

    def _relocation_target(self, node, hot, report):
        """(DRAM node, its room in pages, the items of ``hot`` whose tasks may use it) for hot pages
        that must leave ``node``: the node most of their tasks run on when it has room, else the
        DRAM node nearest ``node`` with room (its reserve and its own budget held); (None, 0, [])."""
        headroom = self._dram_room(report)
        candidates = [n for n in self.dram_nodes if n != node and headroom.get(n, 0) > 0]
        if not candidates:
            return None, 0, []
        pages_by_pid = {}
        for (pid, _start, _low, _high), size in hot:
            pages_by_pid[pid] = pages_by_pid.get(pid, 0) + size
        homes = {}
        for pid, size in pages_by_pid.items():
            home = self.topology.home(pid)
            if home in candidates:
                homes[home] = homes.get(home, 0) + size
        if homes:
            target = max(sorted(homes), key=lambda n: homes[n])
        else:
            target = min(candidates, key=lambda n: (self.topology.distance(node, n), n))
        allowed = {}
        for pid in pages_by_pid:
            mems = self.kernel.task_mems_allowed(pid)
            allowed[pid] = mems is None or target in mems
        return target, headroom[target], [item for item in hot if allowed[item[0][0]]]

    def _recount(self, wl, pids):
        """The workload's pages per node read again from numa_maps (after the kernel moved some)."""
        per_node = {}
        for pid in pids:
            vmas = self.interval_targets.get(pid)
            try:
                counts = self.placement.node_pages(pid, vmas, self.intervals, reread=True) if vmas else None
            except KernelError:
                counts = None
            for per_vma in (counts or {}).values():
                for node, pages in per_vma.items():
                    per_node[str(node)] = per_node.get(str(node), 0) + pages
        if per_node:
            wl["pages_per_node"] = dict(sorted(per_node.items(), key=lambda item: int(item[0])))

    def _forget_removed(self, assignment):
        """Drop what is kept per workload for workloads a reload removed (a re-added one starts afresh)."""
        for kept in (self.demotion_methods, self.lru_agings):
            for name in [name for name in kept if name not in assignment]:
                del kept[name]
        self.lru_missing &= set(assignment)

    def _demotion_methods(self, assignment):
        """{workload: "move_pages", "reclaim" or "lru_gen"} (reclaim.method_for); unless move_pages is
        configured, logged when a workload's changes (a fallback from a configured method as a warning)."""
        wanted = self.cfg["mover"]["demote_with"]
        workloads = {w["name"]: w for w in self.cfg["workloads"]}
        methods = {}
        for name in assignment:
            method, reason = reclaim.method_for(workloads[name], wanted, self.mode.mode,
                                                self.mode.demotion_enabled, self.kernel)
            if wanted != "move_pages" and self.demotion_methods.get(name) != (method, reason):
                log = self.logger.warning if wanted != "auto" and method != wanted else self.logger.info
                log("demotion_method", workload=name, method=method, reason=reason)
            self.demotion_methods[name] = (method, reason)
            methods[name] = method
        return methods

    def _tracked(self, targets, assignment, methods):
        """The targets the tracking backend samples: all but the PIDs of workloads whose pages the
        kernel both promotes (kernel_promotes) and picks for demotion (lru_gen), since then nothing
        tierd decides needs its heat (a quota's promotions take any pages; memory.reclaim picks for a
        budget), and DAMON's sampling cost a third of tierd's CPU there (bench/RESULTS.md). Node budgets
        pick pages on one node by heat, so with dram_budget_per_node every workload stays tracked.
        The workloads left out are logged when that set changes."""
        untracked = set()
        if not self.mode.heat_promotions and not self._node_budgets():
            untracked = {name for name, method in methods.items() if method == "lru_gen"}
        if untracked != self.untracked:
            self.logger.info("tracking", by_kernel=",".join(sorted(untracked)) or "-",
                             by_backend=",".join(sorted(set(methods) - untracked)) or "-",
                             reason="the kernel promotes and its multi-gen LRU picks demotions: no heat needed")
            self.untracked = untracked
        if not untracked:
            return targets
        skipped = {pid for name in untracked for pid in assignment[name]}
        return {pid: vmas for pid, vmas in targets.items() if pid not in skipped}

    def _totals(self, name):
        return self.totals.setdefault(name, {"promoted_total": 0, "demoted_total": 0, "relocated_total": 0,
                                             "failed_total": 0})

    def _cgroup_of(self, name):
        """The cgroup of a workload matched by its cgroup alone (the only kind reclaim.method_for lets through)."""
        return next(w["match"]["cgroup"] for w in self.cfg["workloads"] if w["name"] == name)

    def _evict_idle(self, view, decision, table, pids, report):
        """lru_gen: demote the workload cgroup's pages idle for reclaim.IDLE_GENERATIONS intervals, no more
        than its PMEM limit allows, then reclaim what its DRAM grant still needs; True if stopped."""
        cgroup = self._cgroup_of(view.name)
        memcg = table.get(cgroup)
        if memcg is None:
            if view.name not in self.lru_missing:  # once until it is there again
                self.lru_missing.add(view.name)
                self.logger.warning("lru_gen_memcg_missing", workload=view.name, cgroup=cgroup,
                                    reason="not in /sys/kernel/debug/lru_gen", action="demoting by memory.reclaim")
            return self._reclaim(view.name, decision.forced_demote, pids, report) if decision.forced_demote else False
        self.lru_missing.discard(view.name)
        limit = None if decision.pmem_limit is None else max(0, decision.pmem_limit - view.pmem)
        budget = self.cfg["mover"]["max_pages_per_interval"]
        if budget is not None:
            limit = budget if limit is None else min(limit, budget)
        if self.dry_run:
            self.logger.info("would_evict_idle", workload=view.name, cgroup=cgroup, limit_pages=limit)
            return False
        memcg_id, agings, aged_at = self.lru_agings.get(view.name, (None, 0, None))
        demoted = 0
        stopped = False
        if memcg_id != memcg[0] or self._aging_due(aged_at):
            totals = self._totals(view.name)
            try:
                demoted, stopped = self.reclaimer.evict_idle(cgroup, memcg, self.dram_nodes, limit)
            except KernelError as exc:
                self.logger.warning("lru_gen_failed", workload=view.name, cgroup=cgroup, reason=exc)
            totals["demoted_total"] += demoted
            if demoted:
                self.placement.invalidate(pids)
                self.logger.info("evicted_idle", workload=view.name, cgroup=cgroup, demoted=demoted)
            agings = agings + 1 if memcg_id == memcg[0] else 1
            self.lru_agings[view.name] = (memcg[0], agings, self.clock())
        rest = decision.forced_demote - demoted
        # Until the cgroup's pages have been aged IDLE_GENERATIONS times its generations do not tell
        # cold from hot, and memory.reclaim would take hot pages as readily as cold ones.
        if rest > 0 and not stopped and agings >= reclaim.IDLE_GENERATIONS:
            return self._reclaim(view.name, rest, pids, report)
        return stopped

    def _lru_gen_work(self, name, decision):
        """Whether _evict_idle has anything to do for the workload this interval: its aging is due, or
        its quota or budget needs demotions."""
        return decision.forced_demote > 0 or self._aging_due(self.lru_agings.get(name, (None, 0, None))[2])

    def _lru_gen_idle_seconds(self):
        """About how long a page stays unaccessed before lru_gen demotes it: IDLE_GENERATIONS agings,
        which are at least one interval apart."""
        idle = self.cfg["mover"]["lru_gen_idle_seconds"]
        return max(idle, reclaim.IDLE_GENERATIONS * self.cfg["interval_seconds"])

    def _aging_due(self, aged_at):
        """Whether a cgroup last aged at ``aged_at`` is aged (and its idle pages evicted) this interval.
        A page is evicted once IDLE_GENERATIONS agings in a row found it unaccessed, so the agings
        are mover.lru_gen_idle_seconds / IDLE_GENERATIONS apart (whole intervals; half an interval
        of slack so that timer jitter does not skip one). Aging every interval, a page an
        interpreter or library touches every ten seconds or so was demoted and promoted again on its
        next touch: 70 % more hint faults than the kernel's alone on W2 in bench/peers (bench/RESULTS.md)."""
        if aged_at is None:
            return True
        period = self.cfg["mover"]["lru_gen_idle_seconds"] / float(reclaim.IDLE_GENERATIONS)
        return self.clock() - aged_at >= period - self.cfg["interval_seconds"] / 2.0

    def _reclaim(self, name, pages, pids, report):
        """Have the kernel demote ``pages`` of the workload's cgroup, coldest first; True if stopped."""
        cgroup = self._cgroup_of(name)
        if self.dry_run:
            self.logger.info("would_reclaim", workload=name, cgroup=cgroup, pages=pages)
            return False
        totals = self._totals(name)
        try:
            demoted, asked, short, stopped = self.reclaimer.demote(cgroup, pages)
        except KernelError as exc:
            self.logger.warning("reclaim_failed", workload=name, cgroup=cgroup, reason=exc)
            return False
        totals["demoted_total"] += demoted
        # Which pages left DRAM is the kernel's choice: count them again from numa_maps.
        self.placement.invalidate(pids)
        report["reclaim_short"] = short
        self.logger.info("reclaimed", workload=name, cgroup=cgroup, asked_pages=asked, demoted=demoted,
                         status="short" if short else "-")
        return stopped

    def _by_target(self, kind, chosen, nodes, report):
        """[(node, chosen items)]: promotions to each process's node (see topology), re-split by the
        DRAM nodes' headroom; demotions in one group with no node yet: each page goes by the node it
        is on, known once its pages are picked (_demotion_targets). A node's headroom is also
        held to what its budget (dram_budget_per_node) has left."""
        if kind == "demote":
            return [(None, chosen)]
        groups = self._promotion_groups(chosen, nodes)
        return self.topology.fill_by_headroom(sorted(groups.items()), self._dram_room(report))

    def _promotion_groups(self, chosen, nodes):
        """{DRAM node: promotions}: each process's pages to its node (topology), else to the node
        with the most free memory."""
        groups = {}
        targets = {}
        fallback = None
        for item in chosen:
            pid = item[0][0]
            if pid not in targets:
                targets[pid] = self.topology.promotion_node(pid)
            node = targets[pid]
            if node is None:
                fallback = self._pick_node(nodes) if fallback is None else fallback
                node = fallback
            groups.setdefault(node, []).append(item)
        return groups

    def _report(self, started, views, decisions, report):
        """The interval's state file, metrics and log line."""
        for view in views:
            wl = report[view.name]
            wl.update(self._totals(view.name))
            wl["pmem_limit_pages"] = decisions[view.name].pmem_limit
            wl["dram_granted_pages"] = decisions[view.name].dram_granted
            wl["planned_promote"] = sum(n for _key, n in decisions[view.name].promote)
            wl["planned_demote"] = sum(n for _key, n in decisions[view.name].demote)
            wl["deferred_pages"] = decisions[view.name].deferred_demote + decisions[view.name].deferred_promote
            wl["policy"] = view.policy
        self.state = {
            "time": time.time(), "backend": self.backend.name, "intervals": self.intervals,
            "tiering": self.mode.state(),
            "dram_nodes": self.dram_nodes, "pmem_nodes": self.pmem_nodes, "page_size": PAGE_SIZE,
            "interval_seconds": round(self.clock() - started, 4), "dry_run": self.dry_run,
            "unmanaged_workloads": [w["name"] for w in self.cfg["workloads"] if w["policy"] is None],
            "workloads": report,
            "move_budget": {"pages": self.cfg["mover"]["max_pages_per_interval"],
                            "deferred_pages": self.deferred_pages},
            "node_budgets": self._node_budget_state(report),
            "lru_gen_idle_seconds": self._lru_gen_idle_seconds(),
        }
        self._publish()
        self.logger.info("interval", n=self.intervals, seconds=self.state["interval_seconds"],
                         **{"%s_%s" % (n, k): v for n, wl in report.items()
                            for k, v in (("pages", wl["resident_pages"]), ("hot", wl["hot_pages"]),
                                         ("promoted", wl["promoted_total"]), ("demoted", wl["demoted_total"]))})

    def _move(self, name, kind, chosen, node, report, sources=None, limit=None):
        """Move ``chosen`` [((pid, mapping start, low, high), pages)] to ``node`` (a demotion's node is
        None: each page goes by the node it is on), taking pages only from ``sources`` (default: the
        tier they leave) and no more than ``limit`` in all; True if stopped.

        Each range's pages get their exact status only now; the placement totals and the report's
        per-node counts are corrected from move_pages' own per-page results.
        """
        if sources is None:
            sources = set(self.pmem_nodes if kind == "promote" else self.dram_nodes)
        totals = self._totals(name)
        per_node = report["pages_per_node"]
        for pid, pages in self._pick(name, kind, chosen, sources, limit).items():
            for target, group in self._demotion_targets(pid, pages, node) if kind == "demote" else [(node, pages)]:
                if self._move_pages(name, kind, pid, group, target, totals, per_node):
                    return True
        return False

    def _pick(self, name, kind, chosen, sources, limit):
        """{pid: [(address, source node, mapping start)]} of the pages to move, ranges in the order
        given (coldest or hottest first); a PID that is gone or may not be inspected is left there."""
        picks, taken, blocked_for, gone = {}, {}, {}, set()
        remaining = limit
        for (pid, vma_start, low, high), wanted in chosen:
            if pid in gone:
                continue
            if remaining is not None:
                wanted = min(wanted, remaining)
                if wanted <= 0:
                    break
            if pid not in blocked_for:
                # Neighbouring ranges share their boundary block: pick its pages once.
                taken[pid] = set(self.dry_run_moved.get(pid, ()))
                blocked_for[pid] = _blocked(taken[pid], self.recent.blocked(pid))
            try:
                picked = pick_pages(self.kernel, pid, low, high, sources, wanted, self.block_pages,
                                    overshoot=(kind == "promote"), blocked=blocked_for[pid])
            except KernelError as exc:
                self.logger.warning("pid_skipped", workload=name, pid=pid, reason=exc)
                picked = None
            if picked is None:
                gone.add(pid)
                continue
            picks.setdefault(pid, []).extend((address, source, vma_start) for address, source in picked)
            taken[pid].update(address for address, _source in picked)
            if remaining is not None:
                remaining -= len(picked)
        return {pid: pages for pid, pages in picks.items() if pages}

    def _demotion_targets(self, pid, pages, fallback=None):
        """[(node, pages)]: each page to the nearest node of the tier below the node it is on
        (topology.demotion_target), within the task's cpuset; where there is none, to ``fallback``
        (None: the lower node with the most free memory)."""
        if len(self.pmem_nodes) < 2:
            return [(self.pmem_nodes[0] if fallback is None else fallback, pages)]
        allowed = self.kernel.task_mems_allowed(pid)
        groups = {}
        for page in pages:
            target = self.topology.demotion_target(page[1], allowed)
            if target is None:
                fallback = self._pick_node(self.pmem_nodes) if fallback is None else fallback
                target = fallback
            groups.setdefault(target, []).append(page)
        return sorted(groups.items())

    def _move_pages(self, name, kind, pid, pages, node, totals, per_node):
        """Move ``pages`` [(address, source node, mapping start)] of ``pid`` to ``node``; True if stopped."""
        addresses = [address for address, _source, _vma in pages]
        if self.dry_run:
            self.logger.info("would_move", workload=name, pid=pid, direction=kind, pages=len(addresses), node=node)
            # Counted as moved, so that what the interval decides after this (a node budget's
            # relocation, the next node's room) and the state it reports are what a real run's are.
            self.dry_run_moved.setdefault(pid, set()).update(addresses)
            for _address, source, _vma in pages:
                if source != node:
                    per_node[str(source)] = per_node.get(str(source), 0) - 1
                    per_node[str(node)] = per_node.get(str(node), 0) + 1
            return False
        self.mover.errors = {}
        moved, failed, stopped = self.mover.move(pid, addresses, node, self.block_pages)
        totals["%sd_total" % kind] += moved
        totals["failed_total"] += failed
        self.recent.add(pid, addresses, self.intervals)
        shifted = {}
        for (_address, source, vma_start), code in zip(pages, self.mover.last_status):
            if code == node and source != node:
                shifted[(vma_start, source)] = shifted.get((vma_start, source), 0) + 1
        for (vma_start, source), count in shifted.items():
            self.placement.record_move(pid, vma_start, source, node, count)
            per_node[str(source)] = per_node.get(str(source), 0) - count
            per_node[str(node)] = per_node.get(str(node), 0) + count
        self.logger.info("moved", workload=name, pid=pid, direction=kind, node=node, pages=moved, failed=failed,
                         status=",".join("%s:%d" % kv for kv in sorted(self.mover.errors.items())) or "-")
        return stopped

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
        self._save_heat()
        self.backend.close()
        if self.http:
            self.http.close()
            self.http = None
        self.logger.info("stop", intervals=self.intervals)


def _blocked(taken, recently_moved):
    return lambda address: address in taken or recently_moved(address)


def _nodes(nodes):
    return ",".join(str(n) for n in nodes)


def _tiers(tiers):
    """Lower tiers fastest first, "4,5>2,3": where demotions go from DRAM, and then from there."""
    return ">".join(_nodes(nodes) for nodes in tiers) or "-"
