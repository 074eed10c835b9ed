"""Lab workload for tierd: anonymous memory bound to one NUMA node, a known hot part kept busy.

    workload.py --size-mib 256 --hot-percent 20 --node 1 --info /run/wl1.json

Allocates SIZE MiB with one anonymous private mmap, binds it to NODE with mbind(2) (ctypes; the
guests have no compiler), fills every page with random bytes, then reads one byte of
every page of the hot part (the first HOT-PERCENT) in a loop while the rest stays untouched.
The info file records pid, address, sizes and the SHA-256 of the contents; SIGUSR1 recomputes
the checksum into the info file (it reads every page, so the test sends it only at the end).
SIGUSR2 moves the hot part to the next HOT-PERCENT of the buffer (wrapping round), and the info
file's `hot_first_page` says where it now starts (placement.py counts hot and cold from there) and
`previous_hot_first_page` where it was (placement.py reports how much of that is still on DRAM).
"""

import argparse
import ctypes
import hashlib
import json
import mmap
import os
import signal
import time

PAGE = mmap.PAGESIZE
MPOL_DEFAULT, MPOL_BIND = 0, 2
PROT_READ, PROT_WRITE = 1, 2
MADV_NOHUGEPAGE = 15
MBIND_SYSCALL = {"x86_64": 237, "aarch64": 235}


def mbind(address, length, node, mode=MPOL_BIND):
    """MPOL_BIND to ``node``, or with MPOL_DEFAULT (node None) back to the task's default policy."""
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_ulong(0 if node is None else 1 << node)
    number = MBIND_SYSCALL[os.uname().machine]
    rc = libc.syscall(ctypes.c_long(number), ctypes.c_void_p(address), ctypes.c_ulong(length),
                      ctypes.c_int(mode), None if node is None else ctypes.byref(mask),
                      ctypes.c_ulong(0 if node is None else 64), ctypes.c_uint(0))
    if rc != 0:
        raise OSError(ctypes.get_errno(), "mbind mode %d to node %s failed" % (mode, node))


def mprotect(address, length, prot):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(address), ctypes.c_size_t(length), ctypes.c_int(prot)) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the hot part failed")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--hot-percent", type=float, default=20.0)
    parser.add_argument("--node", type=int, default=1)
    parser.add_argument("--info", required=True)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between sweeps of the hot part")
    parser.add_argument("--write", action="store_true", help="write to the hot pages instead of only reading")
    parser.add_argument("--no-thp", action="store_true",
                        help="madvise(MADV_NOHUGEPAGE) the buffer: 4 KiB pages where the guest's THP is always")
    parser.add_argument("--unbind", action="store_true",
                        help="reset the buffer to the default policy once it is filled: NUMA balancing skips "
                             "a mapping with a bind policy, so the kernel's tiering would never promote it")
    parser.add_argument("--flush-tlb", action="store_true",
                        help="mprotect the buffer after each sweep: a task pinned to a CPU of its own never "
                             "flushes its TLB, so the accessed bits DAMON clears would stay clear (LAB-NOTES)")
    args = parser.parse_args()

    length = args.size_mib << 20
    region = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anchor = ctypes.c_char.from_buffer(region)
    address = ctypes.addressof(anchor)
    if args.no_thp:
        region.madvise(MADV_NOHUGEPAGE)
    mbind(address, length, args.node)
    chunk = 1 << 20
    for offset in range(0, length, chunk):
        region[offset:offset + chunk] = os.urandom(min(chunk, length - offset))
    if args.unbind:
        mbind(address, length, None, MPOL_DEFAULT)
    hot_pages = int(length // PAGE * args.hot_percent / 100)
    info = {"pid": os.getpid(), "address": address, "length": length, "page_size": PAGE,
            "hot_pages": hot_pages, "hot_first_page": 0, "node": args.node,
            "sha256": hashlib.sha256(region).hexdigest(), "checks": 0, "hot_moves": 0}

    def write_info():
        tmp = args.info + ".tmp"
        with open(tmp, "w") as out:
            json.dump(info, out)
        os.rename(tmp, args.info)

    def on_usr1(_signum, _frame):
        info["sha256_now"] = hashlib.sha256(region).hexdigest()
        info["checks"] += 1
        write_info()

    def on_usr2(_signum, _frame):
        info["previous_hot_first_page"] = info["hot_first_page"]
        first = info["hot_first_page"] + hot_pages
        info["hot_first_page"] = 0 if first + hot_pages > length // PAGE else first
        info["hot_moves"] += 1
        write_info()

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGUSR2, on_usr2)
    write_info()
    sweeps = 0
    while True:
        hot_start = info["hot_first_page"] * PAGE
        hot_end = hot_start + hot_pages * PAGE
        if args.write:
            for offset in range(hot_start, hot_end, PAGE):
                region[offset + 8] = (sweeps & 0xFF) | 1
        else:
            total = 0
            for offset in range(hot_start, hot_end, PAGE):
                total += region[offset]
        sweeps += 1
        if args.flush_tlb:
            # The whole mapping, not the hot part: a partial mprotect splits the mapping in two, and
            # tierd, which keys heat by mapping, would see it change shape every sweep.
            mprotect(address, length, PROT_READ)
            mprotect(address, length, PROT_READ | PROT_WRITE)
        time.sleep(args.pause)


if __name__ == "__main__":
    main()
