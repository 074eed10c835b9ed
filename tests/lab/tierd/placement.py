"""Where a workload.py's pages are: move_pages(2) status queries, independent of tierd's code.

    placement.py INFO_FILE DRAM_NODE PMEM_NODE  → one JSON line with hot/cold counts per node
"""

import ctypes
import json
import os
import sys

MOVE_PAGES = {"x86_64": 279, "aarch64": 239}


def nodes_of(pid, addresses):
    libc = ctypes.CDLL(None, use_errno=True)
    result = []
    for offset in range(0, len(addresses), 8192):
        part = addresses[offset:offset + 8192]
        pages = (ctypes.c_void_p * len(part))(*part)
        status = (ctypes.c_int * len(part))()
        rc = libc.syscall(ctypes.c_long(MOVE_PAGES[os.uname().machine]), ctypes.c_int(pid),
                          ctypes.c_ulong(len(part)), pages, None, status, ctypes.c_int(0))
        if rc != 0:
            raise OSError(ctypes.get_errno(), "move_pages query of pid %d" % pid)
        result.extend(status)
    return result


def main():
    with open(sys.argv[1]) as handle:
        info = json.load(handle)
    dram, pmem = int(sys.argv[2]), int(sys.argv[3])
    page = info["page_size"]
    count = info["length"] // page
    nodes = nodes_of(info["pid"], [info["address"] + i * page for i in range(count)])
    first = info.get("hot_first_page", 0)
    hot = nodes[first:first + info["hot_pages"]]
    cold = nodes[:first] + nodes[first + info["hot_pages"]:]
    counts = {
        "pages": count, "hot_pages": len(hot), "cold_pages": len(cold),
        "hot_on_dram": sum(1 for n in hot if n == dram), "hot_on_pmem": sum(1 for n in hot if n == pmem),
        "cold_on_dram": sum(1 for n in cold if n == dram), "cold_on_pmem": sum(1 for n in cold if n == pmem),
        "on_pmem": sum(1 for n in nodes if n == pmem), "on_dram": sum(1 for n in nodes if n == dram),
        "not_present": sum(1 for n in nodes if n < 0),
    }
    if "previous_hot_first_page" in info:
        old = info["previous_hot_first_page"]
        counts["previous_hot_on_dram"] = sum(1 for n in nodes[old:old + info["hot_pages"]] if n == dram)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
