"""Demotion end to end: a workload that starts on DRAM under a DRAM budget, then its hot set moves.

    demotion_test.py SRC_DIR   (run as root in a trixie nvdimm guest; run.sh calls it after guest_test.py)

`wld` (128 MiB, 10 % hot, read in a loop) is faulted in on DRAM, and tierd runs with
`dram_budget: 40M` and `direction: both`, so every page it moves is a demotion at first:
1. converge: the workload's DRAM use within the budget (+ one batch), >= 90 % of its hot pages
   still on DRAM, and <= 10 % of its cold pages left on DRAM (the rest demoted);
2. SIGUSR2 moves the hot part to the next 10 % of the buffer (workload.py); the new hot set is
   promoted and the old one demoted again: intervals and seconds until the same holds for the new
   hot and cold sets and at least half the old hot set is back on PMEM;
3. together with the kernel: `kernel.numa_balancing=2` and demotion on, tierd restarted with
   `tiering_mode: auto`, whose start line must say `mode=kernel_promotes` with no conflict warning;
   the hot set moves once more, the kernel promotes it (hint faults, /proc/vmstat
   pgpromote_success) and tierd holds the budget and demotes the old hot set: the same checks;
4. demotion by the kernel's multi-gen LRU: every page back on DRAM (migratepages), tierd again beside
   the kernel, now with `mover.demote_with: lru_gen` and the workload matched by its cgroup (it runs
   in one of its own from the start): tierd ages the cgroup's generations each interval and the
   pages idle for 3 intervals are demoted: the same checks as phase 1 (budget, >= 90 % of the hot
   set kept on DRAM, <= 10 % of the cold set left there), the log says
   `event=demotion_method workload=wld method=lru_gen` once and `event=evicted_idle` with pages
   demoted, and tierd moved no page itself (no `direction=demote`);
5. the workload's checksum is unchanged; numa_balancing is set back to what it was.
tierd runs as `tierd run` under this script (not the lab unit guest_test.py used). Prints one
JSON line of measurements; exit 1 on the first failed check.
"""

import json
import os
import signal
import subprocess
import sys
import time

SRC = sys.argv[1] if len(sys.argv) > 1 else "/opt/t"
HERE = os.path.join(SRC, "tests", "lab", "tierd")
sys.path.insert(0, HERE)

import guest_test as base  # noqa: E402  (the lab test's log, fail, placement and results)

DRAM, PMEM = base.DRAM, base.PMEM
INTERVAL = 3
BATCH = 1024
SIZE_MIB, HOT_PERCENT, BUDGET_MIB = 128, 10, 40
BUDGET_PAGES = BUDGET_MIB << 20 >> 12
MAX_INTERVALS = int(os.environ.get("TIERD_LAB_DEMOTION_INTERVALS", "40"))
STATE = "/run/tierd-demotion/state.json"
CGROUP = "/tierd-demotion-wld"
CONFIG = {
    "interval_seconds": INTERVAL,
    "tiering_mode": "tierd",  # tierd's own promotions and demotions are under test
    "backend": "damon",
    "damon": {"sample_us": 200000, "aggr_us": 2000000, "min_nr_regions": 10, "max_nr_regions": 1000},
    "heat": {"decay": 0.5, "hot_threshold": 0.25, "cold_threshold": 0.05, "warmup_intervals": 2},
    "mover": {"batch_pages": BATCH, "rate_limit_mbps": 64, "min_residency_intervals": 3},
    "dram_budget": "%dM" % BUDGET_MIB,
    "state_file": STATE,
    "workloads": [
        {"name": "wld", "match": {"cmdline": r"workload\.py .*wld\.json"}, "vmas": {"min_size": "64M"},
         "policy": {"direction": "both"}},
    ],
}
log, fail, placement, results = base.log, base.fail, base.placement, base.results


def read_json(path, default=None):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def intervals():
    return (read_json(STATE) or {}).get("intervals", 0)


def wait_until(label, info_file, tierd, ok):
    """Poll placement once per interval until ``ok(p)``: {intervals, seconds, placement}."""
    began, first = time.time(), intervals()
    while True:
        if tierd.poll() is not None:
            fail("%s: tierd exited (rc %s); log in /run/tierd-demotion-*.log" % (label, tierd.returncode))
        p, n = placement(info_file), intervals()
        log("%s: interval %d  on DRAM %d/%d (budget %d pages)  hot on DRAM %d/%d  cold on DRAM %d/%d%s" % (
            label, n, p["on_dram"], p["pages"], BUDGET_PAGES, p["hot_on_dram"], p["hot_pages"],
            p["cold_on_dram"], p["cold_pages"],
            "  old hot on DRAM %d" % p["previous_hot_on_dram"] if "previous_hot_on_dram" in p else ""))
        if ok(p):
            return {"intervals": n - first, "seconds": round(time.time() - began, 1), "placement": p}
        if n - first >= MAX_INTERVALS:
            fail("%s: not reached after %d tierd intervals / %.0f s: %s" % (label, n - first, time.time() - began, p))
        time.sleep(INTERVAL)


def placed(p):
    # The accuracy target: >= 90 % of the hot set on DRAM, <= 10 % of the cold set there. After
    # a move also >= half the old hot set back on PMEM, which neither that nor the budget forces. Not
    # more: with THP the old and the new hot set share a 2 MiB block, which rightly stays (408 pages
    # here), and DAMON's region edges keep one more block (920 of 3276 left in one guest run).
    return (p["on_dram"] <= BUDGET_PAGES + BATCH and p["hot_on_dram"] >= 0.9 * p["hot_pages"]
            and p["cold_on_dram"] <= 0.1 * p["cold_pages"]
            and p.get("previous_hot_on_dram", 0) <= 0.5 * p["hot_pages"])


def vmstat(*keys):
    values = {}
    with open("/proc/vmstat") as handle:
        for line in handle:
            key, _sep, value = line.partition(" ")
            if key in keys:
                values[key] = int(value)
    return values


def write(path, value):
    with open(path, "w") as out:
        out.write(value)


def start_tierd(mode, demote_with=None):
    """tierd in ``mode``; with ``demote_with`` the workload is matched by its cgroup and demoted that way."""
    if os.path.exists(STATE):
        os.unlink(STATE)
    config = dict(CONFIG, tiering_mode=mode)
    if demote_with:
        config.update(mover=dict(CONFIG["mover"], demote_with=demote_with),
                      workloads=[dict(w, match={"cgroup": CGROUP}) for w in CONFIG["workloads"]])
    path = "/run/tierd-demotion.json"
    with open(path, "w") as out:
        json.dump(config, out)
    logfile = "/run/tierd-demotion-%s%s.log" % (mode, "-" + demote_with if demote_with else "")
    tierd = subprocess.Popen([sys.executable, "-m", "tierd", "run", "-c", path],
                             env=dict(os.environ, PYTHONPATH=os.path.join(SRC, "tierd")),
                             stdout=subprocess.DEVNULL, stderr=open(logfile, "w"))
    return tierd, logfile


def stop_tierd(tierd):
    tierd.send_signal(signal.SIGTERM)
    try:
        tierd.wait(timeout=120)
    except subprocess.TimeoutExpired:
        tierd.kill()
        fail("tierd did not stop within 120 s of SIGTERM")


def move_hot_set(workload, info_file, moves):
    os.kill(workload.pid, signal.SIGUSR2)
    deadline = time.time() + 60
    while (read_json(info_file) or {}).get("hot_moves", 0) < moves:
        if time.time() > deadline:
            fail("the workload did not move its hot set")
        time.sleep(0.5)
    return placement(info_file)["hot_on_dram"]


def kernel_tiering_on():
    """numa_balancing=2 and demotion on; returns the values to write back (restore)."""
    saved = {}
    for path, value in (("/proc/sys/kernel/numa_balancing", "2"), ("/sys/kernel/mm/numa/demotion_enabled", "true")):
        with open(path) as handle:
            saved[path] = handle.read().strip()
        write(path, value)
    return saved


def restore(saved):
    for path, value in saved.items():
        write(path, value)


def together(workload, info_file):
    """Phase 3: the kernel promotes (numa_balancing=2), tierd in auto mode holds the budget."""
    saved, tierd = kernel_tiering_on(), None
    try:
        tierd, logfile = start_tierd("auto")
        deadline = time.time() + 60
        start = ""
        while time.time() < deadline and "event=start" not in start:
            time.sleep(1)
            with open(logfile) as handle:
                start = handle.read()
        line = next((l for l in start.splitlines() if "event=start" in l), "")
        results["together_start_line"] = line
        if "mode=kernel_promotes" not in line.split():
            fail("tierd with tiering_mode auto beside numa_balancing=2 did not choose kernel_promotes: %r" % line)
        before = vmstat("numa_hint_faults", "pgpromote_success", "pgdemote_direct", "pgdemote_kswapd")
        results["together_new_hot_on_dram_at_move"] = move_hot_set(workload, info_file, 2)
        results["together"] = wait_until("kernel promotes, tierd budgets", info_file, tierd, placed)
        after = vmstat("numa_hint_faults", "pgpromote_success", "pgdemote_direct", "pgdemote_kswapd")
        results["together"]["vmstat"] = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        stop_tierd(tierd)
        with open(logfile) as handle:
            log_text = handle.read()
        if "tiering_mode_conflict" in log_text:
            fail("tierd warned of a tiering-mode conflict beside numa_balancing=2: %s" % log_text[-1500:])
        if results["together"]["vmstat"].get("pgpromote_success", 0) == 0:
            fail("the kernel promoted nothing with numa_balancing=2: %s" % results["together"])
    finally:
        if tierd is not None and tierd.poll() is None:
            stop_tierd(tierd)
        restore(saved)


def by_lru_gen(workload, info_file):
    """Phase 4: the kernel promotes, tierd ages the workload cgroup's multi-gen LRU and its idle pages are demoted."""
    subprocess.run(["migratepages", str(workload.pid), str(PMEM), str(DRAM)], check=True)
    start = placement(info_file)
    if start["on_dram"] < 0.95 * start["pages"]:
        fail("migratepages did not bring the workload back to DRAM: %s" % start)
    saved, tierd = kernel_tiering_on(), None
    try:
        tierd, logfile = start_tierd("kernel_promotes", demote_with="lru_gen")
        results["lru_gen"] = wait_until("idle pages by the multi-gen LRU", info_file, tierd, placed)
        stop_tierd(tierd)
        with open(logfile) as handle:
            lines = handle.read().splitlines()
        method = [l for l in lines if "event=demotion_method" in l]
        if len(method) != 1 or "method=lru_gen" not in method[0].split():
            fail("tierd with demote_with lru_gen on a cgroup workload did not say method=lru_gen once: %s" % method)
        evicted = [int(field.split("=")[1]) for l in lines if "event=evicted_idle" in l
                   for field in l.split() if field.startswith("demoted=")]
        results["lru_gen"].update(evictions=len(evicted), evicted_demoted=sum(evicted),
                                  reclaims=sum(1 for l in lines if "event=reclaimed" in l))
        if not sum(evicted) or any(" direction=demote " in l for l in lines):
            fail("the demotions were not made by the multi-gen LRU: %s" % results["lru_gen"])
        # The kernel promotes and picks the demotions: tierd gives DAMON no target for the workload.
        tracking = [l for l in lines if "event=tracking" in l]
        sampled = [l for l in lines if "event=damon_tracking" in l and " targets=0 " not in l]
        if len(tracking) != 1 or "by_kernel=wld" not in tracking[0].split() or sampled:
            fail("tierd did not leave the tracking of wld to the kernel: %s %s"
                 % (tracking or "no event=tracking line", sampled[:1]))
    finally:
        if tierd is not None and tierd.poll() is None:
            stop_tierd(tierd)
        restore(saved)


def main():
    subprocess.run(["sh", os.path.join(HERE, "online_pmem.sh")], check=True, stdout=subprocess.DEVNULL)
    info_file = "/run/wld.json"
    if os.path.exists(info_file):
        os.unlink(info_file)
    cgroup = "/sys/fs/cgroup" + CGROUP
    with open("/sys/fs/cgroup/cgroup.subtree_control") as handle:
        if "memory" not in handle.read().split():
            write("/sys/fs/cgroup/cgroup.subtree_control", "+memory")  # for the cgroup's memory.reclaim
    os.makedirs(cgroup, exist_ok=True)

    def into_cgroup():
        # Before the buffer is faulted: pages are charged to the cgroup of the task that faults them.
        write(os.path.join(cgroup, "cgroup.procs"), str(os.getpid()))
    workload = subprocess.Popen(
        ["python3", os.path.join(HERE, "workload.py"), "--size-mib", str(SIZE_MIB), "--hot-percent",
         str(HOT_PERCENT), "--node", str(DRAM), "--unbind", "--info", info_file], stdout=subprocess.DEVNULL,
        preexec_fn=into_cgroup)
    tierd = None
    try:
        deadline = time.time() + 300
        while read_json(info_file) is None:
            if time.time() > deadline or workload.poll() is not None:
                fail("workload did not start")
            time.sleep(1)
        start = placement(info_file)
        if start["on_dram"] != start["pages"]:
            fail("the workload did not start fully on DRAM: %s" % start)
        results["sha256"] = read_json(info_file)["sha256"]
        os.makedirs(os.path.dirname(STATE), exist_ok=True)
        tierd, _logfile = start_tierd("tierd")
        results["demoted"] = wait_until("demote", info_file, tierd, placed)
        results["new_hot_on_dram_at_move"] = move_hot_set(workload, info_file, 1)
        results["followed"] = wait_until("after the move", info_file, tierd, placed)
        stop_tierd(tierd)
        tierd = None
        together(workload, info_file)
        by_lru_gen(workload, info_file)

        before = read_json(info_file)["checks"]
        workload.send_signal(signal.SIGUSR1)
        deadline = time.time() + 120
        while read_json(info_file, {}).get("checks", 0) == before:
            if time.time() > deadline:
                fail("the workload did not recompute its checksum")
            time.sleep(1)
        if read_json(info_file)["sha256_now"] != results["sha256"]:
            fail("the workload's memory changed")
        results["checksum"] = "unchanged"
        results["passed"] = True
        print(json.dumps(results), flush=True)
    finally:
        if tierd is not None and tierd.poll() is None:
            # SIGTERM, so tierd turns its kdamond off: a killed tierd leaves one, and the next run would refuse it.
            stop_tierd(tierd)
        workload.kill()
        workload.wait()
        os.rmdir(cgroup)


if __name__ == "__main__":
    main()
