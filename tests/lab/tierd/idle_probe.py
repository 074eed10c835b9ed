"""What the kernel's page_idle tracking reports for a workload.py, independent of tierd's code.

    idle_probe.py INFO_FILE SECONDS  → one JSON line: of the hot and the cold pages, how many
                                       read back as accessed SECONDS after being marked idle

Marks the frames of every present page idle through /sys/kernel/mm/page_idle/bitmap (PFNs from
/proc/PID/pagemap, which shows them to root only), waits, reads the bits back. A hot page that
reads idle although the workload touched it was served from a TLB entry that marking idle did
not flush (LAB-NOTES); tierd's page_idle backend sees the same bits.
"""

import json
import struct
import sys
import time

BITMAP = "/sys/kernel/mm/page_idle/bitmap"
PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def frames(pid, address, count, page):
    with open("/proc/%d/pagemap" % pid, "rb") as handle:
        handle.seek(address // page * 8)
        data = handle.read(count * 8)
    entries = struct.unpack("%dQ" % (len(data) // 8), data)
    return [e & PFN_MASK if e & PRESENT else 0 for e in entries]


def mark_idle(pfns):
    words = {}
    for pfn in pfns:
        if pfn:
            words[pfn >> 6] = words.get(pfn >> 6, 0) | 1 << (pfn & 63)
    with open(BITMAP, "r+b", buffering=0) as bitmap:
        for index in sorted(words):
            bitmap.seek(index * 8)
            bitmap.write(struct.pack("Q", words[index]))


def accessed(pfns):
    result = []
    with open(BITMAP, "rb", buffering=0) as bitmap:
        cache = {}
        for pfn in pfns:
            if not pfn:
                result.append(None)
                continue
            if pfn >> 6 not in cache:
                bitmap.seek((pfn >> 6) * 8)
                cache[pfn >> 6] = struct.unpack("Q", bitmap.read(8))[0]
            result.append(not cache[pfn >> 6] >> (pfn & 63) & 1)
    return result


def main():
    with open(sys.argv[1]) as handle:
        info = json.load(handle)
    seconds = float(sys.argv[2])
    page = info["page_size"]
    count = info["length"] // page
    before = frames(info["pid"], info["address"], count, page)
    mark_idle(before)
    time.sleep(seconds)
    after = frames(info["pid"], info["address"], count, page)
    # A page that moved meanwhile has a new frame whose flag says nothing about this interval.
    seen = [flag if pfn and pfn == now else None for flag, pfn, now in zip(accessed(before), before, after)]
    hot, cold = seen[:info["hot_pages"]], seen[info["hot_pages"]:]
    print(json.dumps({
        "seconds": seconds, "hot_pages": len(hot), "cold_pages": len(cold),
        "hot_accessed": sum(1 for s in hot if s), "hot_idle": sum(1 for s in hot if s is False),
        "cold_accessed": sum(1 for s in cold if s), "cold_idle": sum(1 for s in cold if s is False),
        "unknown": sum(1 for s in seen if s is None),
    }))


if __name__ == "__main__":
    main()
