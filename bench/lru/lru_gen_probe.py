"""bench/lru: the multi-gen LRU's aging and eviction (debugfs lru_gen) as a per-page demoter.

    lru_gen_probe.py [KEEP [flush|noflush]]   (root, in a guest set up by bench/peers/run.sh)

64 MiB on DRAM (bench/peers/peers_workload.py, scattered 10 % hot set written every sweep, its TLB
flushed after each sweep unless noflush), in the cgroup /sys/fs/cgroup/exp, demotion on,
numa_balancing 0 (nobody promotes), the hot set moving after 30 s. Every 3 s for 70 s: age node 0
("+ MEMCG 0 MAX_GEN 1 1"), then evict the generations older than the KEEP youngest
("- MEMCG 0 GEN 200"); prints the hot and cold pages on DRAM and the generations (gen:age/anon pages).
Results: bench/RESULTS.md ("Demotion by the kernel's LRU").
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, "/opt/t/tests/lab/tierd")
from placement import nodes_of

CG = "/sys/fs/cgroup/exp"
LG = "/sys/kernel/debug/lru_gen"
KEEP = int(sys.argv[1]) if len(sys.argv) > 1 else 3  # generations kept (youngest KEEP)
flush = "--flush-tlb" if (len(sys.argv) < 3 or sys.argv[2] == "flush") else None


def put(p, v):
    with open(p, "w") as f:
        f.write(str(v))


def get(p):
    with open(p) as f:
        return f.read()


os.makedirs(CG, exist_ok=True)
put("/sys/kernel/mm/transparent_hugepage/enabled", "never")
put("/sys/kernel/mm/numa/demotion_enabled", "true")
put("/proc/sys/kernel/numa_balancing", "0")
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
    "0",
    "--info",
    info,
    "--move-at",
    "30",
] + ([flush] if flush else [])
p = subprocess.Popen(cmd, preexec_fn=lambda: put(CG + "/cgroup.procs", os.getpid()))
while not os.path.exists(info):
    time.sleep(0.2)
d = json.load(open(info))
addrs = [d["address"] + i * d["page_size"] for i in range(d["pages"])]


def gens():
    text = get(LG)
    m = re.search(r"memcg\s+(\d+) /exp\n node\s+0\n((?:\s+\d+\s+\d+\s+\d+\s+\d+\s*\n)+)", text)
    rows = [tuple(int(x) for x in l.split()) for l in m.group(2).strip().splitlines()]
    return int(m.group(1)), rows


t0 = time.time()
while time.time() - t0 < 70:
    d = json.load(open(info))
    hot = set(d["hot"])
    n = nodes_of(d["pid"], addrs)
    hd = sum(1 for i in hot if n[i] == 0)
    cd = sum(1 for i, x in enumerate(n) if x == 0 and i not in hot)
    mid, rows = gens()
    out = "t=%4.0f hot_on_dram %4d/%d cold_on_dram %5d  gens %s" % (
        time.time() - t0,
        hd,
        len(hot),
        cd,
        " ".join("%d:%dms/%d" % (g, age, anon) for g, age, anon, _f in rows),
    )
    max_gen = max(r[0] for r in rows)
    min_gen = min(r[0] for r in rows)
    try:
        put(LG, "+ %d 0 %d 1 1" % (mid, max_gen))
    except OSError as e:
        out += " age:%s" % e.strerror
    mid, rows = gens()
    max_gen = max(r[0] for r in rows)
    min_gen = min(r[0] for r in rows)
    if max_gen - min_gen + 1 > KEEP:
        try:
            put(LG, "- %d 0 %d 200" % (mid, max_gen - KEEP))
            out += " evicted<=%d" % (max_gen - KEEP)
        except OSError as e:
            out += " evict:%s" % e.strerror
    print(out, flush=True)
    time.sleep(3)
p.terminate()
p.wait()
