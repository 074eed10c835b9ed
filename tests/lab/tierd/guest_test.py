"""tierd lab test, run as root inside a trixie nvdimm guest (run.sh copies it in and calls it).

    guest_test.py SRC_DIR   (SRC_DIR holds tierd/ and tests/lab/tierd/ of the repository)
    TIERD_LAB_BACKEND=damon (default) | page_idle: the tracking backend tierd is configured with;
    page_idle needs a guest kernel with CONFIG_IDLE_PAGE_TRACKING (lab/kernel/build.sh).

1. onlines the pmem as a CPU-less node, installs tierd and a hardened unit, starts two workloads
   bound to PMEM: wl1 (hot 20 %, policy direction both) and wl2 (policy pmem_max_percent 30);
2. waits (bounded by tierd intervals and wall time) until >= 90 % of wl1's hot pages are on DRAM
   while >= 90 % of its cold pages stay on PMEM, and wl2 has <= 30 % (+ one batch) on PMEM;
3. kill -9 tierd: systemd restarts it (with DAMON it takes back its own kdamond), placement
   holds, the workloads' memory checksums are unchanged;
4. systemctl stop: no kdamond is left (DAMON released; page_idle never started one).
The start lines of both tierd processes must name the backend asked for.
Prints one JSON line of measurements and exits non-zero on the first failed check.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

SRC = sys.argv[1] if len(sys.argv) > 1 else "/opt/t"
HERE = os.path.join(SRC, "tests", "lab", "tierd")
DRAM, PMEM = 0, 1
BATCH = 1024
INTERVAL = 3
MAX_INTERVALS = int(os.environ.get("TIERD_LAB_MAX_INTERVALS", "40"))
WALL_LIMIT = int(os.environ.get("TIERD_LAB_WALL_SECONDS", "900"))
HOT_FRACTION = float(os.environ.get("TIERD_LAB_HOT_FRACTION", "0.9"))
# wl1's and wl2's sizes: TCG fills CXL memory at ~0.5 MiB/s (LAB-NOTES), so run.sh makes them small there.
WL1_MIB, WL2_MIB = (int(x) for x in os.environ.get("TIERD_LAB_WORKLOAD_MIB", "256 128").split())
MIN_VMA = "%dM" % (min(WL1_MIB, WL2_MIB) // 2)
BACKENDS = ("damon", "page_idle")
BACKEND = os.environ.get("TIERD_LAB_BACKEND", "damon")
PAGE_IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"
NR_KDAMONDS = "/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds"
CONFIG = {
    "interval_seconds": INTERVAL,
    # tierd's own placement is under test: it promotes by heat, and nobody else moves pages here.
    "tiering_mode": "tierd",
    "backend": BACKEND,
    "damon": {"sample_us": 200000, "aggr_us": 2000000, "min_nr_regions": 10, "max_nr_regions": 1000},
    "heat": {"decay": 0.5, "hot_threshold": 0.25, "cold_threshold": 0.05, "warmup_intervals": 2},
    "mover": {"batch_pages": BATCH, "rate_limit_mbps": 64, "min_residency_intervals": 3},
    "metrics": {"textfile": "/run/tierd/metrics/tierd.prom"},
    "state_file": "/run/tierd/state.json",
    "workloads": [
        {"name": "wl1", "match": {"cmdline": r"workload\.py .*wl1\.json"}, "vmas": {"min_size": MIN_VMA},
         "policy": {"direction": "both", "priority": 10}},
        {"name": "wl2", "match": {"cmdline": r"workload\.py .*wl2\.json"}, "vmas": {"min_size": MIN_VMA},
         "policy": {"pmem_max_percent": 30, "priority": 5}},
        {"name": "bystander", "match": {"comm": "^sshd$"}},
    ],
}
results = {}


def log(msg):
    # Prefixed with the script that runs (demotion_test, topology_test... import these helpers).
    print("%s: %s" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], msg), file=sys.stderr, flush=True)


def fail(msg):
    results["failed"] = msg
    print(json.dumps(results), flush=True)
    log("FAIL: " + msg)
    sys.exit(1)


def sh(cmd, check=True):
    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    if check and proc.returncode != 0:
        fail("%s → rc %d: %s" % (cmd, proc.returncode, proc.stdout.strip()[-800:]))
    return proc.stdout.strip()


def placement(info_file):
    return json.loads(sh("python3 %s/placement.py %s %d %d" % (HERE, info_file, DRAM, PMEM)))


def info(info_file):
    with open(info_file) as handle:
        return json.load(handle)


def tierd_intervals():
    try:
        with open("/run/tierd/state.json") as handle:
            return json.load(handle)["intervals"]
    except (OSError, ValueError, KeyError):
        return 0


def start_line(pid=None):
    """tierd's start log line (of one process), which must name the backend this test asked for."""
    journal = "journalctl -u tierd-lab.service -o cat" + (" _PID=%d" % pid if pid else "")
    line = sh(journal + " | grep -m1 'event=start'", check=False)
    if "backend=%s" % BACKEND not in line.split():
        fail("tierd%s did not start with backend=%s: start line %r" % (" %d" % pid if pid else "", BACKEND, line))
    return line


def nr_kdamonds():
    try:
        with open(NR_KDAMONDS) as handle:
            return int(handle.read())
    except OSError:
        return 0


def main_pid():
    return int(sh("systemctl show -p MainPID --value tierd-lab.service") or 0)


def goals(p1, p2):
    hot_ok = p1["hot_on_dram"] >= HOT_FRACTION * p1["hot_pages"]
    cold_ok = p1["cold_on_pmem"] >= 0.9 * p1["cold_pages"]
    quota_ok = p2["on_pmem"] <= int(0.30 * p2["pages"]) + BATCH
    return hot_ok, cold_ok, quota_ok


def install():
    if BACKEND not in BACKENDS:
        fail("TIERD_LAB_BACKEND=%r: choose one of %s" % (BACKEND, ", ".join(BACKENDS)))
    if BACKEND == "page_idle" and not os.path.exists(PAGE_IDLE_BITMAP):
        fail("backend page_idle needs %s, which kernel %s lacks (no CONFIG_IDLE_PAGE_TRACKING): boot the "
             "guest with a lab kernel (run.sh does with TIERD_LAB_KERNEL or lab/kernel/build.sh)"
             % (PAGE_IDLE_BITMAP, os.uname().release))
    results["backend"] = BACKEND
    results["kernel"] = os.uname().release
    sh("sh %s/online_pmem.sh" % HERE)
    lib = "/usr/local/lib/tierd"
    shutil.rmtree(lib, ignore_errors=True)
    shutil.copytree(os.path.join(SRC, "tierd", "tierd"), os.path.join(lib, "tierd"))
    shutil.copy(os.path.join(SRC, "tierd", "bin", "tierd"), "/usr/local/sbin/tierd")
    os.chmod("/usr/local/sbin/tierd", 0o755)
    os.makedirs("/etc/tierd", exist_ok=True)
    with open("/etc/tierd/config.json", "w") as out:
        json.dump(CONFIG, out, indent=1)
    results["check_config"] = sh("/usr/local/sbin/tierd check-config /etc/tierd/config.json")
    shutil.copy(os.path.join(HERE, "tierd-lab.service"), "/etc/systemd/system/tierd-lab.service")
    dropin = "/etc/systemd/system/tierd-lab.service.d"
    shutil.rmtree(dropin, ignore_errors=True)
    if BACKEND == "page_idle":
        # pagemap hides PFNs from readers without CAP_SYS_ADMIN, and page_idle needs the PFNs.
        os.makedirs(dropin)
        shutil.copy(os.path.join(HERE, "tierd-lab-page-idle.conf"), os.path.join(dropin, "page-idle.conf"))
    sh("systemctl daemon-reload")


def start_workload(name, size_mib, hot_percent):
    info_file = "/run/%s.json" % name
    if os.path.exists(info_file):
        os.unlink(info_file)
    subprocess.Popen(["python3", os.path.join(HERE, "workload.py"), "--size-mib", str(size_mib),
                      "--hot-percent", str(hot_percent), "--node", str(PMEM), "--info", info_file],
                     stdout=subprocess.DEVNULL, stderr=open("/run/%s.log" % name, "w"), start_new_session=True)
    return info_file


def wait_for_files(paths, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if all(os.path.exists(p) for p in paths):
            return
        time.sleep(1)
    fail("workloads did not start within %d s: %s" % (seconds, [p for p in paths if not os.path.exists(p)]))


def converge(wl1, wl2, label):
    began = time.time()
    while True:
        p1, p2 = placement(wl1), placement(wl2)
        n = tierd_intervals()
        hot_ok, cold_ok, quota_ok = goals(p1, p2)
        log("%s: interval %d  wl1 hot on DRAM %d/%d, cold on PMEM %d/%d  wl2 on PMEM %d/%d" % (
            label, n, p1["hot_on_dram"], p1["hot_pages"], p1["cold_on_pmem"], p1["cold_pages"],
            p2["on_pmem"], p2["pages"]))
        if not cold_ok:
            fail("%s: wl1 cold pages left PMEM: %s" % (label, p1))
        if hot_ok and quota_ok:
            results[label] = {"intervals": n, "seconds": round(time.time() - began, 1), "wl1": p1, "wl2": p2}
            return
        if n >= MAX_INTERVALS or time.time() - began > WALL_LIMIT:
            fail("%s: not converged after %d tierd intervals / %.0f s: wl1 %s wl2 %s" % (
                label, n, time.time() - began, p1, p2))
        time.sleep(INTERVAL)


def main():
    install()
    wl1 = start_workload("wl1", WL1_MIB, 20)
    wl2 = start_workload("wl2", WL2_MIB, 10)
    wait_for_files([wl1, wl2], 600)
    for name, path in (("wl1", wl1), ("wl2", wl2)):
        p = placement(path)
        if p["on_pmem"] != p["pages"]:
            fail("%s did not start fully on PMEM: %s" % (name, p))
    results["sha256"] = {"wl1": info(wl1)["sha256"], "wl2": info(wl2)["sha256"]}
    if BACKEND == "page_idle":
        # Measured, not asserted: marking idle does not flush the TLB (LAB-NOTES), so this shows how
        # many of wl1's touched pages the kernel reports as accessed one tierd interval later.
        results["idle_probe"] = json.loads(sh("python3 %s/idle_probe.py %s %d" % (HERE, wl1, INTERVAL)))
        log("idle probe: %s" % results["idle_probe"])

    for stale in ("/run/tierd/state.json", "/run/tierd/damon-owner.json"):
        if os.path.exists(stale):
            os.unlink(stale)
    sh("systemctl start tierd-lab.service")
    converge(wl1, wl2, "converged")
    results["backend_line"] = start_line()
    if BACKEND == "page_idle" and nr_kdamonds():
        fail("backend page_idle, yet %d DAMON kdamonds exist" % nr_kdamonds())
    results["status"] = sh("/usr/local/sbin/tierd status -c /etc/tierd/config.json")

    # kill -9: systemd restarts tierd, which takes back its own leftover kdamond.
    old = main_pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.time() + 120
    while time.time() < deadline and main_pid() in (0, old):
        time.sleep(1)
    new = main_pid()
    if new in (0, old):
        fail("systemd did not restart tierd after kill -9 (MainPID %d)" % new)
    results["restarts"] = int(sh("systemctl show -p NRestarts --value tierd-lab.service"))
    deadline = time.time() + 180
    intervals_logged = "journalctl -u tierd-lab.service -o cat _PID=%d | grep -c event=interval" % new
    while time.time() < deadline and sh(intervals_logged, check=False) in ("", "0", "1"):
        time.sleep(2)
    journal = sh("journalctl -u tierd-lab.service -o cat _PID=%d" % new, check=False)
    results["restart_backend_line"] = start_line(new)
    if BACKEND == "damon" and "event=damon_adopted" not in journal:
        fail("restarted tierd did not take back its kdamond: %s" % journal[-1500:])
    if sh("systemctl is-active tierd-lab.service", check=False) != "active":
        fail("tierd not active after restart: %s" % journal[-1500:])
    converge(wl1, wl2, "after_kill9")

    results["metrics_sample"] = sh("grep tierd_pages_moved_total /run/tierd/metrics/tierd.prom")

    sh("systemctl stop tierd-lab.service")
    results["nr_kdamonds_after_stop"] = nr_kdamonds()
    if results["nr_kdamonds_after_stop"] != 0:
        fail("tierd left %d kdamonds after stop" % results["nr_kdamonds_after_stop"])
    results["stop_line"] = sh("journalctl -u tierd-lab.service -o cat | grep 'event=stop' | tail -1")
    # Checksums last: hashing pauses the hot loop for long under TCG, which tierd would rightly see as idle.
    for path in (wl1, wl2):
        before = info(path)["checks"]
        os.kill(info(path)["pid"], signal.SIGUSR1)
        deadline = time.time() + 120
        while time.time() < deadline and info(path).get("checks", 0) == before:
            time.sleep(1)
        data = info(path)
        if data.get("sha256_now") != data["sha256"]:
            fail("%s memory changed: %s != %s" % (path, data.get("sha256_now"), data["sha256"]))
    results["checksums"] = "unchanged"
    for path in (wl1, wl2):
        os.kill(info(path)["pid"], signal.SIGTERM)
    results["passed"] = True
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
