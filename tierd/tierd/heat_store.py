"""Heat kept across a restart: each process's extents saved next to the state file.

A restart (a new package, a changed backend, Restart=on-failure) would otherwise start every
page at the initial heat and wait the whole warm-up before a demotion. The file holds per PID
its workload, its start time (so a reused PID is not given another process's heat) and per
mapping the extents as [low, high, heat]; heat is rounded to 3 digits, far finer than the
0.01 within which extents merge. Anything wrong with the file is logged and the file ignored:
heat is an optimisation, never a reason not to start.
"""

import json
import math
import os

from . import metrics

FORMAT = 1
FILE_NAME = "heat.json"
# 500 regions per PID (damon.max_nr_regions) times a few hundred workloads' PIDs; at ~40 bytes
# an extent the file stays under 8 MiB, and reading it costs well under a second.
MAX_EXTENTS = 200000
MAX_FILE_BYTES = 8 << 20
# Highest heat a sample can give: 1 for an access plus write_weight (at most 1).
MAX_HEAT = 2.0
# Saved this often besides at stop, so a kill -9 or a crash loses at most a minute at 5 s intervals.
SAVE_INTERVALS = 12


def path_for(state_file):
    return os.path.join(os.path.dirname(state_file), FILE_NAME)


def save(path, heat, owners, kernel):
    """Write ``heat`` (a HeatMap) for the PIDs of ``owners`` {pid: workload}; (pids, extents) saved.

    PIDs past MAX_EXTENTS are left out whole, so what is saved stays bounded."""
    pids = {}
    extents = 0
    for pid in sorted(owners):
        started = kernel.process_start_time(pid)
        mappings = heat.heat.get(pid)
        if started is None or not mappings:
            continue
        size = sum(len(runs) for runs in mappings.values())
        if extents + size > MAX_EXTENTS:
            break
        extents += size
        pids[str(pid)] = {
            "workload": owners[pid], "start_time": started,
            "mappings": [[start, end, heat.sampled(pid, start, end),
                          [[low, high, round(value, 3)] for low, high, value in runs]]
                         for (start, end), runs in sorted(mappings.items())],
        }
    # Root only: the extents are other processes' virtual addresses, which ASLR keeps from other users.
    metrics.write_atomic(path, json.dumps({"format": FORMAT, "pids": pids}, separators=(",", ":")), mode=0o600)
    return len(pids), extents


def load(path, kernel):
    """({pid: (workload, {(start, end): extents}, {(start, end): samples})}, why not) from ``path``.

    Only PIDs whose process still has the saved start time are returned; ``why not`` is None when
    the file was read, else the reason it was ignored (a missing file is not worth a reason).
    """
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            return {}, "%d bytes, over the limit of %d" % (size, MAX_FILE_BYTES)
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        return {}, "unreadable: %s" % (getattr(exc, "strerror", None) or exc)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("pids"), dict):
        return {}, "not a tierd heat file of format %d" % FORMAT
    restored = {}
    for key, entry in data["pids"].items():
        parsed = _entry(key, entry)
        if parsed is None:
            return {}, "malformed entry for PID %s" % key[:20]
        pid, workload, started, mappings, samples = parsed
        if kernel.process_start_time(pid) == started:
            restored[pid] = (workload, mappings, samples)
    return restored, None


def _entry(key, entry):
    """(pid, workload, start time, mappings, samples) of one saved PID, or None if malformed.

    Extents must cover their mapping without gaps: HeatMap's aging walks them on that promise."""
    if not key.isdigit() or not isinstance(entry, dict):
        return None
    workload, started, saved = entry.get("workload"), entry.get("start_time"), entry.get("mappings")
    if not isinstance(workload, str) or not _is_int(started) or not isinstance(saved, list):
        return None
    mappings, samples = {}, {}
    for mapping in saved:
        if not isinstance(mapping, list) or len(mapping) != 4 or not isinstance(mapping[3], list):
            return None
        start, end, sampled, runs = mapping
        if not (_is_int(start) and _is_int(end) and _is_int(sampled)) or not runs or sampled < 0:
            return None
        extents = []
        cursor = start
        for run in runs:
            if not isinstance(run, list) or len(run) != 3 or not all(_is_number(v) for v in run):
                return None
            low, high, value = run
            if low != cursor or high <= low or not 0 <= value <= MAX_HEAT:
                return None
            extents.append((low, high, float(value)))
            cursor = high
        if cursor != end:
            return None
        mappings[(start, end)] = extents
        samples[(start, end)] = sampled
    return int(key), workload, started, mappings, samples


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
