"""Soft-dirty write signal in the lab: written pages are promoted, equally hot read-only ones are not.

    soft_dirty_test.py SRC_DIR   (run as root in a trixie nvdimm guest; run.sh calls it after guest_test.py)

Two workloads of 64 MiB on PMEM touch every page all the time: `wlr` only reads, `wlw` writes.
DAMON sees both as accessed, though well below frequency 1.0 under TCG: x86 clears the accessed
bit without a TLB flush, and QEMU's software TLB holds all 16384 pages, so a page sets its bit
again only after the next flush (measured in the guest: 2 to 7 of 10 samples per aggregation,
changing from one aggregation to the next, for both workloads). So the thresholds leave DAMON's
frequency out of the verdict: tierd runs with heat.soft_dirty on, write_weight 1.0 and
hot_threshold 1.05; reads alone top out at 1.0, so only written pages can get that hot, and the
read-only workload is the control. Checks:
1. control, soft-dirty off, hot_threshold 0.15, dry run: tierd plans to promote >= 90 % of BOTH
   workloads (DAMON sees the reads as well as the writes);
2. soft-dirty on: from move_pages status queries of the workloads' pages, >= 90 % of wlw on DRAM
   and >= 90 % of wlr still on PMEM.
Prints one JSON line; exit 1 on failure.
"""

import json
import os
import subprocess
import sys
import time

SRC = sys.argv[1] if len(sys.argv) > 1 else "/opt/t"
HERE = os.path.join(SRC, "tests", "lab", "tierd")
sys.path.insert(0, HERE)

import guest_test as base  # noqa: E402  (the lab test's log and placement)

DRAM, PMEM = base.DRAM, base.PMEM
log, placement = base.log, base.placement
INTERVALS = int(os.environ.get("TIERD_LAB_SOFT_DIRTY_INTERVALS", "12"))
CONFIG = {
    "interval_seconds": 3,
    "tiering_mode": "tierd",  # tierd's own promotions are under test
    "backend": "damon",
    "damon": {"sample_us": 200000, "aggr_us": 2000000, "min_nr_regions": 10, "max_nr_regions": 100},
    "heat": {"decay": 0.5, "hot_threshold": 1.05, "cold_threshold": 0.05, "warmup_intervals": 2,
             "soft_dirty": True, "write_weight": 1.0},
    "mover": {"batch_pages": 1024, "rate_limit_mbps": 256, "min_residency_intervals": 3},
    "state_file": "/run/tierd-soft-dirty/state.json",
    "workloads": [
        {"name": "wlr", "match": {"cmdline": r"workload\.py .*wlr\.json"}, "vmas": {"min_size": "32M"},
         "policy": {"direction": "promote"}},
        {"name": "wlw", "match": {"cmdline": r"workload\.py .*wlw\.json"}, "vmas": {"min_size": "32M"},
         "policy": {"direction": "promote"}},
    ],
}


def tierd_once(config, extra):
    """State after INTERVALS intervals of `tierd once` with ``config``, and tierd's log."""
    path = "/run/tierd-soft-dirty.json"
    with open(path, "w") as out:
        json.dump(config, out)
    env = dict(os.environ, PYTHONPATH=os.path.join(SRC, "tierd"))
    run = subprocess.run([sys.executable, "-m", "tierd", "once", "-c", path, "-n", str(INTERVALS), "--json"] + extra,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if run.returncode != 0:
        raise SystemExit("tierd once failed (rc %d): %s" % (run.returncode, run.stderr[-1500:]))
    return json.loads(run.stdout), run.stderr


def main():
    subprocess.run(["sh", os.path.join(HERE, "online_pmem.sh")], check=True, stdout=subprocess.DEVNULL)
    workloads = {}
    for name, extra in (("wlr", []), ("wlw", ["--write"])):
        info = "/run/%s.json" % name
        if os.path.exists(info):
            os.unlink(info)
        workloads[name] = (info, subprocess.Popen(
            ["python3", os.path.join(HERE, "workload.py"), "--size-mib", "64", "--hot-percent", "100",
             "--node", str(PMEM), "--info", info] + extra, stdout=subprocess.DEVNULL))
    results = {}
    try:
        deadline = time.time() + 300
        while not all(os.path.exists(info) for info, _proc in workloads.values()):
            if time.time() > deadline:
                raise SystemExit("workloads did not start")
            time.sleep(1)
        control = dict(CONFIG, heat=dict(CONFIG["heat"], soft_dirty=False, hot_threshold=0.15))
        state, stderr = tierd_once(control, ["--dry-run"])
        planned = {name: wl["planned_promote"] for name, wl in state["workloads"].items()}
        results["control_planned_promote"] = planned
        log("control (no soft-dirty, hot_threshold 0.15, dry run): planned promotions %s of 16384 pages each" % planned)
        if min(planned.values()) < 0.9 * 16384:
            raise SystemExit("FAIL: control: DAMON did not see both workloads as hot: %s\nstate: %s\ntierd log:\n%s"
                             % (planned, json.dumps(state["workloads"]), stderr[-4000:]))
        state, stderr = tierd_once(CONFIG, [])
        read, written = placement(workloads["wlr"][0]), placement(workloads["wlw"][0])
        results.update({"intervals": INTERVALS, "backend": state["backend"], "wlr": read, "wlw": written,
                        "promoted": {name: wl["promoted_total"] for name, wl in state["workloads"].items()}})
        print(json.dumps(results), flush=True)
        log("written workload on DRAM %d/%d, read-only workload on PMEM %d/%d" % (
            written["pages"] - written["on_pmem"], written["pages"], read["on_pmem"], read["pages"]))
        if state["backend"] != "damon" or "event=start backend=damon" not in stderr:
            raise SystemExit("tierd did not run on DAMON: %s" % stderr[:500])
        if written["on_pmem"] > 0.1 * written["pages"]:
            raise SystemExit("FAIL: written pages not promoted: %s" % written)
        if read["on_pmem"] < 0.9 * read["pages"]:
            raise SystemExit("FAIL: read-only pages promoted although reads alone stay below hot_threshold: %s" % read)
    finally:
        for _info, proc in workloads.values():
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
