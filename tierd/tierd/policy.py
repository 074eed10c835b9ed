"""Quota arithmetic: how many pages each workload promotes or demotes this interval.

Pure functions over counts and sorted candidate lists, so every rule is unit-tested.

Rules, in order:
1. A workload's PMEM limit is the tightest of pmem_max_percent, pmem_max_bytes and what
   dram_min_percent / dram_min_bytes leave; pages above it are promoted (hottest first) even if
   not hot. That is the contract ("at most 30 % on PMEM"); direction=demote opts out of it.
2. Hot PMEM pages (heat >= hot_threshold) are promoted (direction promote/both); cold DRAM pages
   (heat <= cold_threshold) are demoted (direction demote/both) as long as the PMEM limit holds.
3. A global DRAM budget is shared by priority: first every workload's mandatory DRAM (rule 1),
   highest priority first, then the wanted extra, highest priority first. A workload holding
   more DRAM than it was granted demotes its coldest pages (unless its direction is promote).
4. Promotions never take DRAM below the free-memory reserve.
   Per DRAM node (two sockets): a node's budget (dram_budget_per_node) is shared the same way,
   by priority, among the pages the workloads hold on that node; the pages over a workload's
   share leave that node coldest first (node_budget_excess), and promotions fill a node only up
   to its budget and its own reserve (node_budget_room), the rest going to the nearest node with room.
5. With ``heat_promotions`` off (tiering_mode kernel_promotes: the kernel's NUMA balancing promotes
   hot pages), rule 2's promotions are left out; rule 1's, which the kernel would not make, stay.
"""

import math

from .kernel import PAGE_SIZE


class WorkloadView:
    """What the planner needs to know about one workload in one interval."""

    def __init__(self, name, policy, resident, dram, pmem, promote_candidates=(), demote_candidates=()):
        self.name = name
        self.priority = policy["priority"]
        self.direction = policy["direction"]
        self.policy = policy
        self.resident = resident
        self.dram = dram
        self.pmem = pmem
        # [(heat, key) or (heat, key, pages)] sorted hottest first / coldest first; a key may stand
        # for a whole extent of pages, of which a decision can take part.
        self.promote_candidates = list(promote_candidates)
        self.demote_candidates = list(demote_candidates)


class Decision:
    def __init__(self, name):
        self.name = name
        self.promote = []
        self.demote = []
        self.pmem_limit = None
        self.dram_granted = None
        # Of the pages above, those a quota needs (DRAM grant, PMEM limit), not only heat:
        # they go first when mover.max_pages_per_interval cuts the moves short.
        self.forced_demote = 0
        self.forced_promote = 0
        self.deferred_demote = 0
        self.deferred_promote = 0

    def __repr__(self):
        return "Decision(%s, promote=%d pages, demote=%d pages, pmem_limit=%s)" % (
            self.name, sum(n for _k, n in self.promote), sum(n for _k, n in self.demote), self.pmem_limit)


def pmem_limit_pages(policy, resident):
    """Most pages this workload may keep on PMEM, or None when the policy sets no limit."""
    limits = []
    if policy.get("pmem_max_percent") is not None:
        limits.append(int(math.floor(resident * policy["pmem_max_percent"] / 100.0)))
    if policy.get("pmem_max_bytes") is not None:
        limits.append(policy["pmem_max_bytes"] // PAGE_SIZE)
    if policy.get("dram_min_percent") is not None:
        limits.append(resident - int(math.ceil(resident * policy["dram_min_percent"] / 100.0)))
    if policy.get("dram_min_bytes") is not None:
        limits.append(resident - min(resident, policy["dram_min_bytes"] // PAGE_SIZE))
    if not limits:
        return None
    return max(0, min(limits))


def _pages(candidate):
    """Candidates are (heat, key) for one page or (heat, key, pages) for an extent of pages."""
    return candidate[2] if len(candidate) > 2 else 1


def _pages_at_least(candidates, threshold):
    total = 0
    for candidate in candidates:
        if candidate[0] < threshold:
            break
        total += _pages(candidate)
    return total


def _pages_at_most(candidates, threshold):
    total = 0
    for candidate in candidates:
        if candidate[0] > threshold:
            break
        total += _pages(candidate)
    return total


def _total(candidates):
    return sum(_pages(c) for c in candidates)


def _take_at_least(candidates, pages, block_pages=1):
    """[(key, pages)] from the front until ``pages`` are covered; the last may be part of its
    candidate, rounded up to whole blocks (a huge page moves whole, so promotions may overshoot)."""
    taken, total = [], 0
    for candidate in candidates:
        if total >= pages:
            break
        size = _pages(candidate)
        part = min(size, -(-(pages - total) // block_pages) * block_pages)
        taken.append((candidate[1], part))
        total += part
    return taken, total


def _take_at_most(candidates, pages, block_pages=1):
    """[(key, pages)] from the front while they fit in ``pages``; the last may be part of its
    candidate, rounded down to whole blocks (never overshoots: demotions must keep limits)."""
    taken, total = [], 0
    for candidate in candidates:
        part = min(_pages(candidate), (pages - total) // block_pages * block_pages)
        if part <= 0:
            break
        taken.append((candidate[1], part))
        total += part
    return taken, total


def plan(views, hot_threshold, cold_threshold, budget_pages=None, free_dram_pages=None, block_pages=1,
         heat_promotions=True):
    """{workload name: Decision}; its promote/demote lists are [(candidate key, pages of it to move)]."""
    wants = {}
    for view in views:
        limit = pmem_limit_pages(view.policy, view.resident)
        promotes = view.direction in ("promote", "both")
        demotes = view.direction in ("demote", "both")
        forced = 0
        if limit is not None and view.direction != "demote":
            forced = max(0, view.pmem - limit)
        hot = _pages_at_least(view.promote_candidates, hot_threshold) if promotes and heat_promotions else 0
        promote = min(max(forced, hot), _total(view.promote_candidates))
        demote = 0
        if demotes:
            room = None if limit is None else max(0, limit - (view.pmem - promote))
            demote = _pages_at_most(view.demote_candidates, cold_threshold)
            if room is not None:
                demote = min(demote, room)
        mandatory = 0 if limit is None else max(0, view.resident - limit)
        wants[view.name] = {"limit": limit, "promote": promote, "forced": min(forced, promote), "demote": demote,
                            "mandatory": mandatory, "wanted": view.dram - demote + promote}

    order = sorted(views, key=lambda v: (-v.priority, v.name))
    granted = {}
    if budget_pages is None:
        for view in views:
            granted[view.name] = wants[view.name]["wanted"]
    else:
        remaining = budget_pages
        for view in order:
            grant = min(wants[view.name]["mandatory"], wants[view.name]["wanted"], remaining)
            granted[view.name] = grant
            remaining -= grant
        for view in order:
            extra = min(wants[view.name]["wanted"] - granted[view.name], remaining)
            if extra > 0:
                granted[view.name] += extra
                remaining -= extra

    free = None if free_dram_pages is None else max(0, free_dram_pages)
    decisions = {}
    for view in order:
        want = wants[view.name]
        decision = Decision(view.name)
        decision.pmem_limit = want["limit"]
        decision.dram_granted = granted[view.name]
        promote = want["promote"]
        demote = want["demote"]
        after_demote = view.dram - demote
        if granted[view.name] >= after_demote:
            promote = min(promote, granted[view.name] - after_demote)
        else:
            promote = 0
            if view.direction != "promote":
                demote = min(_total(view.demote_candidates), view.dram - granted[view.name])
                decision.forced_demote = demote
        if free is not None:
            promote = min(promote, free + demote)
        decision.demote, demoted = _take_at_most(view.demote_candidates, demote, block_pages)
        decision.promote, promoted = _take_at_least(view.promote_candidates, promote, block_pages)
        decision.forced_promote = min(want["forced"], promoted)
        if free is not None:
            free -= max(0, promoted - demoted)
        decisions[view.name] = decision
    return decisions


def node_budget_excess(usage, budgets, priorities, promoting=None):
    """{workload: {node: pages it must move off that node}}; ``usage`` {workload: {node: pages}},
    ``budgets`` {node: pages}, ``priorities`` {workload: priority}, ``promoting`` {workload: {node:
    pages it is to promote there}}. A node's budget is granted by priority (ties by name), as the
    host-wide one: a workload's share covers its pages there and then its promotions there, so a
    higher-priority workload's hot pages displace a lower one's; what a workload holds above its
    share is its excess. A node within its budget takes nothing from anyone."""
    promoting = promoting or {}
    excess = {}
    order = sorted(usage, key=lambda name: (-priorities[name], name))
    for node, budget in sorted(budgets.items()):
        remaining = budget
        for name in order:
            held = usage[name].get(node, 0)
            share = min(held + promoting.get(name, {}).get(node, 0), remaining)
            remaining -= share
            if held > share:
                excess.setdefault(name, {})[node] = held - share
    return excess


def node_budget_room(usage, budgets):
    """{node: pages the workloads may still add there} for each budgeted node."""
    return {node: max(0, budget - sum(held.get(node, 0) for held in usage.values()))
            for node, budget in budgets.items()}


def _trim(moves, pages, block_pages):
    """The front of [(key, pages)] holding at most ``pages``, cut in whole blocks."""
    kept, total = [], 0
    for key, size in moves:
        part = min(size, (pages - total) // block_pages * block_pages)
        if part <= 0:
            break
        kept.append((key, part))
        total += part
    return kept, total


def limit_moves(decisions, views, max_pages, block_pages=1):
    """Cut ``decisions`` in place to at most ``max_pages`` moved pages in all; the pages left
    over wait for the next interval. Returns the pages deferred (0: the budget was not reached).

    The budget is spent in this order, higher priority first at each step: demotions a quota
    needs, other (cold) demotions, promotions a quota needs, other promotions. Each list is
    already coldest or hottest first, so what is cut is its tail. A workload whose demotions were
    cut promotes that many pages fewer: it was given DRAM for its promotions on the understanding
    that the demotions made room.
    """
    if max_pages is None:
        return 0
    order = [decisions[v.name] for v in sorted(views, key=lambda v: (-v.priority, v.name))]
    remaining = max_pages
    allowed = {}
    for kind in ("demote", "promote"):
        for decision in order:
            planned = sum(n for _k, n in getattr(decision, kind))
            if kind == "promote":
                planned = max(0, planned - decision.deferred_demote)
            forced = min(planned, getattr(decision, "forced_" + kind))
            allowed[(decision.name, kind)] = min(forced, remaining) // block_pages * block_pages
            remaining -= allowed[(decision.name, kind)]
        for decision in order:
            planned = sum(n for _k, n in getattr(decision, kind))
            if kind == "promote":
                planned = max(0, planned - decision.deferred_demote)
            extra = min(planned - allowed[(decision.name, kind)], remaining) // block_pages * block_pages
            allowed[(decision.name, kind)] += max(0, extra)
            remaining -= max(0, extra)
        for decision in order:
            moves = getattr(decision, kind)
            planned = sum(n for _k, n in moves)
            kept, total = _trim(moves, allowed[(decision.name, kind)], block_pages)
            setattr(decision, kind, kept)
            setattr(decision, "deferred_" + kind, planned - total)
            remaining += allowed[(decision.name, kind)] - total  # a block that did not fit
    return sum(d.deferred_demote + d.deferred_promote for d in order)
