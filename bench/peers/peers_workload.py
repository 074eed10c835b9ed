"""bench/peers workload (guest, stdlib): anonymous memory placed on one node, a known hot set written.

    peers_workload.py --size-mib 64 --hot-percent 10 --layout scattered --node 1 --info /run/x.json
                      [--move-at 40] [--pause 0.02] [--seed 1] [--flush-tlb]

The buffer is faulted in under mbind(MPOL_BIND, NODE) and then the policy is reset to the default:
the start is on NODE, yet every peer may move the pages (NUMA balancing does not promote pages of an
MPOL_BIND mapping, so a binding left in place would rule the kernel peer out).
Hot pages are written (one byte per page per sweep), not only read: a write is an access for DAMON,
page_idle and NUMA hinting faults, and the only signal memtierd's soft-dirty tracker sees.
Layouts: contiguous (the first HOT-PERCENT of the buffer) or scattered (HOT-PERCENT of the pages
drawn at random, 4 KiB apart at best). --move-at S draws a new hot set, disjoint from the first,
S seconds after the fill, and records the time in the info file.
--flush-tlb flushes the process's TLB after each sweep, the way a real CPU's small TLB keeps
missing on a hot set of thousands of scattered pages: under TCG nothing evicts a TLB entry, so an
accessed bit that DAMON, page_idle or the kernel's LRU aging cleared (x86 clears it without a flush)
is never set again by a page written through the cached entry, and hot pages look idle. The flush is
an mprotect toggle of a separate 1 MiB mapping (more pages than x86's 33-page ceiling for ranged
flushes, so the whole TLB goes); the buffer's own page tables (NUMA balancing's hint-fault entries
among them) are not touched.
Info file (rewritten atomically): pid, address, page count, the hot page indices, fill_done (epoch),
moved_at (epoch or null). On SIGTERM the sweep durations (seconds, pause excluded) are written to
the info file's "durations", then the process exits.
"""

import argparse
import ctypes
import json
import mmap
import os
import random
import signal
import sys
import time

PAGE = mmap.PAGESIZE
# The lab workload's mbind (bench/peers/run.sh copies tests/lab/tierd beside bench/peers).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "lab", "tierd"))
from workload import MPOL_DEFAULT, PROT_READ, PROT_WRITE, mbind, mprotect  # noqa: E402

FLUSH_MAPPING_BYTES = 1 << 20


def hot_pages(pages, percent, layout, rng, exclude=()):
    count = max(1, int(pages * percent / 100.0))
    if layout == "contiguous":
        # A moved contiguous hot set is the next block of the same size (wrapping), never overlapping.
        start = 0 if not exclude else (max(exclude) + 1) % pages
        return [(start + i) % pages for i in range(count)]
    taken = set(exclude)
    return sorted(rng.sample([p for p in range(pages) if p not in taken], count))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--hot-percent", type=float, default=10.0)
    parser.add_argument("--layout", choices=("contiguous", "scattered"), default="contiguous")
    parser.add_argument("--node", type=int, default=1)
    parser.add_argument("--info", required=True)
    parser.add_argument("--move-at", type=float, help="seconds after the fill to move the hot set")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between sweeps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flush-tlb", action="store_true", help="flush the TLB after each sweep (see above)")
    args = parser.parse_args()

    length = args.size_mib << 20
    pages = length // PAGE
    region = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    mbind(address, length, args.node)
    filler = os.urandom(1 << 20)  # random, so no page is the shared zero page or merged by KSM
    for offset in range(0, length, 1 << 20):
        region[offset:offset + (1 << 20)] = filler[:min(1 << 20, length - offset)]
    mbind(address, length, None, MPOL_DEFAULT)
    flusher = None
    if args.flush_tlb:
        flusher = mmap.mmap(-1, FLUSH_MAPPING_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for offset in range(0, FLUSH_MAPPING_BYTES, PAGE):
            flusher[offset] = 1  # present pages: mprotect flushes only where it changed an entry
        flush_address = ctypes.addressof(ctypes.c_char.from_buffer(flusher))
    rng = random.Random(args.seed)
    hot = hot_pages(pages, args.hot_percent, args.layout, rng)
    info = {"pid": os.getpid(), "address": address, "pages": pages, "page_size": PAGE, "hot": hot,
            "node": args.node, "fill_done": time.time(), "moved_at": None}
    durations = []

    def write_info():
        tmp = args.info + ".tmp"
        with open(tmp, "w") as out:
            json.dump(info, out)
        os.rename(tmp, args.info)

    def on_term(_signum, _frame):
        info["durations"] = durations
        write_info()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    write_info()
    move_at = None if args.move_at is None else info["fill_done"] + args.move_at
    offsets = [p * PAGE for p in hot]
    sweep = 0
    while True:
        if move_at is not None and time.time() >= move_at:
            hot = hot_pages(pages, args.hot_percent, args.layout, rng, exclude=hot)
            offsets = [p * PAGE for p in hot]
            info["hot"], info["moved_at"] = hot, time.time()
            write_info()
            move_at = None
        began = time.monotonic()
        value = (sweep & 0xFF) | 1
        for offset in offsets:
            region[offset + 8] = value
        durations.append(time.monotonic() - began)
        if flusher is not None:
            mprotect(flush_address, FLUSH_MAPPING_BYTES, PROT_READ)
            mprotect(flush_address, FLUSH_MAPPING_BYTES, PROT_READ | PROT_WRITE)
        sweep += 1
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
