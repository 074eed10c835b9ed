"""bench/peers: the guest driver's pure parts (metrics math, vmstat deltas, the table)."""

import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench", "peers"))

import peers_metrics as pm  # noqa: E402


def samples(key, values, step=1.0):
    return [{"t": i * step, key: v} for i, v in enumerate(values)]


def test_seconds_to_share_is_the_first_sample_at_or_above():
    timeline = samples("hot_on_dram", [0.0, 0.5, 0.89, 0.9, 0.95])
    assert pm.seconds_to_share(timeline, "hot_on_dram") == 3.0


def test_seconds_to_share_is_none_when_never_reached():
    assert pm.seconds_to_share(samples("hot_on_dram", [0.1, 0.8, 0.89]), "hot_on_dram") is None


def test_seconds_to_share_after_the_move_counts_from_the_move():
    # reached before the move, lost when the hot set moved at t=4, back at t=7: 3 s after the move
    timeline = samples("hot_on_dram", [0.0, 0.95, 1.0, 1.0, 0.1, 0.3, 0.7, 0.92, 1.0])
    assert pm.seconds_to_share(timeline, "hot_on_dram", after=4.0) == 3.0


def test_seconds_to_share_skips_samples_without_the_key():
    timeline = [{"t": 0.0}, {"t": 1.0, "x": 0.95}]
    assert pm.seconds_to_share(timeline, "x") == 1.0


def test_seconds_to_drop_needs_a_rise_above_the_limit_after_the_move():
    timeline = [{"t": 1.0, "cold_on_dram": 0.0}, {"t": 2.0, "cold_on_dram": 0.11},
                {"t": 5.0, "cold_on_dram": 0.05}, {"t": 9.0, "cold_on_dram": 0.0}]
    assert pm.seconds_to_drop(timeline, "cold_on_dram", 0.01, after=1.5) == 7.5
    assert pm.seconds_to_drop(timeline[:3], "cold_on_dram", 0.01, after=1.5) is None  # still on DRAM
    # Never above the limit (the old hot set never reached DRAM): not "demoted at once".
    assert pm.seconds_to_drop([{"t": 2.0, "cold_on_dram": 0.0}], "cold_on_dram", 0.01, after=1.0) is None


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert pm.percentile(values, 0.99) == 99
    assert pm.percentile(values, 0.5) == 50
    assert pm.percentile([7], 0.99) == 7
    assert pm.percentile([], 0.99) is None


def test_p99_of_a_short_run_is_its_slowest_iteration():
    # 50 values: ceil(0.99 * 50) = 50th, the largest: one stall shows, it is never averaged away
    durations = [0.01] * 49 + [0.5]
    stats = pm.iteration_stats(durations, 10.0)
    assert stats == {"iterations": 50, "iterations_per_s": 5.0, "p99_ms": 500.0}


def test_iteration_stats_of_nothing():
    assert pm.iteration_stats([], 0) == {"iterations": 0, "iterations_per_s": None, "p99_ms": None}


def test_parse_vmstat_and_delta_sums_the_demotion_sources():
    before = pm.parse_vmstat("numa_hint_faults 10\npgpromote_success 0\npgdemote_kswapd 5\npgdemote_direct 1\n"
                             "numa_pages_migrated 3\nnr_free_pages 100\n")
    after = pm.parse_vmstat("numa_hint_faults 25\npgpromote_success 7\npgdemote_kswapd 9\npgdemote_direct 1\n"
                            "numa_pages_migrated 10\nnr_free_pages 50\n")
    delta = pm.vmstat_delta(before, after)
    assert delta == {"numa_hint_faults": 15, "pgpromote_success": 7, "pgdemote_kswapd": 4, "pgdemote_direct": 0,
                     "numa_pages_migrated": 7, "pgdemote": 4}


def test_vmstat_delta_leaves_out_counters_the_kernel_lacks():
    delta = pm.vmstat_delta({"numa_hint_faults": 1}, {"numa_hint_faults": 1})
    assert delta == {"numa_hint_faults": 0}
    assert "pgdemote" not in delta


def test_cpu_ticks_of_stat_survives_spaces_and_parentheses_in_the_name():
    # fields after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = "1234 (odd (name) x) S 1 1 1 0 -1 4194560 10 0 0 0 250 70 0 0 20 0 1 0 100 0 0"
    assert pm.cpu_ticks_of_stat(stat) == 320
    assert pm.cpu_ticks_of_stat(stat, system_only=True) == 70


def test_cpu_seconds_keeps_what_ended_threads_used():
    assert pm.cpu_seconds({11: 150, 12: 50}, hertz=100) == 2.0


def test_cpu_seconds_counts_only_the_run_of_a_task_that_ran_before():
    # kdamond 11 belonged to another tool and had 30000 ticks already; 12 started with the run
    assert pm.cpu_seconds({11: 30050, 12: 50}, hertz=100, baseline={11: 30000}) == 1.0


def test_quota_held_only_judges_samples_after_settling():
    timeline = [{"t": 0.0, "tenants_dram_pages": 9000}, {"t": 50.0, "tenants_dram_pages": 8192},
                {"t": 51.0, "tenants_dram_pages": 8192 + 1024}]
    assert pm.quota_held(timeline, 8192, 1024, 50) is True
    timeline.append({"t": 52.0, "tenants_dram_pages": 8192 + 1025})
    assert pm.quota_held(timeline, 8192, 1024, 50) is False
    assert pm.quota_held(timeline, 8192, 1024, 100) is None


def test_priority_held_needs_the_high_tenant_ahead_on_every_late_sample():
    timeline = [{"t": 10.0, "high_hot_on_dram": 0.2, "low_hot_on_dram": 0.5},
                {"t": 50.0, "high_hot_on_dram": 1.0, "low_hot_on_dram": 0.3}]
    assert pm.priority_held(timeline, 50) is True
    assert pm.priority_held(timeline, 0) is False


def test_steady_cpu_is_the_rate_from_the_first_sample_after_the_start_cost():
    samples = [{"t": 0.0, "agent_cpu_s": 0.0}, {"t": 5.0, "agent_cpu_s": 0.6}, {"t": 20.0, "agent_cpu_s": 0.8},
               {"t": 21.0}, {"t": 60.0, "agent_cpu_s": 1.6}]
    assert pm.steady_cpu_percent(samples) == 2.0  # 0.8 s of CPU in the 40 s from 20 s on
    assert pm.steady_cpu_percent(samples, after=0.0) == round(100 * 1.6 / 60, 2)
    assert pm.steady_cpu_percent(samples[:3]) is None
    assert pm.steady_cpu_percent([{"t": 30.0}, {"t": 40.0}]) is None


def test_summarize_and_render_a_run_and_a_skipped_one():
    run = {"peer": "d tierd (DAMON)", "workload": "W2", "goal_key": "hot_on_dram", "moved_at": 2.0,
           "samples": [{"t": 0.0, "hot_on_dram": 0.0, "cold_on_dram": 0.0},
                       {"t": 1.0, "hot_on_dram": 0.95, "cold_on_dram": 0.02},
                       {"t": 2.0, "hot_on_dram": 0.1, "cold_on_dram": 0.1},
                       {"t": 3.0, "hot_on_dram": 0.91, "cold_on_dram": 0.05}],
           "durations": [0.01, 0.02], "elapsed": 4.0, "agent_cpu_s": 1.25,
           "vmstat": {"numa_hint_faults": 0, "pgpromote_success": 0, "numa_pages_migrated": 0}}
    summary = pm.summarize(run)
    assert summary["to_90"] == 1.0
    assert summary["to_90_after_move"] == 1.0
    assert summary["cold_promoted_peak"] == 0.1
    assert summary["cold_promoted_end"] == 0.05
    skipped = pm.summarize({"peer": "e tierd (page_idle)", "workload": "W2", "skipped": "kernel has no page_idle"})
    table = pm.render_table([summary, skipped]).splitlines()
    assert table[0] == pm.TABLE_HEAD
    assert len(table) == 4
    columns = table[0].count("|")
    assert all(line.count("|") == columns for line in table)
    assert "| W2 | d tierd (DAMON) | 1.0 s | 1.0 s | - | 91 % | 10 % / 5 % | 1.25 s | - | 0.5 | 20.0 ms | 0 | 0 | - | 0 | - | - | - |" \
        in table
    assert "skipped: kernel has no page_idle" in table[3]
    run["agent_system_s"] = 0.5
    run["buffer_moves"] = {"promoted": 7, "demoted": 5, "hot_demoted": 2}
    row = pm.render_table([pm.summarize(run)]).splitlines()[2]
    assert "| 1.25 s (system 0.5 s) |" in row
    assert row.endswith("| 7 / 5 (2) | - | - |")
    run["other_moves"] = {"[heap]": {"promoted": 3, "demoted": 4, "hot_demoted": 0}, "anon": {"promoted": 1}}
    assert pm.render_table([pm.summarize(run)]).splitlines()[2].endswith("| 7 / 5 (2) | 4 / 4 | - |")


def test_buffer_moves_counts_each_direction_and_the_hot_pages_demoted():
    dram, pmem = 0, 1
    before = [pmem, pmem, dram, dram, dram, -2]
    after = [dram, pmem, pmem, pmem, dram, dram]  # -2: not present before, so not a promotion
    assert pm.buffer_moves(before, after, {2, 4}, dram, pmem) == {"promoted": 1, "demoted": 2, "hot_demoted": 1}
    assert pm.buffer_moves(after, after, {0}, dram, pmem) == {"promoted": 0, "demoted": 0, "hot_demoted": 0}


def test_render_table_shows_the_tenants_quota():
    run = {"peer": "d tierd (DAMON)", "workload": "W3", "goal_key": "high_hot_on_dram",
           "samples": [{"t": 50.0, "hot_on_dram": 0.6, "high_hot_on_dram": 1.0, "low_hot_on_dram": 0.2,
                        "tenants_dram_pages": 8000}],
           "durations": [], "elapsed": 60.0, "budget_pages": 8192, "slack_pages": 1024, "settle_seconds": 50}
    row = pm.render_table([pm.summarize(run)]).splitlines()[2]
    assert row.endswith("| budget yes, priority yes |")


MAPS = """55d0c0000000-55d0c0021000 r--p 00000000 fe:01 1234   /usr/bin/python3.13
55d0c1000000-55d0c1400000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]
"""


def test_other_mappings_leaves_out_the_buffer_vsyscall_and_huge_reservations():
    mappings = pm.other_mappings(MAPS, 0x7f0000000000, 4096, max_pages=4096)
    assert mappings == [(0x55d0c0000000, 0x55d0c0021000, "/usr/bin/python3.13"),
                        (0x55d0c1000000, 0x55d0c1400000, "[heap]"),
                        (0x7f1000000000, 0x7f1000100000, "anon"),
                        (0x7ffd00000000, 0x7ffd00021000, "[stack]")]
    # The 64 MiB anonymous mapping is the buffer here; as another mapping it is over max_pages.
    assert (0x7f0000000000, 0x7f0004000000, "anon") not in pm.other_mappings(MAPS, 0, 4096, max_pages=4096)


def test_migrations_of_trace_sums_pages_by_reason_and_task():
    trace = "\n".join([
        "# tracer: nop",
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
        "   python3-812     [001] ..... 101.5: mm_migrate_pages: nr_succeeded=3 nr_failed=0 nr_thp_succeeded=0 "
        "nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_ASYNC reason=numa_misplaced",
        "   python3-812     [001] ..... 102.5: mm_migrate_pages: nr_succeeded=2 nr_failed=1 nr_thp_succeeded=0 "
        "nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_ASYNC reason=numa_misplaced",
        " systemd-journal-201 [000] ..... 103.0: mm_migrate_pages: nr_succeeded=1 nr_failed=0 mode=MIGRATE_ASYNC "
        "reason=numa_misplaced",
        "   kswapd0-40      [000] ..... 104.0: mm_migrate_pages: nr_succeeded=0 nr_failed=4 mode=MIGRATE_ASYNC "
        "reason=demotion",
        "     <...>-999     [000] ..... 105.0: mm_migrate_pages: nr_succeeded=7 nr_failed=0 mode=MIGRATE_ASYNC "
        "reason=demotion",
    ])
    assert pm.migrations_of_trace(trace) == {"numa_misplaced python3 812": 5,
                                             "numa_misplaced systemd-journal 201": 1, "demotion <...> 999": 7}


def test_a_damos_pattern_fits_the_kernels_fields():
    pattern = pm.damos_access_pattern(4096, (4, 20), 5)
    assert pattern["nr_accesses"] == (4, 20)
    assert pattern["age"][0] == 5 and pattern["sz"][0] == 4096
    # nr_accesses and age are unsigned int in struct damos_access_pattern: a wider maximum wraps.
    assert pattern["age"][1] == 2 ** 32 - 1
    assert pm.damos_access_pattern(4096, (0, 2 ** 40), 0)["nr_accesses"][1] == 2 ** 32 - 1
    assert pattern["sz"][1] < 2 ** 64
