"""bench/peers: the pure parts of the guest driver (no /proc, no /sys), so they are unit-tested on the host.

    python3 bench/peers/peers_metrics.py RESULTS_JSON   → the markdown tables of one run

Samples are dicts taken once a second by guest_peers.py: {"t": seconds since the workload started,
"hot_on_dram": share, "cold_on_dram": share, ...}.
"""

import json
import math
import sys

# The /proc/vmstat counters whose change says what the kernel itself did during one run.
VMSTAT_COUNTERS = ("numa_hint_faults", "numa_pages_migrated", "pgpromote_success", "pgmigrate_success",
                   "pgdemote_kswapd", "pgdemote_direct", "pgdemote_khugepaged", "pgdemote_proactive")


def parse_vmstat(text):
    """{counter: int} from the text of /proc/vmstat."""
    counters = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            counters[parts[0]] = int(parts[1])
    return counters


def vmstat_delta(before, after, names=VMSTAT_COUNTERS):
    """Per-counter change; pgdemote_* are also summed into "pgdemote" (kernels name their sources
    differently: 6.12 has kswapd/direct/khugepaged, newer ones add proactive). A counter this kernel
    lacks is left out rather than reported as 0, so "not counted" is not read as "did not happen"."""
    delta = {}
    for name in names:
        if name in before and name in after:
            delta[name] = after[name] - before[name]
    demoted = [value for name, value in delta.items() if name.startswith("pgdemote_")]
    if demoted:
        delta["pgdemote"] = sum(demoted)
    return delta


def cpu_ticks_of_stat(text, system_only=False):
    """utime + stime (clock ticks; ``system_only``: stime) from the text of /proc/PID/stat or
    /proc/PID/task/TID/stat. The command name may hold spaces and parentheses, so fields are
    counted from the last ')'."""
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return int(fields[12]) if system_only else int(fields[11]) + int(fields[12])


def cpu_seconds(ticks_by_task, hertz=100, baseline=None):
    """Seconds of CPU used during a run from {task id: the most ticks seen}, less what the same task
    had used before the run (``baseline``: a kdamond of someone else's that was already running):
    a kdamond thread that ended during the run keeps what it used while it ran."""
    baseline = baseline or {}
    return sum(max(0, ticks - baseline.get(task, 0)) for task, ticks in ticks_by_task.items()) / float(hertz)


def seconds_to_share(samples, key, share=0.9, after=0.0):
    """Seconds from ``after`` until the first sample at or after it with samples[key] >= share, or None
    when no sample reached it (the run ended first)."""
    for sample in samples:
        if sample["t"] >= after and sample.get(key) is not None and sample[key] >= share:
            return round(sample["t"] - after, 1)
    return None


# The agent's CPU is also given as a rate from this many seconds into the run to its end: a daemon
# runs for days, so its start (for tierd ~0.5 s of Python imports and setup under TCG) is a one-time
# cost that the run's total charges to a minute or two.
STEADY_AFTER = 20.0


def steady_cpu_percent(samples, after=STEADY_AFTER):
    """The agent's CPU from the first sample at or after ``after`` seconds to the last, in % of one
    CPU, from the samples' cumulative ``agent_cpu_s``; None with fewer than two such samples."""
    timed = [s for s in samples if s["t"] >= after and s.get("agent_cpu_s") is not None]
    if len(timed) < 2 or timed[-1]["t"] <= timed[0]["t"]:
        return None
    return round(100.0 * (timed[-1]["agent_cpu_s"] - timed[0]["agent_cpu_s"]) / (timed[-1]["t"] - timed[0]["t"]), 2)


# The share of the cold set on DRAM below which the old hot set counts as demoted again (W2's old hot
# set is 11 % of its cold set).
OLD_HOT_LEFT = 0.01


def seconds_to_drop(samples, key, limit, after):
    """Seconds from ``after`` until samples[key] fell to ``limit`` or below, having been above it
    since ``after``: after the move, how long the old hot set (now part of the cold set) stayed on
    DRAM. None when it never rose above the limit (nothing to demote) or never fell back."""
    above = False
    for sample in samples:
        if sample["t"] < after or sample.get(key) is None:
            continue
        if sample[key] > limit:
            above = True
        elif above:
            return round(sample["t"] - after, 1)
    return None


def percentile(values, fraction):
    """The nearest-rank percentile (fraction 0.99 = p99) of ``values``, None for no values. Nearest
    rank on purpose: a p99 is then a time one iteration really took, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def iteration_stats(durations, elapsed):
    """{"iterations_per_s", "p99_ms"} from a workload's sweep durations (seconds) over ``elapsed`` s."""
    p99 = percentile(durations, 0.99)
    return {"iterations": len(durations),
            "iterations_per_s": round(len(durations) / elapsed, 2) if elapsed > 0 else None,
            "p99_ms": None if p99 is None else round(p99 * 1000.0, 1)}


def last_value(samples, key):
    for sample in reversed(samples):
        if sample.get(key) is not None:
            return sample[key]
    return None


def peak_value(samples, key, after=0.0):
    values = [s[key] for s in samples if s["t"] >= after and s.get(key) is not None]
    return max(values) if values else None


def buffer_moves(before, after, hot, dram, pmem):
    """Pages of the buffer seen moving between two samples (node per page, same order), as
    {"promoted", "demoted", "hot_demoted"}: PMEM to DRAM, DRAM to PMEM, and of the latter those in
    the hot set (a hot page taken off DRAM: a wrong demotion, paid for by a promotion later).
    A page that moves and returns within one sample interval is not seen."""
    moves = {"promoted": 0, "demoted": 0, "hot_demoted": 0}
    for index, (was, now) in enumerate(zip(before, after)):
        if was == pmem and now == dram:
            moves["promoted"] += 1
        elif was == dram and now == pmem:
            moves["demoted"] += 1
            if index in hot:
                moves["hot_demoted"] += 1
    return moves


def other_mappings(maps_text, buffer_start, page_size, max_pages):
    """[(start, end, label)] of a workload's mappings other than its buffer (the one starting at
    ``buffer_start``), from /proc/PID/maps: where its other pages are (interpreter, heap, stacks,
    libraries), for counting their moves beside the buffer's. A mapping larger than ``max_pages``
    (a reservation, mostly not present) is left out; label: the path, [heap]/[stack], or "anon"."""
    mappings = []
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        label = fields[5].strip() if len(fields) > 5 else "anon"
        if start == buffer_start or label == "[vsyscall]" or (end - start) // page_size > max_pages:
            continue
        mappings.append((start, end, label))
    return mappings


def migrations_of_trace(text):
    """{"reason comm pid": pages migrated} from the text of a tracefs ``trace`` file recording
    migrate:mm_migrate_pages (one line per migrate_pages() call, in the calling task's context:
    "  comm-pid  [cpu] flags  time: mm_migrate_pages: nr_succeeded=N ... reason=numa_misplaced").
    The comm is the task's at the time, "<...>" where tracefs no longer remembered it."""
    counts = {}
    for line in text.splitlines():
        if line.startswith("#") or " mm_migrate_pages: " not in line:
            continue
        task, fields = line.split(" mm_migrate_pages: ", 1)
        task = task.split("[", 1)[0].strip()
        comm, _sep, pid = task.rpartition("-")
        values = dict(item.split("=", 1) for item in fields.split() if "=" in item)
        pages = int(values.get("nr_succeeded", "0"))
        if pages:
            key = "%s %s %s" % (values.get("reason", "?"), comm or task, pid if comm else "?")
            counts[key] = counts.get(key, 0) + pages
    return counts


def add_moves(total, moves):
    for key, count in moves.items():
        total[key] = total.get(key, 0) + count
    return total


def quota_held(samples, budget_pages, slack_pages, settle_seconds):
    """Whether the tenants' DRAM stayed within the budget once the agent had ``settle_seconds``:
    every sample from then on must have tenants' DRAM pages <= budget + slack (one move batch; a
    huge page or an extent moves whole). None when no sample was that late."""
    late = [s["tenants_dram_pages"] for s in samples if s["t"] >= settle_seconds and "tenants_dram_pages" in s]
    if not late:
        return None
    return max(late) <= budget_pages + slack_pages


def priority_held(samples, settle_seconds):
    """Whether the high-priority tenant's hot set had at least the low-priority one's DRAM share on
    every sample after settling (the budget goes to the high-priority tenant first)."""
    late = [s for s in samples if s["t"] >= settle_seconds and "high_hot_on_dram" in s]
    if not late:
        return None
    return all(s["high_hot_on_dram"] >= s["low_hot_on_dram"] for s in late)


def summarize(run):
    """The numbers of one (peer, workload) run, from its samples and counters, for the table."""
    samples = run.get("samples", [])
    summary = {"peer": run["peer"], "workload": run["workload"]}
    if run.get("skipped"):
        summary["skipped"] = run["skipped"]
        return summary
    goal_key = run.get("goal_key", "hot_on_dram")
    summary["to_90"] = seconds_to_share(samples, goal_key)
    if run.get("moved_at") is not None:
        summary["to_90_after_move"] = seconds_to_share(samples, goal_key, after=run["moved_at"])
        summary["old_hot_off_dram"] = seconds_to_drop(samples, "cold_on_dram", OLD_HOT_LEFT, run["moved_at"])
    summary["hot_on_dram_end"] = last_value(samples, "hot_on_dram")
    summary["cold_promoted_peak"] = peak_value(samples, "cold_on_dram")
    summary["cold_promoted_end"] = last_value(samples, "cold_on_dram")
    summary["agent_cpu_s"] = run.get("agent_cpu_s")
    summary["agent_system_s"] = run.get("agent_system_s")
    summary["agent_cpu_steady"] = steady_cpu_percent(samples)
    summary.update(iteration_stats(run.get("durations", []), run.get("elapsed", 0)))
    summary["vmstat"] = run.get("vmstat", {})
    summary["buffer_moves"] = run.get("buffer_moves")
    if run.get("other_moves") is not None:
        summary["other_moves"] = {key: sum(m.get(key, 0) for m in run["other_moves"].values())
                                  for key in ("promoted", "demoted")}
    if "budget_pages" in run:
        summary["quota_held"] = quota_held(samples, run["budget_pages"], run["slack_pages"], run["settle_seconds"])
        summary["priority_held"] = priority_held(samples, run["settle_seconds"])
    return summary


def _cell(value, percent=False, unit=""):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if percent:
        return "%.0f %%" % (value * 100)
    return "%s%s" % (value, unit)


TABLE_HEAD = ("| workload | peer | ≥90 % after start | ≥90 % after move | old hot set off DRAM after move "
              "| hot on DRAM (end) | cold promoted "
              "(peak / end) | agent CPU | agent CPU after 20 s | iter/s | p99 iter | hint faults | promoted | demoted | migrated | "
              "buffer promoted / demoted (of them hot) | other pages promoted / demoted | quota |")


def _agent_cpu(summary):
    """"4.2 s (system 3.1 s)": the system share is the kernel's work in the agent's context (for
    tierd: move_pages, memory.reclaim and lru_gen's aging and eviction, i.e. the migrations)."""
    cell = _cell(summary.get("agent_cpu_s"), unit=" s")
    if summary.get("agent_system_s") is None or summary.get("agent_cpu_s") is None:
        return cell
    return "%s (system %s)" % (cell, _cell(summary["agent_system_s"], unit=" s"))


def _buffer_moves(moves):
    if not moves:
        return "-"
    return "%d / %d (%d)" % (moves["promoted"], moves["demoted"], moves["hot_demoted"])


def _other_moves(moves):
    return "-" if not moves else "%d / %d" % (moves["promoted"], moves["demoted"])


def render_table(summaries):
    """One markdown table row per (workload, peer); a skipped run says why in place of numbers."""
    lines = [TABLE_HEAD, "|" + "---|" * (TABLE_HEAD.count("|") - 1)]
    for s in sorted(summaries, key=lambda s: (s["workload"], s["peer"])):
        if s.get("skipped"):
            lines.append("| %s | %s | skipped: %s |%s" % (s["workload"], s["peer"], s["skipped"], " |" * 15))
            continue
        vm = s.get("vmstat", {})
        quota = "-"
        if "quota_held" in s:
            quota = "budget %s, priority %s" % (_cell(s["quota_held"]), _cell(s["priority_held"]))
        lines.append("| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            s["workload"], s["peer"], _cell(s.get("to_90"), unit=" s"), _cell(s.get("to_90_after_move"), unit=" s"),
            _cell(s.get("old_hot_off_dram"), unit=" s"),
            _cell(s.get("hot_on_dram_end"), percent=True), _cell(s.get("cold_promoted_peak"), percent=True),
            _cell(s.get("cold_promoted_end"), percent=True), _agent_cpu(s),
            _cell(s.get("agent_cpu_steady"), unit=" % of a CPU"),
            _cell(s.get("iterations_per_s")), _cell(s.get("p99_ms"), unit=" ms"), _cell(vm.get("numa_hint_faults")),
            _cell(vm.get("pgpromote_success")), _cell(vm.get("pgdemote")), _cell(vm.get("numa_pages_migrated")),
            _buffer_moves(s.get("buffer_moves")), _other_moves(s.get("other_moves")), quota))
    return "\n".join(lines)


def main():
    with open(sys.argv[1]) as handle:
        result = json.load(handle)
    print(render_table([summarize(run) for run in result["runs"]]))


if __name__ == "__main__":
    main()


# Widths of struct damos_access_pattern's fields (include/linux/damon.h): the sizes are unsigned
# long, the access counts and ages unsigned int. DAMON's sysfs files take an unsigned long for
# each and the kernel narrows it when the scheme is made, so an age maximum of 2**32 became 0 and
# only regions of age 0 matched (a migrate_cold with a minimum age never matched: 2026-12-06).
DAMOS_UINT_MAX = (1 << 32) - 1
DAMOS_ULONG_MAX = (1 << 64) - 1


def damos_access_pattern(page_size, accesses, min_age):
    """{"sz", "nr_accesses", "age": (min, max)} for a DAMOS scheme: any region size, ``accesses``
    (min, max) per aggregation, at least ``min_age`` aggregations old; no bound wider than its field."""
    low, high = accesses
    return {"sz": (page_size, DAMOS_ULONG_MAX),
            "nr_accesses": (low, min(high, DAMOS_UINT_MAX)),
            "age": (min_age, DAMOS_UINT_MAX)}
