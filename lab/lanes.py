"""Run make targets in lanes side by side: make test's guest checks, two at a time.

    lab/lanes.py --lane "unit sanity molecule-nvdimm" --lane "molecule-agent tierd-lab"

Each lane runs its targets one after the other (`make --no-print-directory TARGET`), so a lane holds
at most one lab guest at a time and two lanes never hold more than the lab's two (labctl also waits
for a free slot, see LAB_MAX_GUESTS). Every line a target prints goes out as it comes, marked with its
lane and target; a failed target does not stop its lane, so one run shows every failure. At the end
a table gives each target's lane, start, duration and exit status, and the exit status is 1 when any
target failed. A failed target's last lines are printed again under the table: CI keeps only the end of
a long log, and a target that fails in a second would otherwise leave nothing to read there.
A target that fails within QUICK_FAILURE_SECONDS (before it could boot a guest: a host hiccup such as
a package manager lock) runs once more at the end of its lane; the table lists both runs and the first
one's tail, and the second one's exit status is the one that counts.
"""

import argparse
import collections
import os
import subprocess
import sys
import threading
import time

PRINT_LOCK = threading.Lock()
# Lines of a failed target's output repeated under the table.
FAILED_TAIL_LINES = 40
# A guest takes minutes to boot under TCG; a failure sooner than this came from the host, not a check.
QUICK_FAILURE_SECONDS = 15
# Under make test an outer timed.sh stamps every line already; otherwise lanes.py stamps its own.
STAMP = not os.environ.get("TIMED_STAMPING")


def say(text):
    with PRINT_LOCK:
        for line in text.split("\n"):
            sys.stdout.write((time.strftime("%H:%M:%S ") if STAMP else "") + line + "\n")
        sys.stdout.flush()


def run_target(lane, target, env):
    started = time.time()
    say("%s %s: start %s" % (lane, target, time.strftime("%H:%M:%S", time.gmtime(started))))
    proc = subprocess.Popen(["make", "--no-print-directory", target], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True, errors="replace")
    tail = collections.deque(maxlen=FAILED_TAIL_LINES)
    for line in proc.stdout:
        tail.append(line.rstrip("\n"))
        say("%s %s| %s" % (lane, target, tail[-1]))
    code = proc.wait()
    seconds = time.time() - started
    say("%s %s: %.0f s (exit %d)" % (lane, target, seconds, code))
    return {"lane": lane, "target": target, "start": started, "seconds": seconds, "exit": code,
            "tail": list(tail)}


def run_lane(lane, targets, env, results):
    retry = []
    for target in targets:
        result = run_target(lane, target, env)
        results.append(result)
        if result["exit"] != 0 and result["seconds"] < QUICK_FAILURE_SECONDS:
            say("%s %s: failed after %.0f s, before any guest could boot: once more at the end of lane %s"
                % (lane, target, result["seconds"], lane))
            result["retried"] = True
            retry.append(target)
    for target in retry:
        results.append(run_target(lane, target, env))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lane", action="append", required=True, metavar="TARGETS",
                        help="space-separated make targets run in order in one lane (repeat for each lane)")
    args = parser.parse_args(argv)
    lanes = [(chr(ord("A") + i), lane.split()) for i, lane in enumerate(args.lane)]
    # One time stamp per line, in front of the lane prefix: the targets' own timed.sh must not add another.
    env = dict(os.environ, TIMED_STAMPING="1")
    started = time.time()
    results = []
    threads = [threading.Thread(target=run_lane, args=(name, targets, env, results)) for name, targets in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = time.time() - started
    say("\nlanes: %d targets in %d lanes, %.0f s wall clock" % (len(results), len(lanes), total))
    say("%-4s %-28s %-8s %8s  %s" % ("lane", "target", "start", "seconds", "exit"))
    for result in sorted(results, key=lambda r: r["start"]):
        start = time.strftime("%H:%M:%S", time.gmtime(result["start"]))
        again = "  (ran again)" if result.get("retried") else ""
        row = (result["lane"], result["target"], start, result["seconds"], result["exit"], again)
        say("%-4s %-28s %-8s %8.0f  %d%s" % row)
    for result in results:
        if result["exit"] != 0:
            first_run = " (its first run)" if result.get("retried") else ""
            say("\nlanes: the last %d lines of %s%s:" % (len(result["tail"]), result["target"], first_run))
            say("\n".join("  | " + line for line in result["tail"]))
    failed = [r["target"] for r in results if r["exit"] != 0 and not r.get("retried")]
    if failed:
        say("lanes: FAILED: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
