"""Prometheus text exposition: a node_exporter textfile-collector file and an optional
HTTP endpoint bound to 127.0.0.1 only."""

import os
import tempfile
import threading

HELP = {
    "tierd_up": ("gauge", "1 while tierd runs its loop"),
    "tierd_backend_info": ("gauge", "access-tracking backend in use"),
    "tierd_mode": ("gauge", "1 for the tiering mode in use: tierd (tierd promotes) or kernel_promotes"),
    "tierd_mode_conflict": ("gauge", "1 while kernel.numa_balancing contradicts the tiering mode (see the log)"),
    "tierd_kernel_numa_balancing": ("gauge", "kernel.numa_balancing as last read (-1: missing)"),
    "tierd_intervals_total": ("counter", "tracking intervals completed"),
    "tierd_interval_seconds": ("gauge", "wall time of the last interval's scan and moves"),
    "tierd_workload_pids": ("gauge", "processes matched by the workload"),
    "tierd_workload_resident_pages": ("gauge", "resident pages of the managed mappings, by NUMA node"),
    "tierd_workload_hot_pages": ("gauge", "pages with heat at or above hot_threshold"),
    "tierd_workload_cold_pages": ("gauge", "pages with heat at or below cold_threshold"),
    "tierd_workload_pmem_limit_pages": ("gauge", "most pages the policy allows on PMEM (-1: no limit)"),
    "tierd_pages_moved_total": ("counter", "pages moved, by direction"),
    "tierd_pages_move_failed_total": ("counter", "pages move_pages(2) did not move"),
    "tierd_pages_deferred": ("gauge", "pages planned but left for later intervals by mover.max_pages_per_interval"),
    "tierd_node_budget_pages": ("gauge", "dram_budget_per_node: pages the managed workloads may hold on the node"),
    "tierd_node_budget_used_pages": ("gauge", "pages the managed workloads hold on a budgeted DRAM node"),
}


def _labels(labels):
    if not labels:
        return ""
    body = ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
                    for k, v in sorted(labels.items()))
    return "{%s}" % body


def render(state):
    """Prometheus text from the agent's state dict (the same one `tierd status` shows)."""
    samples = {name: [] for name in HELP}
    samples["tierd_up"].append(({}, 1))
    samples["tierd_backend_info"].append(({"backend": state.get("backend", "none")}, 1))
    tiering = state.get("tiering")
    if tiering:
        samples["tierd_mode"].append(({"mode": tiering["mode"]}, 1))
        samples["tierd_mode_conflict"].append(({}, 1 if tiering.get("warning") else 0))
        balancing = tiering.get("numa_balancing")
        samples["tierd_kernel_numa_balancing"].append(({}, -1 if balancing is None else balancing))
    samples["tierd_intervals_total"].append(({}, state.get("intervals", 0)))
    samples["tierd_interval_seconds"].append(({}, state.get("interval_seconds", 0.0)))
    for name, wl in sorted(state.get("workloads", {}).items()):
        base = {"workload": name}
        samples["tierd_workload_pids"].append((base, len(wl["pids"])))
        for node, pages in sorted(wl["pages_per_node"].items()):
            samples["tierd_workload_resident_pages"].append((dict(base, node=node), pages))
        samples["tierd_workload_hot_pages"].append((base, wl["hot_pages"]))
        samples["tierd_workload_cold_pages"].append((base, wl["cold_pages"]))
        limit = wl["pmem_limit_pages"]
        samples["tierd_workload_pmem_limit_pages"].append((base, -1 if limit is None else limit))
        samples["tierd_pages_moved_total"].append((dict(base, direction="promote"), wl["promoted_total"]))
        samples["tierd_pages_moved_total"].append((dict(base, direction="demote"), wl["demoted_total"]))
        # DRAM to DRAM: hot pages over a node's budget moved to another DRAM node, not demoted.
        samples["tierd_pages_moved_total"].append((dict(base, direction="relocate"), wl.get("relocated_total", 0)))
        samples["tierd_pages_move_failed_total"].append((base, wl["failed_total"]))
        samples["tierd_pages_deferred"].append((base, wl.get("deferred_pages", 0)))
    for node, budget in sorted(state.get("node_budgets", {}).items()):
        samples["tierd_node_budget_pages"].append(({"node": node}, budget["budget_pages"]))
        samples["tierd_node_budget_used_pages"].append(({"node": node}, budget["used_pages"]))
    lines = []
    for name, (kind, text) in HELP.items():
        lines.append("# HELP %s %s" % (name, text))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples[name]:
            lines.append("%s%s %s" % (name, _labels(labels), value))
    return "\n".join(lines) + "\n"


def write_atomic(path, text, mode=0o644):
    """Write-then-rename in the target directory, so readers never see half a file."""
    directory = os.path.dirname(path) or "."
    try:
        handle, tmp = tempfile.mkstemp(prefix=".tierd.", dir=directory)
    except FileNotFoundError:  # the first write (the state and metrics files are written every interval)
        os.makedirs(directory, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".tierd.", dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class MetricsServer:
    """Serves the latest rendered text on http://127.0.0.1:PORT/metrics."""

    def __init__(self, port):
        # Imported here, not at the top: http.server pulls in email, ssl and more, 0.28 s of a
        # 0.74 s start in a TCG guest (python3 -X importtime), and most hosts never set http_port.
        from http.server import BaseHTTPRequestHandler, HTTPServer  # pylint: disable=import-outside-toplevel

        self.text = "# no interval completed yet\n"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = owner.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="tierd-metrics", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
