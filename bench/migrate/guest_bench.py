"""bench/migrate (guest side): tierd's mover vs numactl's migratepages on the same pages.

    guest_bench.py SRC_DIR [--size-mib 64] [--rounds 20] [--batch-pages 8192 ...]

A workload.py process holds SIZE MiB on the PMEM node (node 1). Both tools are timed moving the
same direction, PMEM (1) -> DRAM (0), and each round times both back to back, so a round's ratio
compares runs under the same host load (TCG on a shared host varies several-fold between minutes):
  migratepages PID 1 0                                                        [timed]
  tierd's Mover moves the mapping back 0 -> 1                                  [not timed]
  for each --batch-pages B: tierd's Mover moves the mapping 1 -> 0, batches of B, no rate limit [timed],
                            then back 0 -> 1 [not timed]
  with THP on, also as the agent moves: one address per huge page, then the rest checked [timed]
migratepages moves the whole process (the interpreter's pages too), so its GB/s uses the pages
it moved, counted from numa_maps. The result is the median of the per-round ratios.
Prints one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SRC = sys.argv[1]
sys.path.insert(0, os.path.join(SRC, "tierd"))
from tierd.kernel import Kernel, parse_numa_maps  # noqa: E402
from tierd.mover import Mover, RateLimiter  # noqa: E402


def pages_on(pid, node):
    with open("/proc/%d/numa_maps" % pid) as handle:
        return sum(entry.get("N%d" % node, 0) for entry in parse_numa_maps(handle.read()).values())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch-pages", type=int, nargs="+", default=[8192], help="tierd mover batch sizes to time")
    args = parser.parse_args()
    info_file = "/run/bench-migrate.json"
    if os.path.exists(info_file):
        os.unlink(info_file)
    child = subprocess.Popen(["python3", os.path.join(SRC, "tests/lab/tierd/workload.py"), "--size-mib",
                              str(args.size_mib), "--hot-percent", "0", "--node", "1", "--pause", "1",
                              "--info", info_file])
    try:
        while not os.path.exists(info_file):
            time.sleep(0.5)
        with open(info_file) as handle:
            info = json.load(handle)
        pid = info["pid"]
        addresses = [info["address"] + i * 4096 for i in range(info["length"] // 4096)]
        kernel = Kernel("/")
        rounds = []

        def tierd_move(node, batch, block_pages=1):
            mover = Mover(kernel, batch, RateLimiter(1 << 40, 1 << 40))
            start = time.monotonic()
            moved, failed, _stopped = mover.move(pid, addresses, node, block_pages)
            return moved, failed, time.monotonic() - start

        def migratepages(source, target):
            before = pages_on(pid, target)
            start = time.monotonic()
            subprocess.check_call(["migratepages", str(pid), str(source), str(target)])
            took = time.monotonic() - start
            return pages_on(pid, target) - before, took

        # (label, batch, block pages): per-page batches, and what the agent does with THP enabled.
        variants = [("tierd_%d" % batch, batch, 1) for batch in args.batch_pages]
        if kernel.thp_pages() > 1:
            variants.append(("tierd_%d_blocks" % args.batch_pages[-1], args.batch_pages[-1], kernel.thp_pages()))
        for _round in range(args.rounds):
            numactl_pages, numactl_s = migratepages(1, 0)
            numactl_gbps = numactl_pages * 4096 / numactl_s / 1e9
            result = {"migratepages_pages": numactl_pages, "migratepages_s": round(numactl_s, 3),
                      "migratepages_gbps": round(numactl_gbps, 4)}
            tierd_move(1, 8192, kernel.thp_pages())
            for label, batch, block_pages in variants:
                moved, failed, tierd_s = tierd_move(0, batch, block_pages)
                tierd_gbps = moved * 4096 / tierd_s / 1e9
                result[label] = {"pages": moved, "failed": failed, "s": round(tierd_s, 3),
                                 "gbps": round(tierd_gbps, 4), "ratio": round(tierd_gbps / numactl_gbps, 3)}
                tierd_move(1, 8192, kernel.thp_pages())
            rounds.append(result)
        summary = {"size_mib": args.size_mib, "direction": "1->0", "rounds": rounds, "target_ratio": 0.9}
        for label, _batch, _block_pages in variants:
            ratios = sorted(r[label]["ratio"] for r in rounds)
            best = max(r[label]["gbps"] for r in rounds) / max(r["migratepages_gbps"] for r in rounds)
            summary[label] = {"median_ratio": ratios[len(ratios) // 2], "min_ratio": ratios[0],
                              "max_ratio": ratios[-1], "best_vs_best": round(best, 3)}
        print(json.dumps(summary))
    finally:
        child.kill()


if __name__ == "__main__":
    main()
