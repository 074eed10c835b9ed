"""Shared helpers for tierd's unit tests: recorded guest trees, a move_pages double, a log sink."""

import bisect
import json
import os
import shutil
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tierd"))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
DAMON_FIXTURE = os.path.join(FIXTURES, "trixie-nvdimm-damon")

from tierd.kernel import Kernel, parse_maps  # noqa: E402


class ListStream:
    """A log stream that keeps each written line (tierd's Logger writes one line per event)."""

    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


def recorded_workload():
    with open(os.path.join(DAMON_FIXTURE, "workload.json")) as handle:
        return json.load(handle)


def recorded_pagemap():
    info = recorded_workload()
    with open(os.path.join(DAMON_FIXTURE, "pagemap-%d.json" % info["pid"])) as handle:
        data = json.load(handle)
    text = data["entries_hex"]
    return data["start"], [int(text[i:i + 16], 16) for i in range(0, len(text), 16)]


def write_sparse_pagemap(root, pid, start, entries):
    """A sparse /proc/PID/pagemap with recorded entries at the offset the kernel serves them."""
    path = os.path.join(root, "proc", str(pid), "pagemap")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.seek((start // 4096) * 8)
        out.write(b"".join(e.to_bytes(8, "little") for e in entries))
    return path


@pytest.fixture
def guest_root(tmp_path):
    """A writable copy of the recorded trixie nvdimm guest tree, with its pagemap rebuilt."""
    root = str(tmp_path / "root")
    shutil.copytree(os.path.join(DAMON_FIXTURE, "root"), root)
    start, entries = recorded_pagemap()
    write_sparse_pagemap(root, recorded_workload()["pid"], start, entries)
    return root


class SimulatedPages(Kernel):
    """Kernel over a recorded tree whose move_pages(2) moves pages in a dict instead of memory.

    The system call is simulated, and numa_maps' per-node counts follow the simulated pages (the
    kernel counts the pages where they are); everything else reads the recorded files.
    """

    def __init__(self, root, placement, fail=(), huge_pages=0):
        Kernel.__init__(self, root)
        self.placement = placement  # (pid, address) -> node
        self.fail = set(fail)
        self.calls = []
        # With huge_pages=N, aligned blocks of N pages are transparent huge pages: moving any
        # address of one moves all of it, as the kernel does.
        self.huge_bytes = huge_pages * 4096

    def move_pages(self, pid, addresses, nodes=None):
        self.calls.append((pid, len(addresses), None if nodes is None else nodes[0]))
        status = []
        for i, address in enumerate(addresses):
            key = (pid, address)
            if key not in self.placement:
                status.append(-14)
            elif nodes is None:
                status.append(self.placement[key])
            elif key in self.fail:
                status.append(-16)
            elif self.huge_bytes:
                base = address // self.huge_bytes * self.huge_bytes
                for page in range(base, base + self.huge_bytes, 4096):
                    if (pid, page) in self.placement:
                        self.placement[(pid, page)] = nodes[i]
                status.append(nodes[i])
            else:
                self.placement[key] = nodes[i]
                status.append(nodes[i])
        return status

    def numa_maps(self, pid):
        parsed = Kernel.numa_maps(self, pid)
        if parsed is None:
            return None
        vmas = parse_maps(self.proc_text(pid, "maps") or "")
        starts = [vma["start"] for vma in vmas]
        counted = {}
        for (owner, address), node in self.placement.items():
            index = bisect.bisect_right(starts, address) - 1
            if owner != pid or index < 0 or address >= vmas[index]["end"]:
                continue
            per_node = counted.setdefault(vmas[index]["start"], {})
            per_node[node] = per_node.get(node, 0) + 1
        for start, per_node in counted.items():
            entry = {key: value for key, value in parsed.get(start, {"policy": "default"}).items()
                     if not (key[:1] == "N" and key[1:].isdigit())}
            entry.update(("N%d" % node, pages) for node, pages in per_node.items())
            parsed[start] = entry
        return parsed
