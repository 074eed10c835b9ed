"""bench/lru: does a cgroup's memory.reclaim on a tiered host demote its coldest pages?

    reclaim_probe.py START_NODE RECLAIM_MIB [NUMA_BALANCING]   (root, in a guest set up by bench/peers/run.sh:
                                                               /opt/t holds bench/peers and tests/lab/tierd)

64 MiB (bench/peers/peers_workload.py, a scattered 10 % hot set written every sweep) faulted on
START_NODE in the cgroup /sys/fs/cgroup/exp, demotion on, THP off; after 10 s one write of
RECLAIM_MIB to the cgroup's memory.reclaim; then the hot and cold pages on DRAM (node 0) and the
cgroup's memory.stat counters, every 5 s. Results: bench/RESULTS.md ("Demotion by the kernel's LRU").
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, "/opt/t/tests/lab/tierd")
from placement import nodes_of

CG = "/sys/fs/cgroup/exp"


def put(p, v):
    with open(p, "w") as f:
        f.write(str(v))


def get(p):
    with open(p) as f:
        return f.read()


start_node, reclaim_mib = int(sys.argv[1]), int(sys.argv[2])
nb = sys.argv[3] if len(sys.argv) > 3 else "0"
os.makedirs(CG, exist_ok=True)
if "memory" not in get("/sys/fs/cgroup/cgroup.subtree_control"):
    put("/sys/fs/cgroup/cgroup.subtree_control", "+memory")
put("/sys/kernel/mm/transparent_hugepage/enabled", "never")
put("/sys/kernel/mm/numa/demotion_enabled", "true")
put("/proc/sys/kernel/numa_balancing", nb)
info = "/run/exp.json"
if os.path.exists(info):
    os.unlink(info)
cmd = [
    "python3",
    "/opt/t/bench/peers/peers_workload.py",
    "--size-mib",
    "64",
    "--hot-percent",
    "10",
    "--layout",
    "scattered",
    "--node",
    str(start_node),
    "--info",
    info,
]
p = subprocess.Popen(cmd, preexec_fn=lambda: put(CG + "/cgroup.procs", os.getpid()))
while not os.path.exists(info):
    time.sleep(0.2)
d = json.load(open(info))
addrs = [d["address"] + i * d["page_size"] for i in range(d["pages"])]
hot = set(d["hot"])


def sample(tag):
    n = nodes_of(d["pid"], addrs)
    hd = sum(1 for i in hot if n[i] == 0)
    cd = sum(1 for i, x in enumerate(n) if x == 0 and i not in hot)
    st = dict(l.split() for l in get(CG + "/memory.stat").splitlines())
    print(
        "%-14s hot_on_dram %4d/%d cold_on_dram %5d/%d  pgdemote_direct %s pgpromote %s active_anon %s inactive_anon %s"
        % (
            tag,
            hd,
            len(hot),
            cd,
            len(n) - len(hot),
            st["pgdemote_direct"],
            st["pgpromote_success"],
            int(st["active_anon"]) >> 12,
            int(st["inactive_anon"]) >> 12,
        ),
        flush=True,
    )


sample("filled")
time.sleep(10)
sample("after 10s")
t = time.time()
try:
    put(CG + "/memory.reclaim", "%dM" % reclaim_mib)
    r = "ok"
except OSError as e:
    r = "error %s" % e
print("memory.reclaim %dM: %s in %.2f s" % (reclaim_mib, r, time.time() - t))
sample("after reclaim")
for _ in range(3):
    time.sleep(5)
    sample("later")
p.terminate()
p.wait()
