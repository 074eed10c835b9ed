"""Shared helpers for tierd's unit tests: recorded guest trees, a move_pages double, a log sink."""

import bisect
import json
import os
import shutil
import sys
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tierd"))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
DAMON_FIXTURE = os.path.join(FIXTURES, "trixie-nvdimm-damon")

from tierd.kernel import Kernel, parse_maps  # noqa: E402


class SkippedWaits(threading.Event):
    """An agent's stop_event whose waits between intervals return at once and move the agent's clock
    on by the time waited instead: the agent sees its intervals pass, the test does not spend them
    (two-second intervals made tierd's unit tests mostly sleep). Time still passes as well, so a
    rate limiter's real sleeps work as before."""

    def __init__(self):
        super().__init__()
        self.skipped_seconds = 0.0

    def clock(self):
        return time.monotonic() + self.skipped_seconds

    def wait(self, timeout=None):
        if timeout and not self.is_set():
            self.skipped_seconds += timeout
        return self.is_set()


def agent_without_waits(agent_class, *args, **kwargs):
    """An Agent built with SkippedWaits' clock and stop_event."""
    waits = SkippedWaits()
    agent = agent_class(*args, clock=waits.clock, **kwargs)
    agent.stop_event = waits
    return agent


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


def copy_guest_root(base):
    """A writable copy of the recorded trixie nvdimm guest tree in ``base``/root, with its pagemap rebuilt."""
    root = str(base / "root")
    shutil.copytree(os.path.join(DAMON_FIXTURE, "root"), root)
    start, entries = recorded_pagemap()
    write_sparse_pagemap(root, recorded_workload()["pid"], start, entries)
    return root


@pytest.fixture
def guest_root(tmp_path):
    """copy_guest_root in the test's own directory."""
    return copy_guest_root(tmp_path)


DAMON_ADMIN_REL = "sys/kernel/mm/damon/admin"


class SimulatedDamon(Kernel):
    """Kernel over a recorded tree whose DAMON sysfs behaves like 6.12's, in the ways tierd relies on.

    Writing ``nr_*`` recreates the numbered directories below it (empty, as sysfs does); ``state``
    takes ``on``, ``off``, ``commit`` and ``update_schemes_tried_regions`` and reads back
    ``on``/``off``. The kernel side keeps one entry per target: ``on`` makes them all new,
    ``commit`` matches them by index as ``damon_commit_targets`` does (an index keeps its entry,
    its ``serial`` and so its regions' history, whatever PID it is given; entries past the new
    count go) and refuses the whole commit (EINVAL) when a PID has no process, which also stops the
    kdamond. Tried regions of
    scheme i are the regions of the targets its filters let through: all of them without a
    ``target`` filter. A target's regions come from ``regions_by_pid`` (by default the recorded
    kdamond's tried regions for the recorded workload).
    """

    def __init__(self, root):
        Kernel.__init__(self, root)
        self.kernel_targets = []  # [{"pid", "serial", "updates"}]
        self.serials = 0
        self.commands = []
        recorded = self.numbered_rows("/%s/kdamonds/0/contexts/0/schemes/0/tried_regions" % DAMON_ADMIN_REL,
                                      ("start", "end", "nr_accesses", "age"))
        self.regions_by_pid = {recorded_workload()["pid"]: recorded}

    def write_text(self, path, value):
        rel = path.lstrip("/")
        if not rel.startswith(DAMON_ADMIN_REL):
            return Kernel.write_text(self, path, value)
        full = self.path(path)
        name = os.path.basename(rel)
        if name == "state" and rel.startswith(DAMON_ADMIN_REL + "/kdamonds/0/"):
            return self._command(os.path.dirname(full), str(value))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if name.startswith("nr_"):
            parent = os.path.dirname(full)
            for entry in os.listdir(parent):
                if entry.isdigit():
                    shutil.rmtree(os.path.join(parent, entry))
            for index in range(int(value)):
                os.makedirs(os.path.join(parent, str(index)))
        with open(full, "w") as handle:
            handle.write(str(value))
        return None

    def _read(self, path, default=None):
        try:
            with open(path) as handle:
                return handle.read().strip()
        except OSError:
            return default

    def _sysfs_pids(self, kdamond):
        targets = os.path.join(kdamond, "contexts/0/targets")
        count = int(self._read(os.path.join(targets, "nr_targets"), "0"))
        pids = [int(self._read(os.path.join(targets, str(i), "pid_target"), "0")) for i in range(count)]
        for pid in pids:
            if not os.path.exists(self.path("/proc/%d" % pid)):
                raise OSError(22, "Invalid argument")
        return pids

    def _new_entry(self, pid):
        self.serials += 1
        return {"pid": pid, "serial": self.serials, "updates": 0}

    def _command(self, kdamond, command):
        self.commands.append(command)
        state = os.path.join(kdamond, "state")
        running = self._read(state) == "on"
        if command == "on":
            self.kernel_targets = [self._new_entry(pid) for pid in self._sysfs_pids(kdamond)]
            self._set_state(kdamond, "on")
        elif command == "off":
            self.kernel_targets = []
            self._set_state(kdamond, "off")
        elif not running:
            raise OSError(22, "Invalid argument")
        elif command == "commit":
            try:
                pids = self._sysfs_pids(kdamond)
            except OSError:
                # 6.12 runs the command from the kdamond's own loop, and a failed one ends it: a refused
                # commit stops the kdamond (seen in the scale lab test: every target's regions rebuilt).
                self.kernel_targets = []
                self._set_state(kdamond, "off")
                raise
            entries = self.kernel_targets[:len(pids)]
            for entry, pid in zip(entries, pids):
                entry["pid"] = pid
            entries.extend(self._new_entry(pid) for pid in pids[len(entries):])
            self.kernel_targets = entries
        elif command == "update_schemes_tried_regions":
            for entry in self.kernel_targets:
                entry["updates"] += 1
            self._tried_regions(kdamond)
        else:
            raise OSError(22, "Invalid argument")

    def _set_state(self, kdamond, value):
        with open(os.path.join(kdamond, "state"), "w") as handle:
            handle.write(value + "\n")
        with open(os.path.join(kdamond, "pid"), "w") as handle:
            handle.write("4242\n" if value == "on" else "-1\n")

    def _tried_regions(self, kdamond):
        schemes = os.path.join(kdamond, "contexts/0/schemes")
        for scheme in range(int(self._read(os.path.join(schemes, "nr_schemes"), "0"))):
            base = os.path.join(schemes, str(scheme))
            allowed = range(len(self.kernel_targets))
            filters = os.path.join(base, "filters")
            for index in range(int(self._read(os.path.join(filters, "nr_filters"), "0"))):
                one = os.path.join(filters, str(index))
                if self._read(os.path.join(one, "type")) == "target":
                    idx = int(self._read(os.path.join(one, "damon_target_idx"), "0"))
                    out_when_match = self._read(os.path.join(one, "matching")) == "Y"
                    allowed = [i for i in allowed if (i == idx) != out_when_match]
            tried = os.path.join(base, "tried_regions")
            shutil.rmtree(tried, ignore_errors=True)
            os.makedirs(tried)
            rows = []
            for i in allowed:
                entry = self.kernel_targets[i]
                for start, end, nr_accesses, age in self.regions_by_pid.get(entry["pid"], []):
                    rows.append((start, end, nr_accesses, age))
            for number, row in enumerate(rows):
                os.makedirs(os.path.join(tried, str(number)))
                for field, value in zip(("start", "end", "nr_accesses", "age"), row):
                    with open(os.path.join(tried, str(number), field), "w") as handle:
                        handle.write("%d\n" % value)


class SimulatedPages(SimulatedDamon):
    """Kernel over a recorded tree whose move_pages(2) moves pages in a dict instead of memory.

    The system call is simulated, and numa_maps' per-node counts follow the simulated pages (the
    kernel counts the pages where they are); everything else reads the recorded files.
    """

    def __init__(self, root, placement, fail=(), huge_pages=0):
        SimulatedDamon.__init__(self, root)
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

    def numa_maps(self, pid, starts=None):
        parsed = Kernel.numa_maps(self, pid, starts)
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
            if starts is not None and start not in starts:
                continue
            entry = {key: value for key, value in parsed.get(start, {"policy": "default"}).items()
                     if not (key[:1] == "N" and key[1:].isdigit())}
            entry.update(("N%d" % node, pages) for node, pages in per_node.items())
            parsed[start] = entry
        return parsed
