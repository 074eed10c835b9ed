"""Record what tierd's unit tests replay, from a running workload.py in a lab guest (as root).

    record_fixtures.py INFO_FILE OUT_DIR [--pagemap-pages N]

Writes OUT_DIR/root/... mirroring the guest paths: the workload's /proc/PID/{maps,numa_maps,
comm,cmdline,status}, the NUMA node and memory-tier sysfs files, and the DAMON sysfs tree while
tierd's DAMON backend tracks the workload. Pagemap is recorded as OUT_DIR/pagemap-<pid>.json:
{"start": address, "entries_hex": "..."} for the first N pages of the workload's mapping
(the real file is sparse and 2^48/4096*8 bytes long; tests rebuild a sparse copy from this).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tierd"))

from tierd.config import validate  # noqa: E402
from tierd.kernel import Kernel  # noqa: E402
from tierd.log import Logger  # noqa: E402
from tierd.tracker_damon import DamonBackend  # noqa: E402
from tierd import discovery  # noqa: E402


def copy_file(src, out_root, dest=None):
    dest = os.path.join(out_root, (dest or src).lstrip("/"))
    try:
        with open(src, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as out:
        out.write(data)
    return True


def copy_tree(src, out_root):
    for dirpath, _dirs, files in os.walk(src):
        for name in files:
            copy_file(os.path.join(dirpath, name), out_root)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("info")
    parser.add_argument("out")
    parser.add_argument("--pagemap-pages", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=8, help="DAMON aggregations to wait before recording")
    args = parser.parse_args()
    with open(args.info) as handle:
        info = json.load(handle)
    pid = info["pid"]
    root = os.path.join(args.out, "root")
    for name in ("maps", "numa_maps", "comm", "cmdline", "status"):
        copy_file("/proc/%d/%s" % (pid, name), root)
    copy_file("/sys/devices/system/node/online", root)
    copy_file("/sys/devices/system/node/possible", root)
    for node in Kernel().online_nodes():
        for name in ("cpulist", "meminfo"):
            copy_file("/sys/devices/system/node/node%d/%s" % (node, name), root)
    for tier in os.listdir("/sys/devices/virtual/memory_tiering"):
        copy_file("/sys/devices/virtual/memory_tiering/%s/nodelist" % tier, root)

    kernel = Kernel()
    entries = kernel.read_pagemap(pid, info["address"], args.pagemap_pages)
    with open(os.path.join(args.out, "pagemap-%d.json" % pid), "w") as out:
        json.dump({"pid": pid, "start": info["address"], "entries_hex": "".join("%016x" % e for e in entries)}, out)

    cfg = validate({"damon": {"sample_us": 100000, "aggr_us": 1000000}, "interval_seconds": 2})
    backend = DamonBackend(kernel, cfg["damon"], Logger())
    vmas = discovery.select_vmas(kernel.proc_text(pid, "maps"), {"names": None, "min_size": 32 << 20})
    try:
        for _round in range(args.samples):
            backend.sample({pid: vmas})
        copy_tree("/sys/kernel/mm/damon/admin", root)
    finally:
        backend.close()
    with open(os.path.join(args.out, "workload.json"), "w") as out:
        json.dump(dict(info, vmas=vmas), out, indent=1)


if __name__ == "__main__":
    main()
