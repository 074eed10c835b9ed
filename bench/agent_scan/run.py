"""bench/agent_scan: tierd's CPU seconds per scan per GiB of resident anonymous memory.

    sudo python3 bench/agent_scan/run.py [--sizes-gib 1 4] [--scans 4]

For each size a child process maps and fills SIZE GiB of anonymous memory and keeps reading 20 %
of it. tierd's Agent (DAMON backend, default sample/aggregation intervals, dry run: it plans but
moves nothing) tracks that process; the bench times each step() with process CPU time (the
tracking wait is excluded: that is the kernel's kdamond, not tierd). Runs on a host with DAMON
sysfs; on a single-NUMA-node host the node split is forced to dram=[0], pmem=[] (nothing could
move anyway), which does not change the scan work.
Prints one JSON line per size and the extrapolation to 100 GiB at a 5 s interval.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tierd"))

from tierd import agent as agent_mod  # noqa: E402
from tierd.config import validate  # noqa: E402
from tierd.kernel import Kernel  # noqa: E402
from tierd.log import Logger  # noqa: E402
from tierd.tracking import regions_to_samples  # noqa: E402

CHILD = r"""
import mmap, sys, time
size = int(sys.argv[1]) << 30
region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
chunk = b"\x01" * (1 << 20)
for offset in range(0, size, 1 << 20):
    region[offset:offset + (1 << 20)] = chunk
print("ready", flush=True)
hot = size // 5
while True:
    for offset in range(0, hot, mmap.PAGESIZE * 16):
        region[offset]
    time.sleep(0.05)
"""


class FixedRegions:
    """Stands in for DAMON where the host's DAMON is taken by another tool: the same per-region
    result DAMON gives (a hot first 20 %, an old idle rest), so tierd does its full per-page work."""

    name = "fixed-regions"

    def sample(self, targets):
        result = {}
        for pid, vmas in targets.items():
            regions = []
            for start, end, _name in vmas:
                cut = start + (end - start) // 5 // 4096 * 4096
                regions += [(start, cut, 15, 4), (cut, end, 0, 9)]
            result[pid] = regions_to_samples(vmas, regions, 20, 3)
        return result

    def close(self):
        pass


class Quiet:
    def write(self, _text):
        pass

    def flush(self):
        pass


def bench(size_gib, scans, backend):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(size_gib), "agent_scan_bench_child"],
                             stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        cfg = validate({"interval_seconds": 5, "backend": "damon" if backend == "damon" else "auto", "state_file": "/tmp/tierd-bench/state.json",
                        "workloads": [{"name": "bench", "match": {"pid": child.pid},
                                       "vmas": {"min_size": "512M"}, "policy": {"direction": "both"}}]})
        original = agent_mod.discover_nodes
        agent_mod.discover_nodes = lambda kernel, nodes_cfg: ([0], [], "bench")
        original_choose = agent_mod.choose_backend
        if backend != "damon":
            agent_mod.choose_backend = lambda kernel, cfg, logger: FixedRegions()
        try:
            agent = agent_mod.Agent(Kernel("/"), cfg, Logger(Quiet()), dry_run=True)
        finally:
            agent_mod.discover_nodes = original
            agent_mod.choose_backend = original_choose
        cpu = []
        try:
            for _round in range(scans + 1):
                start = time.process_time()
                agent.step()
                cpu.append(time.process_time() - start)
                time.sleep(1)
        finally:
            agent.close()
        pages = agent.state["workloads"]["bench"]["resident_pages"]
        steady = cpu[1:]  # the first step also builds the heat arrays
        per_scan = sum(steady) / len(steady)
        resident_gib = pages * 4096 / float(1 << 30)
        return {"size_gib": size_gib, "backend": backend, "resident_gib": round(resident_gib, 3), "scans": len(steady),
                "cpu_seconds_per_scan": round(per_scan, 3),
                "cpu_seconds_per_scan_per_gib": round(per_scan / resident_gib, 4),
                "first_scan_cpu_seconds": round(cpu[0], 3)}
    finally:
        child.kill()
        child.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-gib", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--backend", choices=["damon", "fixed-regions"], default="damon",
                        help="fixed-regions when the host's DAMON is used by another tool")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent_scan needs root (DAMON sysfs, move_pages of another process)")
    results = [bench(size, args.scans, args.backend) for size in args.sizes_gib]
    for result in results:
        print(json.dumps(result))
    per_gib = max(r["cpu_seconds_per_scan_per_gib"] for r in results)
    core_percent = per_gib * 100 / 5.0 * 100
    print(json.dumps({"extrapolation": "cpu_s_per_scan_per_GiB * 100 GiB / 5 s interval * 100 %",
                      "percent_of_one_core_at_100GiB_5s": round(core_percent, 2), "target_percent": 0.5,
                      "meets_target": core_percent <= 0.5}))


if __name__ == "__main__":
    main()
