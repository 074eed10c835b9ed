"""bench/migrate (guest side): tierd's mover vs numactl's migratepages on the same pages.

    guest_bench.py SRC_DIR [--size-mib 256] [--rounds 3]

A workload.py process holds SIZE MiB on the PMEM node (node 1). Each round: tierd's Mover moves
every page of that mapping to node 0 (batches of 1024, no rate limit) and is timed; then
`migratepages PID 0 1` moves the whole process back and is timed, and the pages it moved are
counted from numa_maps (it also moves the interpreter's own pages, so MB/s uses its own count).
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
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
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
        for _round in range(args.rounds):
            limiter = RateLimiter(1 << 40, 1 << 40)
            mover = Mover(kernel, 1024, limiter)
            start = time.monotonic()
            moved, failed, _stopped = mover.move(pid, addresses, 0)
            tierd_s = time.monotonic() - start
            before = pages_on(pid, 1)
            start = time.monotonic()
            subprocess.check_call(["migratepages", str(pid), "0", "1"])
            numactl_s = time.monotonic() - start
            numactl_pages = pages_on(pid, 1) - before
            rounds.append({"tierd_pages": moved, "tierd_failed": failed, "tierd_s": round(tierd_s, 3),
                           "tierd_gbps": round(moved * 4096 / tierd_s / 1e9, 3),
                           "migratepages_pages": numactl_pages, "migratepages_s": round(numactl_s, 3),
                           "migratepages_gbps": round(numactl_pages * 4096 / numactl_s / 1e9, 3)})
        tierd = sorted(r["tierd_gbps"] for r in rounds)[len(rounds) // 2]
        numactl = sorted(r["migratepages_gbps"] for r in rounds)[len(rounds) // 2]
        print(json.dumps({"size_mib": args.size_mib, "rounds": rounds, "median_tierd_gbps": tierd,
                          "median_migratepages_gbps": numactl, "ratio": round(tierd / numactl, 3),
                          "target_ratio": 0.9}))
    finally:
        child.kill()


if __name__ == "__main__":
    main()
