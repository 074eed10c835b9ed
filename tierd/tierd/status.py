"""`tierd status`: the running agent's last interval, from its state file."""

import json
import time


def load_state(path):
    with open(path) as handle:
        return json.load(handle)


def _mib(pages, page_size):
    return "%.1f" % (pages * page_size / 1048576.0)


def _knob(value):
    if value is None:
        return "missing"
    return str(value).lower() if isinstance(value, bool) else str(value)


def render(state, now=None):
    now = time.time() if now is None else now
    page_size = state.get("page_size", 4096)
    lines = ["backend %s  dram nodes %s  pmem nodes %s  intervals %d  last %.0fs ago%s" % (
        state["backend"], ",".join(map(str, state["dram_nodes"])), ",".join(map(str, state["pmem_nodes"])),
        state["intervals"], now - state["time"], "  (dry run)" if state.get("dry_run") else "")]
    tiering = state.get("tiering")
    if tiering:
        lines.append("mode %s (%s)  numa_balancing %s  demotion_enabled %s" % (
            tiering["mode"], tiering["reason"], _knob(tiering["numa_balancing"]), _knob(tiering["demotion_enabled"])))
        if tiering.get("warning"):
            lines.append("warning: %s" % tiering["warning"])
    if state.get("waiting_for_nodes"):
        lines.append("waiting for the PMEM node: %s" % state["waiting_for_nodes"])
    for node, budget in sorted(state.get("node_budgets", {}).items()):
        lines.append("node %s budget %s MiB, managed workloads hold %s MiB%s" % (
            node, _mib(budget["budget_pages"], page_size), _mib(budget["used_pages"], page_size),
            "  (over: demoting)" if budget["used_pages"] > budget["budget_pages"] else ""))
    header = ("WORKLOAD", "PIDS", "RESIDENT_MIB", "PER_NODE_MIB", "HOT", "COLD", "PROMOTED", "DEMOTED",
              "FAILED", "PMEM_LIMIT_MIB")
    rows = [header]
    for name, wl in sorted(state["workloads"].items()):
        limit = wl.get("pmem_limit_pages")
        rows.append((
            name, str(len(wl["pids"])), _mib(wl["resident_pages"], page_size),
            " ".join("%s:%s" % (node, _mib(pages, page_size)) for node, pages in sorted(wl["pages_per_node"].items()))
            or "-",
            str(wl["hot_pages"]), str(wl["cold_pages"]), str(wl["promoted_total"]), str(wl["demoted_total"]),
            str(wl["failed_total"]), "-" if limit is None else _mib(limit, page_size)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    idle = state.get("lru_gen_idle_seconds")
    kernel_demotes = {"reclaim": "demoted through its cgroup's memory.reclaim (how many: tierd; which: the kernel's LRU)",
                      "lru_gen": "its pages idle for %s demoted by the kernel's multi-gen LRU"
                      % ("about %g s" % idle if idle is not None else "a few intervals")}
    for name, wl in sorted(state["workloads"].items()):
        if wl.get("demote_with") in kernel_demotes:
            lines.append("%s: %s%s" % (name, kernel_demotes[wl["demote_with"]],
                                       "; not sampled by tierd (the kernel promotes)" if wl.get("tracked_by") == "kernel"
                                       else ""))
    for name in state.get("unmanaged_workloads", []):
        lines.append("%s: no policy, left alone" % name)
    return "\n".join(lines)
