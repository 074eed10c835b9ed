"""bench/agent_scale: tierd's CPU per interval as workloads and DAMON regions grow, extrapolated to
1,000 workloads / 1 TiB. Host only, no guest, no root: tierd's own Agent over a synthetic tree.

    python3 bench/agent_scale/run.py [--processes 50 200] [--regions 10 100] [--intervals 5]
                                     [--churn 10] [--target-workloads 1000] [--target-tib 1]

For each (processes, regions) pair a tree is written to /dev/shm: /proc/PID/{comm,cmdline,maps,
numa_maps} for that many processes (one 1 GiB anonymous mapping each, one workload per process,
matched by comm as a real config would), two NUMA nodes, and a DAMON sysfs directory. tierd's
DamonBackend drives it through a Kernel whose DAMON side (commit, tried regions) and move_pages
status query are simulated here; the simulation's own CPU (writing tried_regions) is measured and
taken off, tierd's reading of those files is not. Every interval `--churn` processes are replaced
by new ones, so discovery, commits and warm-up run as with real churn. Timed: Agent.step() in
process CPU time (dry run: it plans but moves nothing), per interval, after one untimed warm-up
interval; mover.max_pages_per_interval is 1, so the quota's planned moves are cut to one page
(moves cost per page moved, which bench/migrate measures). The fit is cpu = a·processes + b·processes·regions; the extrapolation uses
damon.max_nr_regions regions per workload (DAMON's regions do not grow with the size, so 1 TiB
over 1,000 workloads costs what 1,000 × max_nr_regions regions cost; numa_maps, which does grow
with the mappings, is read once per mover.placement_refresh_intervals and is not in the fit).
The kernel's side (kdamond CPU, ~targets × regions × schemes filter checks per aggregation) is not
measured here: tests/lab/tierd/scale_test.py measures it in a guest.
Prints one JSON line per measurement and one for the extrapolation.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tierd"))

from tierd import agent as agent_mod  # noqa: E402
from tierd.config import validate  # noqa: E402
from tierd.kernel import Kernel  # noqa: E402
from tierd.log import Logger  # noqa: E402

ADMIN = "sys/kernel/mm/damon/admin"
BASE = 0x7F0000000000
GIB = 1 << 30
FIRST_PID = 10000


class Quiet:
    def write(self, _text):
        pass

    def flush(self):
        pass


class SyntheticKernel(Kernel):
    """A Kernel over the synthetic tree: DAMON's sysfs behaves as tierd expects (nr_* files make
    their numbered directories, commit/on/off/update_schemes_tried_regions work), move_pages'
    status query says every page is on node 1. ``sim_seconds`` is the CPU spent simulating."""

    def __init__(self, root, regions):
        Kernel.__init__(self, root)
        self.regions = regions
        self.sim_seconds = 0.0
        self.written = set()  # tried_regions directories already filled

    def write_text(self, path, value):
        rel = path.lstrip("/")
        if not rel.startswith(ADMIN):
            return Kernel.write_text(self, path, value)
        began = time.process_time()
        full = self.path(path)
        try:
            if os.path.basename(rel) == "state":
                if str(value) in ("on", "commit"):
                    with open(full, "w") as out:
                        out.write("on\n")
                elif str(value) == "off":
                    with open(full, "w") as out:
                        out.write("off\n")
                elif str(value) == "update_schemes_tried_regions":
                    self._tried_regions(os.path.dirname(full))
                return None
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if os.path.basename(rel).startswith("nr_"):
                parent = os.path.dirname(full)
                for entry in os.listdir(parent):
                    if entry.isdigit():
                        shutil.rmtree(os.path.join(parent, entry))
                        self.written.discard(os.path.join(parent, entry, "tried_regions"))
                for index in range(int(value)):
                    os.makedirs(os.path.join(parent, str(index)))
            with open(full, "w") as out:
                out.write(str(value))
            return None
        finally:
            self.sim_seconds += time.process_time() - began

    def _tried_regions(self, kdamond):
        """Each scheme's tried regions: ``regions`` equal slices of its target's 1 GiB mapping,
        the first fifth hot; written once per scheme directory (their values do not matter to
        the cost, their number does)."""
        schemes = os.path.join(kdamond, "contexts/0/schemes")
        count = int(open(os.path.join(schemes, "nr_schemes")).read())
        size = GIB // self.regions
        for index in range(count):
            tried = os.path.join(schemes, str(index), "tried_regions")
            if tried in self.written:
                continue
            for number in range(self.regions):
                directory = os.path.join(tried, str(number))
                os.makedirs(directory, exist_ok=True)
                values = (BASE + number * size, BASE + (number + 1) * size,
                          15 if number < self.regions // 5 else 0, 9)
                for name, value in zip(("start", "end", "nr_accesses", "age"), values):
                    with open(os.path.join(directory, name), "w") as out:
                        out.write("%d\n" % value)
            self.written.add(tried)

    def move_pages(self, pid, addresses, nodes=None):
        return [1] * len(addresses)


def write_process(root, pid):
    proc = os.path.join(root, "proc", str(pid))
    os.makedirs(proc)
    files = {
        "comm": "bench-w%05d\n" % pid,
        "cmdline": "bench-worker\0%d\0" % pid,
        "maps": "%x-%x rw-p 00000000 00:00 0 \n" % (BASE, BASE + GIB),
        "numa_maps": "%x default anon=%d dirty=%d active=0 N1=%d kernelpagesize_kB=4\n"
                     % (BASE, GIB // 4096, GIB // 4096, GIB // 4096),
    }
    for name, text in files.items():
        with open(os.path.join(proc, name), "w") as out:
            out.write(text)


def write_tree(root, pids):
    for pid in pids:
        write_process(root, pid)
    nodes = os.path.join(root, "sys/devices/system/node")
    for node, cpus in ((0, "0-3"), (1, "")):
        os.makedirs(os.path.join(nodes, "node%d" % node))
        with open(os.path.join(nodes, "node%d" % node, "cpulist"), "w") as out:
            out.write(cpus + "\n")
        with open(os.path.join(nodes, "node%d" % node, "meminfo"), "w") as out:
            out.write("Node %d MemTotal: %d kB\nNode %d MemFree: %d kB\n" % (node, 1 << 30, node, 1 << 29))
    with open(os.path.join(nodes, "online"), "w") as out:
        out.write("0-1\n")
    os.makedirs(os.path.join(root, ADMIN, "kdamonds"))
    with open(os.path.join(root, ADMIN, "kdamonds", "nr_kdamonds"), "w") as out:
        out.write("0\n")


def bench(processes, regions, intervals, churn):
    root = tempfile.mkdtemp(prefix="tierd-bench-scale-", dir="/dev/shm")
    try:
        pids = list(range(FIRST_PID, FIRST_PID + processes))
        write_tree(root, pids)
        cfg = validate({
            "interval_seconds": 5, "backend": "damon", "nodes": {"dram": [0], "pmem": [1]},
            "damon": {"max_nr_regions": max(regions, 10)},
            # One page per interval: this measures the scan; moving costs per page moved (bench/migrate).
            "mover": {"max_pages_per_interval": 1},
            "state_file": os.path.join(root, "run", "state.json"),
            "workloads": [{"name": "w%05d" % pid, "match": {"comm": "^bench-w%05d$" % pid},
                           "policy": {"pmem_max_percent": 50}} for pid in range(FIRST_PID, FIRST_PID + processes + churn * (intervals + 1))],
        })
        kernel = SyntheticKernel(root, regions)
        agent = agent_mod.Agent(kernel, cfg, Logger(Quiet()), dry_run=True)
        next_pid = FIRST_PID + processes
        per_interval = []
        for interval in range(intervals + 1):
            if interval and churn:
                for pid in pids[:churn]:
                    shutil.rmtree(os.path.join(root, "proc", str(pid)))
                pids = pids[churn:]
                for _new in range(churn):
                    write_process(root, next_pid)
                    pids.append(next_pid)
                    next_pid += 1
            kernel.sim_seconds = 0.0
            began = time.process_time()
            agent.step()
            took = time.process_time() - began - kernel.sim_seconds
            if interval:  # the first interval starts the kdamond and fills the tree: not timed
                per_interval.append(took)
        agent.close()
        per_interval.sort()
        return {"processes": processes, "regions": regions, "churn": churn, "intervals": intervals,
                "cpu_s_per_interval_median": round(per_interval[len(per_interval) // 2], 4),
                "cpu_s_per_interval_max": round(per_interval[-1], 4)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fit(rows):
    """Least squares of cpu = a·P + b·P·R (no constant: an interval with no process costs ~0)."""
    sxx = sum(r["processes"] ** 2 for r in rows)
    sxy = sum(r["processes"] * r["processes"] * r["regions"] for r in rows)
    syy = sum((r["processes"] * r["regions"]) ** 2 for r in rows)
    sxc = sum(r["processes"] * r["cpu_s_per_interval_median"] for r in rows)
    syc = sum(r["processes"] * r["regions"] * r["cpu_s_per_interval_median"] for r in rows)
    det = sxx * syy - sxy * sxy
    if not det:
        sys.exit("agent_scale: the fit needs at least two --regions values")
    return (sxc * syy - syc * sxy) / det, (sxx * syc - sxy * sxc) / det


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--regions", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--intervals", type=int, default=5)
    parser.add_argument("--churn", type=int, default=10)
    parser.add_argument("--target-workloads", type=int, default=1000)
    parser.add_argument("--target-tib", type=float, default=1.0)
    parser.add_argument("--max-nr-regions", type=int, default=validate({})["damon"]["max_nr_regions"])
    args = parser.parse_args()
    rows = []
    for processes in args.processes:
        for regions in args.regions:
            row = bench(processes, regions, args.intervals, min(args.churn, processes))
            rows.append(row)
            print(json.dumps(row), flush=True)
    per_process, per_region = fit(rows)
    workloads = args.target_workloads
    cpu = workloads * (per_process + per_region * args.max_nr_regions)
    print(json.dumps({
        "fit_cpu_s_per_process": round(per_process, 6), "fit_cpu_s_per_region": round(per_region, 8),
        "extrapolated_workloads": workloads, "extrapolated_tib": args.target_tib,
        "gib_per_workload": round(args.target_tib * 1024 / workloads, 3),
        "regions_per_workload": args.max_nr_regions,
        "extrapolated_cpu_s_per_interval": round(cpu, 3),
        "extrapolated_cpu_percent_at_5s_interval": round(100 * cpu / 5, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
