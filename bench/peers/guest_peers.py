"""bench/peers (guest side, root, stdlib): tierd against the other ways of placing pages on DRAM/PMEM.

    guest_peers.py SRC_DIR        (SRC_DIR holds tierd/, tests/lab/tierd/, bench/peers/ and, if built,
                                   memtierd/memtierd; bench/peers/run.sh copies them to /opt/t)
    PEERS=a,b,c,d,f,g,h,i  WORKLOADS=W1,W1D,W2,W3  BENCH_PEERS_MAX_SECONDS=3000  BENCH_PEERS_OUT=/run/bench-peers

Peers: a nothing; b kernel tiering (numa_balancing=2, demotion_enabled=1); c DAMOS migrate_hot /
migrate_cold on paddr kdamonds written through DAMON's sysfs; d tierd, DAMON backend; e tierd,
page_idle backend (only on a kernel with page_idle); f memtierd, heat policy on its soft-dirty tracker;
g the kernel and tierd together: b's settings plus tierd (DAMON) in tiering_mode kernel_promotes
(the kernel promotes, tierd enforces budgets and quotas and demotes: tierd's `auto` on such a kernel);
h the same with each process in a cgroup of its own and tierd's workloads matched by cgroup, so tierd
demotes through memory.reclaim (how many pages: tierd; which: the kernel's LRU; tierd/reclaim.py);
i the same as h with `demote_with: lru_gen`: tierd ages the cgroup's multi-gen LRU each interval and
the pages idle for 3 intervals are demoted (which and how many: the kernel's per-page aging).
Workloads (peers_workload.py, 64 MiB-ish, hot pages written): W1 contiguous 20 % hot set on PMEM;
W1D the same buffer starting on DRAM (the goal is then the cold set on PMEM); W2 scattered 10 % of
4 KiB pages on PMEM with THP off, a new hot set halfway; W3 two tenants on PMEM, priorities 10 and 1,
sharing a DRAM budget smaller than their hot sets together.
Every second: each workload's pages' nodes (move_pages status query), the agent's CPU (its process
and kdamond.N threads). Per run: /proc/vmstat deltas, the workload's sweeps/s and p99 sweep time.
Between runs everything is reset: agent stopped, numa_balancing 0, kdamonds off and nr_kdamonds 0,
workloads killed, page cache dropped. Writes results.json to BENCH_PEERS_OUT and prints it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

SRC = sys.argv[1] if len(sys.argv) > 1 else "/opt/t"
HERE = os.path.join(SRC, "bench", "peers")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "lab", "tierd"))
import peers_metrics  # noqa: E402
from placement import nodes_of  # noqa: E402

OUT = os.environ.get("BENCH_PEERS_OUT", "/run/bench-peers")
MAX_SECONDS = int(os.environ.get("BENCH_PEERS_MAX_SECONDS", "3000"))
# Workloads flush their TLB after each sweep (peers_workload.py --flush-tlb): how a real CPU's TLB
# misses would let accessed bits be set again, which TCG's never-evicted TLB does not.
FLUSH_TLB = os.environ.get("BENCH_PEERS_FLUSH_TLB", "0") == "1"
# Fill, start, stop and reset around each run's measured seconds (an estimate for the time budget).
OVERHEAD_SECONDS = 15
DRAM = 0
PAGE = 4096
DAMON = "/sys/kernel/mm/damon/admin/kdamonds"
# DAMON attributes shared by the DAMOS and tierd peers: 100 ms sampling / 2 s aggregation behaved in
# TCG guests (5 ms sampling made a hot buffer look idle: LAB-NOTES).
SAMPLE_US, AGGR_US = 100000, 2000000
# DAMOS migrate_hot at >= 1 access per aggregation ping-pongs (a just-migrated page looks accessed
# once); 4 of the 20 samples per aggregation is hot enough for a written page and above that noise.
DAMOS_HOT_MIN_ACCESSES = 4
DAMOS_COLD_MIN_AGE = 5  # aggregations (10 s) without access before a DRAM region is demoted
CGROUP = "/sys/fs/cgroup/bench-peers"
PAGE_IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
MEMTIERD = os.path.join(SRC, "memtierd", "memtierd")
HERTZ = os.sysconf("SC_CLK_TCK")

# name → workloads (processes) and the run's seconds; every process of a workload is a tenant.
WORKLOADS = {
    "W1": {"seconds": 50, "goal": "hot_on_dram",
           "procs": [{"name": "w1", "size_mib": 64, "hot_percent": 20, "layout": "contiguous", "start": "pmem"}]},
    "W1D": {"seconds": 60, "goal": "cold_on_pmem",
            "procs": [{"name": "w1d", "size_mib": 64, "hot_percent": 20, "layout": "contiguous", "start": "dram"}]},
    "W2": {"seconds": 80, "goal": "hot_on_dram", "move_at": 40, "thp": "never",
           "procs": [{"name": "w2", "size_mib": 64, "hot_percent": 10, "layout": "scattered", "start": "pmem"}]},
    # 2 × 24 MiB hot against a 32 MiB budget: the high-priority tenant's hot set fits, both do not.
    "W3": {"seconds": 70, "goal": "high_hot_on_dram", "budget_mib": 32, "settle_seconds": 50,
           "procs": [{"name": "high", "size_mib": 48, "hot_percent": 50, "layout": "contiguous", "start": "pmem",
                      "priority": 10},
                     {"name": "low", "size_mib": 48, "hot_percent": 50, "layout": "contiguous", "start": "pmem",
                      "priority": 1}]},
}
# Peer j: i with another mover.lru_gen_idle_seconds (i has tierd's default); 0 ages the cgroup every
# interval, as tierd did before that setting.
LRU_GEN_IDLE_SECONDS = float(os.environ.get("BENCH_PEERS_LRU_GEN_IDLE_SECONDS", "0"))
PROFILE = os.environ.get("BENCH_PEERS_PROFILE") == "1"  # tierd under cProfile (start_tierd)
# Read every task's NUMA-fault migrations every second, not only at the end, so tasks that exit
# during a run (a check-config, a short helper) are counted too; the reads cost the sampler's CPU.
TASK_MIGRATIONS_EVERY_SAMPLE = os.environ.get("BENCH_PEERS_TASK_MIGRATIONS") == "1"
# Trace every page migration of a run (tracepoint migrate:mm_migrate_pages, in a tracefs instance of
# its own): who migrated, and why (numa_misplaced: a NUMA hint fault's promotion), also for tasks that
# start and end between two samples, which the per-task counters above cannot see.
TRACE_MIGRATIONS = os.environ.get("BENCH_PEERS_TRACE_MIGRATIONS") == "1"
TRACE_INSTANCE = "/sys/kernel/tracing/instances/bench-peers"
PEER_NAMES = {"a": "nothing", "b": "kernel tiering", "c": "DAMOS migrate", "d": "tierd (DAMON)",
              "e": "tierd (page_idle)", "f": "memtierd (soft-dirty)",
              "g": "kernel promotes + tierd", "h": "kernel promotes + tierd (reclaim)",
              "i": "kernel promotes + tierd (lru_gen)",
              "j": "kernel promotes + tierd (lru_gen, idle %g s)" % LRU_GEN_IDLE_SECONDS}
# Peer h's workloads: one cgroup each, beside CGROUP (a cgroup whose children have the memory
# controller may hold no processes itself, and DAMOS's memcg filter matches one memcg exactly).
OWN_CGROUPS = {"h": "reclaim", "i": "lru_gen", "j": "lru_gen"}  # peer: tierd's mover.demote_with


def log(msg):
    print("guest_peers: %s" % msg, file=sys.stderr, flush=True)


def put(path, value):
    with open(path, "w") as out:
        out.write(str(value))


def get(path, default=None):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return default


def pmem_node():
    """The CPU-less node with memory (online_pmem.sh made it)."""
    base = "/sys/devices/system/node"
    for entry in sorted(os.listdir(base)):
        if entry.startswith("node") and entry[4:].isdigit() and not get(os.path.join(base, entry, "cpulist")):
            if "MemTotal:" in (get(os.path.join(base, entry, "meminfo")) or ""):
                return int(entry[4:])
    raise SystemExit("guest_peers: no CPU-less memory node: run tests/lab/tierd/online_pmem.sh first")


def node_physical_range(node):
    """[start, end) physical bytes spanned by the node's online memory blocks, for a paddr target
    (holes inside are fine: DAMON just sees them as never accessed)."""
    block = int(get("/sys/devices/system/memory/block_size_bytes"), 16)
    base = "/sys/devices/system/node/node%d" % node
    ids = [int(e[6:]) for e in os.listdir(base) if e.startswith("memory") and e[6:].isdigit()
           and get(os.path.join(base, e, "online")) == "1"]
    return min(ids) * block, (max(ids) + 1) * block


def kdamond_tasks():
    tasks = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (get("/proc/%s/comm" % pid) or "").startswith("kdamond"):
            tasks.append(int(pid))
    return tasks


def damon_off():
    """Every kdamond off and none left, so the next peer (tierd refuses to clobber) starts clean."""
    if not os.path.isdir(DAMON):
        return
    count = int(get(os.path.join(DAMON, "nr_kdamonds"), "0"))
    for index in range(count):
        state = os.path.join(DAMON, str(index), "state")
        if get(state) == "on":
            try:
                put(state, "off")
            except OSError as error:
                log("kdamond %d off: %s" % (index, error))
    deadline = time.time() + 20
    while kdamond_tasks() and time.time() < deadline:
        time.sleep(0.5)
    put(os.path.join(DAMON, "nr_kdamonds"), 0)


def ensure_cgroup():
    """The workloads' memcg: DAMOS paddr schemes are limited to it by a memcg filter (otherwise they
    would move every page of the guest). All peers run the workloads in it, so all see the same."""
    controllers = get("/sys/fs/cgroup/cgroup.subtree_control") or ""
    if "memory" not in controllers.split():
        try:
            put("/sys/fs/cgroup/cgroup.subtree_control", "+memory")
        except OSError as error:
            log("cannot enable the memory controller (%s): DAMOS runs without a memcg filter" % error)
    os.makedirs(CGROUP, exist_ok=True)


def read_vmstat():
    return peers_metrics.parse_vmstat(get("/proc/vmstat", ""))


def reset_kernel(saved):
    put("/proc/sys/kernel/numa_balancing", 0)
    if os.path.exists("/sys/kernel/mm/numa/demotion_enabled"):
        put("/sys/kernel/mm/numa/demotion_enabled", saved["demotion_enabled"])
    damon_off()
    put(THP, saved["thp"])
    subprocess.run(["sync"], check=False)
    put("/proc/sys/vm/drop_caches", 3)


def terminate(proc, seconds=15):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- peers: start(context) returns the agent's Popen (or None); the context names nodes and processes

def start_nothing(_ctx):
    return None


def start_kernel_tiering(_ctx):
    put("/sys/kernel/mm/numa/demotion_enabled", "true")
    put("/proc/sys/kernel/numa_balancing", 2)
    return None


def write_damos_kdamond(index, operations_range, action, target_node, access, min_age):
    """One paddr kdamond over a physical range with one DAMOS scheme, limited to the bench memcg."""
    kd = os.path.join(DAMON, str(index))
    ctx = os.path.join(kd, "contexts", "0")
    put(os.path.join(kd, "contexts", "nr_contexts"), 1)
    put(os.path.join(ctx, "operations"), "paddr")
    attrs = os.path.join(ctx, "monitoring_attrs")
    put(os.path.join(attrs, "intervals", "sample_us"), SAMPLE_US)
    put(os.path.join(attrs, "intervals", "aggr_us"), AGGR_US)
    put(os.path.join(attrs, "intervals", "update_us"), AGGR_US)
    put(os.path.join(attrs, "nr_regions", "min"), 10)
    put(os.path.join(attrs, "nr_regions", "max"), 1000)
    put(os.path.join(ctx, "targets", "nr_targets"), 1)
    regions = os.path.join(ctx, "targets", "0", "regions")
    put(os.path.join(regions, "nr_regions"), 1)
    put(os.path.join(regions, "0", "end"), operations_range[1])
    put(os.path.join(regions, "0", "start"), operations_range[0])
    put(os.path.join(ctx, "schemes", "nr_schemes"), 1)
    scheme = os.path.join(ctx, "schemes", "0")
    put(os.path.join(scheme, "action"), action)
    put(os.path.join(scheme, "target_nid"), target_node)
    pattern = os.path.join(scheme, "access_pattern")
    # Access-pattern ranges are 0 by default: nothing matches until the maxima are set (LAB-NOTES).
    for key, (low, high) in sorted(peers_metrics.damos_access_pattern(PAGE, access, min_age).items()):
        put(os.path.join(pattern, key, "max"), high)
        put(os.path.join(pattern, key, "min"), low)
    filters = os.path.join(scheme, "filters")
    if os.path.isdir(filters) and "memory" in (get("/sys/fs/cgroup/cgroup.subtree_control") or "").split():
        put(os.path.join(filters, "nr_filters"), 1)
        put(os.path.join(filters, "0", "type"), "memcg")
        put(os.path.join(filters, "0", "memcg_path"), "/" + os.path.basename(CGROUP))
        if os.path.exists(os.path.join(filters, "0", "allow")):
            # 6.14+: an allow filter; pages matching no filter are then rejected.
            put(os.path.join(filters, "0", "matching"), "Y")
            put(os.path.join(filters, "0", "allow"), "Y")
        else:
            # 6.12: filters only exclude; excluding what is *not* in the memcg keeps only the bench's pages.
            put(os.path.join(filters, "0", "matching"), "N")
    put(os.path.join(kd, "state"), "on")


def damos_scheme_stats():
    """{kdamond index: scheme 0's action, its stats (nr_tried, sz_tried, nr_applied, sz_applied,
    qt_exceeds, ...) and the bytes its access pattern matches now (tried_regions/total_bytes)}, for
    each running kdamond: whether a scheme that moved nothing matched nothing or was refused."""
    stats = {}
    for index in range(int(get(os.path.join(DAMON, "nr_kdamonds"), "0") or 0)):
        kdamond = os.path.join(DAMON, str(index))
        if get(os.path.join(kdamond, "state")) != "on":
            continue
        scheme = os.path.join(kdamond, "contexts", "0", "schemes", "0")
        row = {"action": get(os.path.join(scheme, "action"))}
        try:
            put(os.path.join(kdamond, "state"), "update_schemes_stats")
            for name in sorted(os.listdir(os.path.join(scheme, "stats"))):
                row[name] = int(get(os.path.join(scheme, "stats", name), "0"))
            put(os.path.join(kdamond, "state"), "update_schemes_tried_bytes")
            row["matching_bytes_now"] = int(get(os.path.join(scheme, "tried_regions", "total_bytes"), "0"))
        except (OSError, ValueError) as error:
            row["error"] = str(error)
        stats[index] = row
    return stats


def start_damos(ctx):
    put(os.path.join(DAMON, "nr_kdamonds"), 2)
    samples = AGGR_US // SAMPLE_US
    write_damos_kdamond(0, node_physical_range(ctx["pmem"]), "migrate_hot", DRAM,
                        (DAMOS_HOT_MIN_ACCESSES, samples), 0)
    write_damos_kdamond(1, node_physical_range(DRAM), "migrate_cold", ctx["pmem"], (0, 0),
                        DAMOS_COLD_MIN_AGE)
    return None


def own_cgroup(proc):
    return "/sys/fs/cgroup/bench-peers-%s" % proc["name"]


def tierd_config(ctx, backend, mode="tierd"):
    workload = ctx["workload"]
    config = {
        "interval_seconds": 3,
        # Peers d and e are tierd placing pages alone (numa_balancing is 0 in their runs); g runs
        # beside the kernel's tiering in kernel_promotes.
        "tiering_mode": mode,
        "backend": backend,
        "nodes": {"dram": [DRAM], "pmem": [ctx["pmem"]]},
        "damon": {"sample_us": SAMPLE_US, "aggr_us": AGGR_US, "min_nr_regions": 10, "max_nr_regions": 1000},
        # The lab test's heat settings (tests/lab/tierd/guest_test.py), which pass there.
        "heat": {"decay": 0.5, "hot_threshold": 0.25, "cold_threshold": 0.05, "warmup_intervals": 2},
        "mover": {"batch_pages": 1024, "rate_limit_mbps": 64, "min_residency_intervals": 3},
        "state_file": os.path.join(OUT, "tierd-state", "state.json"),
        "workloads": [{"name": proc["name"],
                       "match": ({"cgroup": own_cgroup(proc)[len("/sys/fs/cgroup"):]} if ctx["own_cgroups"]
                                 else {"cmdline": r"peers_workload\.py .*/%s\.json" % proc["name"]}),
                       "vmas": {"min_size": "16M"},
                       "policy": {"direction": "both", "priority": proc.get("priority", 0)}}
                      for proc in workload["procs"]],
    }
    if workload.get("budget_mib"):
        config["dram_budget"] = "%dM" % workload["budget_mib"]
    if ctx["own_cgroups"]:
        config["mover"]["demote_with"] = OWN_CGROUPS[ctx["peer"]]
    if ctx["peer"] == "j":
        config["mover"]["lru_gen_idle_seconds"] = LRU_GEN_IDLE_SECONDS
    return config


def start_tierd(ctx, backend, mode="tierd"):
    # A fresh state directory per run: the owner file there would let this tierd adopt kdamonds of
    # the previous run, and its state must not carry one workload's history into the next.
    shutil.rmtree(os.path.join(OUT, "tierd-state"), ignore_errors=True)
    path = os.path.join(OUT, "tierd-%s.json" % backend)
    with open(path, "w") as out:
        json.dump(tierd_config(ctx, backend, mode), out, indent=1)
    os.chmod(path, 0o644)  # tierd as root refuses a config that others may write
    tierd = os.path.join(SRC, "tierd", "bin", "tierd")
    subprocess.run([tierd, "check-config", path], check=True, stdout=subprocess.DEVNULL)
    run_name = "tierd-%s-%s-%s-%s" % (ctx["peer"], backend, mode, ctx["workload_name"])
    log_file = open(os.path.join(OUT, run_name + ".log"), "w")
    if not PROFILE:
        return subprocess.Popen([tierd, "run", "-c", path], stdout=log_file, stderr=subprocess.STDOUT)
    # Where tierd's time goes, in wall-clock seconds per function (a syscall's kernel time is in its
    # caller); the profiler's own cost inflates the run's CPU, so profiled runs are not for the table.
    env = dict(os.environ, PYTHONPATH=os.path.join(SRC, "tierd"))
    return subprocess.Popen([sys.executable, "-m", "cProfile", "-o", os.path.join(OUT, run_name + ".prof"),
                             "-m", "tierd", "run", "-c", path], stdout=log_file, stderr=subprocess.STDOUT, env=env)


def memtierd_config(ctx):
    """memtierd's heat policy on its soft-dirty tracker: the one tracker that works on Debian's 6.12
    guest kernel (idlepage needs CONFIG_IDLE_PAGE_TRACKING; its damon tracker reads DAMON's
    aggregation events through bpftrace or perf, neither in the lab image). Soft-dirty sees writes
    only, which is why every workload writes its hot pages. Values after memtierd's own e2e test
    policy-heat/test03-move-softdirty: two heat classes, hot → DRAM, cold → PMEM."""
    pids = ", ".join(str(p) for p in ctx["pids"])
    numasize = ""
    if ctx["workload"].get("budget_mib"):
        numasize = "    numasize:\n      %d: %dM\n" % (DRAM, ctx["workload"]["budget_mib"])
    return ("policy:\n"
            "  name: heat\n"
            "  config: |\n"
            "    intervalms: 3000\n"
            "    pidwatcher:\n"
            "      name: pidlist\n"
            "      config: |\n"
            "        pids: [%s]\n"
            "    heatnumas:\n"
            "      0: [%d]\n"
            "      1: [%d]\n"
            "%s"
            "    heatmap:\n"
            "      heatmax: 0.01\n"
            "      heatretention: 0\n"
            "      heatclasses: 2\n"
            "    tracker:\n"
            "      name: softdirty\n"
            "      config: |\n"
            "        pagesinregion: 256\n"
            "        maxcountperregion: 0\n"
            "        scanintervalms: 1000\n"
            "        regionsupdatems: 0\n"
            "    mover:\n"
            "      intervalms: 20\n"
            "      bandwidth: 64\n") % (pids, ctx["pmem"], DRAM, numasize)


def start_memtierd(ctx):
    path = os.path.join(OUT, "memtierd.yaml")
    with open(path, "w") as out:
        out.write(memtierd_config(ctx))
    log_file = open(os.path.join(OUT, "memtierd-%s.log" % ctx["workload_name"]), "w")
    return subprocess.Popen([MEMTIERD, "-config", path], stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


PEERS = {
    "a": start_nothing,
    "b": start_kernel_tiering,
    "c": start_damos,
    "d": lambda ctx: start_tierd(ctx, "damon"),
    "e": lambda ctx: start_tierd(ctx, "page_idle"),
    "f": start_memtierd,
    "g": lambda ctx: start_kernel_tiering(ctx) or start_tierd(ctx, "damon", "kernel_promotes"),
    "h": lambda ctx: start_kernel_tiering(ctx) or start_tierd(ctx, "damon", "kernel_promotes"),
    "i": lambda ctx: start_kernel_tiering(ctx) or start_tierd(ctx, "damon", "kernel_promotes"),
    "j": lambda ctx: start_kernel_tiering(ctx) or start_tierd(ctx, "damon", "kernel_promotes"),
}


def why_skipped(peer):
    if peer in ("b", "g", "h", "i", "j") and not os.path.exists("/sys/kernel/mm/numa/demotion_enabled"):
        return "kernel has no /sys/kernel/mm/numa/demotion_enabled"
    if peer in ("i", "j") and not (get("/sys/kernel/mm/lru_gen/enabled", "0x0000") != "0x0000"
                                   and os.path.exists("/sys/kernel/debug/lru_gen")):
        return "kernel has no multi-gen LRU on, or no debugfs"
    if peer in ("c", "d", "g", "h", "i", "j") and not os.path.isdir(DAMON):
        return "kernel has no DAMON sysfs"
    if peer == "e" and not os.path.exists(PAGE_IDLE_BITMAP):
        return "kernel has no page_idle"
    if peer == "f" and not os.access(MEMTIERD, os.X_OK):
        return "no memtierd binary (bench/peers/build_memtierd.sh)"
    return None


# ---- one run

def start_workload(proc, pmem, move_at, cgroup=CGROUP):
    info_file = os.path.join(OUT, "%s.json" % proc["name"])
    if os.path.exists(info_file):
        os.unlink(info_file)
    node = pmem if proc["start"] == "pmem" else DRAM
    command = ["python3", os.path.join(HERE, "peers_workload.py"), "--size-mib", str(proc["size_mib"]),
               "--hot-percent", str(proc["hot_percent"]), "--layout", proc["layout"], "--node", str(node),
               "--info", info_file]
    if move_at is not None:
        command += ["--move-at", str(move_at)]
    if FLUSH_TLB:
        command.append("--flush-tlb")

    def into_cgroup():
        # Before the buffer is faulted: pages are charged to the memcg of the task that faults them.
        put(os.path.join(cgroup, "cgroup.procs"), os.getpid())

    popen = subprocess.Popen(command, preexec_fn=into_cgroup, stdout=subprocess.DEVNULL,
                             stderr=open(info_file + ".log", "w"))
    return popen, info_file


def read_info(path):
    with open(path) as handle:
        return json.load(handle)


def placement_sample(info, pmem):
    """(shares of the hot set on DRAM, of the cold set on DRAM and on PMEM, and the DRAM pages;
    the node of each page)."""
    nodes = nodes_of(info["pid"], [info["address"] + i * info["page_size"] for i in range(info["pages"])])
    hot = set(info["hot"])
    hot_dram = sum(1 for i in hot if nodes[i] == DRAM)
    cold_dram = sum(1 for i, n in enumerate(nodes) if n == DRAM and i not in hot)
    cold_pmem = sum(1 for i, n in enumerate(nodes) if n == pmem and i not in hot)
    cold = info["pages"] - len(hot)
    return ({"hot_on_dram": hot_dram / float(len(hot)), "cold_on_dram": cold_dram / float(cold),
             "cold_on_pmem": cold_pmem / float(cold), "dram_pages": hot_dram + cold_dram}, nodes)


OTHER_MAPPING_MAX_PAGES = 16384  # larger mappings beside the buffer are reservations, not the interpreter


def other_pages_sample(info):
    """{(start, end, label): node of each page} of the workload's mappings beside its buffer; {}
    when the process is gone."""
    maps = get("/proc/%d/maps" % info["pid"])
    if maps is None:
        return {}
    mappings = peers_metrics.other_mappings(maps, info["address"], info["page_size"], OTHER_MAPPING_MAX_PAGES)
    addresses = [a for start, end, _l in mappings for a in range(start, end, info["page_size"])]
    try:
        nodes = nodes_of(info["pid"], addresses)
    except OSError:
        return {}
    sample, offset = {}, 0
    for start, end, label in mappings:
        count = (end - start) // info["page_size"]
        sample[(start, end, label)] = nodes[offset:offset + count]
        offset += count
    return sample


def cpu_ticks(pid):
    """(utime + stime, stime) in clock ticks from one read of /proc/PID/stat, or (None, None)."""
    stat = get("/proc/%d/stat" % pid)
    if stat is None:
        return None, None
    return peers_metrics.cpu_ticks_of_stat(stat), peers_metrics.cpu_ticks_of_stat(stat, system_only=True)


def numa_migrations_by_task():
    """{"comm pid": pages} of every task the NUMA hint faults migrated pages for, cumulative over the
    task's life (numa_pages_migrated in /proc/PID/task/TID/sched): who took the kernel's
    promotions, the workload or another process (tierd, the sampler, sshd)."""
    counts = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir("/proc/%s/task" % pid)
        except OSError:
            continue
        for tid in tids:
            text = get("/proc/%s/task/%s/sched" % (pid, tid)) or ""
            first = text.split("\n", 1)[0]
            for line in text.splitlines():
                if line.startswith("numa_pages_migrated"):
                    pages = int(line.split(":", 1)[1].strip() or 0)
                    if pages:
                        key = "%s %s" % (first.split(" (")[0].strip(), pid)
                        counts[key] = counts.get(key, 0) + pages
    return counts


def migration_trace_start():
    """A fresh tracefs instance recording mm_migrate_pages; None where tracefs is missing."""
    if not os.path.isdir(os.path.dirname(TRACE_INSTANCE)):
        log("no tracefs at %s: migrations not traced" % os.path.dirname(TRACE_INSTANCE))
        return None
    if os.path.isdir(TRACE_INSTANCE):
        os.rmdir(TRACE_INSTANCE)
    os.mkdir(TRACE_INSTANCE)
    # Shared by every instance: enough for the short-lived tasks of a whole run to keep their names.
    put(os.path.dirname(os.path.dirname(TRACE_INSTANCE)) + "/saved_cmdlines_size", 8192)
    put(TRACE_INSTANCE + "/buffer_size_kb", 8192)
    put(TRACE_INSTANCE + "/events/migrate/mm_migrate_pages/enable", 1)
    put(TRACE_INSTANCE + "/tracing_on", 1)
    return TRACE_INSTANCE


def migration_trace_read(instance):
    """{"reason comm pid": pages migrated} from what the instance traced so far."""
    return peers_metrics.migrations_of_trace(get(instance + "/trace") or "")


def migration_trace_stop(instance):
    """The instance's counts (migration_trace_read), and the instance removed."""
    put(instance + "/tracing_on", 0)
    counts = migration_trace_read(instance)
    put(instance + "/events/migrate/mm_migrate_pages/enable", 0)
    os.rmdir(instance)
    return counts


def run_one(peer, workload_name, pmem):
    workload = WORKLOADS[workload_name]
    run = {"peer": "%s %s" % (peer, PEER_NAMES[peer]), "workload": workload_name, "goal_key": workload["goal"]}
    if workload.get("thp"):
        put(THP, workload["thp"])
    run["thp"] = get(THP)
    own = peer in OWN_CGROUPS
    has_agent = peer not in ("a", "b")  # a and b run no agent: no CPU to count
    for proc in workload["procs"] if own else []:
        os.makedirs(own_cgroup(proc), exist_ok=True)
    procs = [start_workload(p, pmem, workload.get("move_at"), own_cgroup(p) if own else CGROUP)
             for p in workload["procs"]]
    deadline = time.time() + 180
    while not all(os.path.exists(info) for _p, info in procs):
        if time.time() > deadline or any(p.poll() is not None for p, _i in procs):
            for popen, info in procs:
                popen.kill()
            logs = " / ".join((get(info + ".log") or "")[-400:] for _p, info in procs)
            raise SystemExit("guest_peers: workloads of %s did not start: %s" % (workload_name, logs))
        time.sleep(0.2)
    infos = [read_info(info) for _p, info in procs]
    ctx = {"pmem": pmem, "workload": workload, "workload_name": workload_name, "pids": [i["pid"] for i in infos],
           "own_cgroups": own, "peer": peer}
    trace = migration_trace_start() if TRACE_MIGRATIONS else None
    vmstat_before = read_vmstat()
    ticks_before, system_before = {}, {}
    for pid in kdamond_tasks():
        total, system = cpu_ticks(pid)
        ticks_before[pid], system_before[pid] = total or 0, system or 0
    began = time.time()
    try:
        agent = PEERS[peer](ctx)
    except (OSError, subprocess.CalledProcessError) as error:
        # One peer that cannot start (a sysfs write refused, a config tierd rejects) must not end
        # the whole bench: its rows say why, the other peers still run.
        for popen, _info in procs:
            terminate(popen)
        log("%s / %s: could not start: %s" % (workload_name, run["peer"], error))
        return {"peer": run["peer"], "workload": workload_name, "skipped": "could not start: %s" % error}
    # What moved while the agent started (tierd: its check-config and its start), apart from the run.
    run["vmstat_agent_start"] = peers_metrics.vmstat_delta(vmstat_before, read_vmstat())
    run["numa_migrations_by_task_at_agent_start"] = numa_migrations_by_task()
    ticks, system_ticks = {}, {}
    samples = []
    moved_at = None
    last_nodes = {}  # workload index -> the node of each buffer page at the previous sample
    moves = {"promoted": 0, "demoted": 0, "hot_demoted": 0}
    last_other = {}  # workload index -> other_pages_sample()
    other_moves = {}  # mapping label -> moves of the pages there

    by_task = {}

    def sample_tasks():
        for key, pages in numa_migrations_by_task().items():
            by_task[key] = max(by_task.get(key, 0), pages)

    def sample_cpu():
        for pid in ([agent.pid] if agent is not None else []) + kdamond_tasks():
            value, system = cpu_ticks(pid)
            if value is not None:
                ticks[pid] = max(ticks.get(pid, 0), value)
            if system is not None:
                system_ticks[pid] = max(system_ticks.get(pid, 0), system)

    try:
        while time.time() - began < workload["seconds"]:
            tick = time.time()
            if agent is not None and agent.poll() is not None:
                run["agent_exit"] = agent.returncode
                log("%s: agent exited with %d" % (run["peer"], agent.returncode))
                agent = None
            sample_cpu()
            if TASK_MIGRATIONS_EVERY_SAMPLE:
                sample_tasks()
            sample = {"t": round(tick - began, 1)}
            if has_agent:
                sample["agent_cpu_s"] = round(peers_metrics.cpu_seconds(ticks, HERTZ, ticks_before), 2)
            per_proc = []
            for index, ((_p, info_file), proc) in enumerate(zip(procs, workload["procs"])):
                info = read_info(info_file)
                if info.get("moved_at") and moved_at is None:
                    moved_at = round(info["moved_at"] - began, 1)
                shares, nodes = placement_sample(info, pmem)
                if index in last_nodes:
                    peers_metrics.add_moves(moves, peers_metrics.buffer_moves(last_nodes[index], nodes,
                                                                              set(info["hot"]), DRAM, pmem))
                last_nodes[index] = nodes
                other = other_pages_sample(info)
                for key, now in other.items():
                    before = last_other.get(index, {}).get(key)
                    if before is not None:
                        peers_metrics.add_moves(other_moves.setdefault(key[2], {}),
                                                peers_metrics.buffer_moves(before, now, (), DRAM, pmem))
                last_other[index] = other
                per_proc.append((proc, shares))
            if len(per_proc) == 1:
                sample.update(per_proc[0][1])
            else:
                by_priority = sorted(per_proc, key=lambda item: -item[0]["priority"])
                sample["high_hot_on_dram"] = by_priority[0][1]["hot_on_dram"]
                sample["low_hot_on_dram"] = by_priority[-1][1]["hot_on_dram"]
                sample["hot_on_dram"] = sum(s["hot_on_dram"] for _p, s in per_proc) / len(per_proc)
                sample["cold_on_dram"] = sum(s["cold_on_dram"] for _p, s in per_proc) / len(per_proc)
                sample["tenants_dram_pages"] = sum(s["dram_pages"] for _p, s in per_proc)
            samples.append(sample)
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        sample_cpu()
        # The measured seconds end here for the kernel's counters too: the processes' exit (the
        # workload's interpreter touching, as it tears down, pages an agent demoted as idle) is
        # counted apart, not charged to the placement being measured.
        run["vmstat"] = peers_metrics.vmstat_delta(vmstat_before, read_vmstat())
        # Before the processes end (their counts go with them); the sampler's own too.
        sample_tasks()
        run["numa_migrations_by_task"] = by_task
        if peer == "c":
            run["damos_schemes"] = damos_scheme_stats()
        if trace is not None:
            run["migrations_traced"] = migration_trace_read(trace)
    finally:
        terminate(agent)
        for popen, _info in procs:
            terminate(popen)
        for proc in workload["procs"] if own else []:
            try:
                os.rmdir(own_cgroup(proc))
            except OSError as error:
                log("cgroup %s not removed: %s" % (own_cgroup(proc), error))
    run["elapsed"] = round(time.time() - began, 1)
    run["vmstat_with_teardown"] = peers_metrics.vmstat_delta(vmstat_before, read_vmstat())
    if trace is not None:
        run["migrations_traced_with_teardown"] = migration_trace_stop(trace)
    run["agent_cpu_s"] = round(peers_metrics.cpu_seconds(ticks, HERTZ, ticks_before), 2) if has_agent else None
    run["agent_system_s"] = (round(peers_metrics.cpu_seconds(system_ticks, HERTZ, system_before), 2)
                             if has_agent else None)
    durations = []
    for _popen, info_file in procs:
        try:
            durations += read_info(info_file).get("durations", [])
        except (OSError, ValueError):
            pass
    run["durations"] = durations
    run["samples"] = samples
    run["buffer_moves"] = moves
    run["other_moves"] = other_moves
    run["moved_at"] = moved_at
    if workload.get("budget_mib"):
        run["budget_pages"] = workload["budget_mib"] * (1 << 20) // PAGE
        run["slack_pages"] = 1024  # one tierd move batch
        run["settle_seconds"] = workload["settle_seconds"]
    return run


def selected(env, allowed, default):
    names = [n.strip() for n in os.environ.get(env, ",".join(default)).split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit("guest_peers: %s=%s: unknown %s; choose from %s" % (env, os.environ[env], unknown,
                                                                             ",".join(allowed)))
    return names


def main():
    if os.geteuid() != 0:
        raise SystemExit("guest_peers: run as root")
    # e (page_idle) only when asked for: it needs the lab kernel, so it is a run of its own (run.sh --page-idle).
    peers = selected("PEERS", sorted(PEERS), ["a", "b", "c", "d", "f", "g", "h", "i", "j"])
    workloads = selected("WORKLOADS", list(WORKLOADS), list(WORKLOADS))
    os.makedirs(OUT, exist_ok=True)
    pmem = pmem_node()
    ensure_cgroup()
    saved = {"thp": next(w.strip("[]") for w in get(THP).split() if w.startswith("[")),
             "demotion_enabled": get("/sys/kernel/mm/numa/demotion_enabled", "false")}
    plan = [(w, p) for w in workloads for p in peers]
    estimate = sum(WORKLOADS[w]["seconds"] + OVERHEAD_SECONDS for w, p in plan if not why_skipped(p))
    log("%d runs, estimated %d s (bound %d s, BENCH_PEERS_MAX_SECONDS); kernel %s, PMEM node %d" % (
        len(plan), estimate, MAX_SECONDS, os.uname().release, pmem))
    result = {"kernel": os.uname().release, "pmem_node": pmem, "flush_tlb": FLUSH_TLB,
              "peers": peers, "workloads": workloads,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "estimate_s": estimate,
              "runs": []}
    started = time.time()
    reset_kernel(saved)
    for workload_name, peer in plan:
        reason = why_skipped(peer)
        if reason is None and time.time() - started + WORKLOADS[workload_name]["seconds"] + OVERHEAD_SECONDS > MAX_SECONDS:
            reason = "time budget (BENCH_PEERS_MAX_SECONDS=%d)" % MAX_SECONDS
        if reason:
            log("%s / %s: skipped: %s" % (workload_name, peer, reason))
            result["runs"].append({"peer": "%s %s" % (peer, PEER_NAMES[peer]), "workload": workload_name,
                                   "skipped": reason})
            continue
        log("%s / %s %s ..." % (workload_name, peer, PEER_NAMES[peer]))
        try:
            run = run_one(peer, workload_name, pmem)
        finally:
            reset_kernel(saved)
        log("%s / %s: %s" % (workload_name, peer, json.dumps(peers_metrics.summarize(run))))
        result["runs"].append(run)
    result["total_s"] = round(time.time() - started, 1)
    with open(os.path.join(OUT, "results.json"), "w") as out:
        json.dump(result, out)
    log("done in %.0f s; %s" % (result["total_s"], os.path.join(OUT, "results.json")))
    print(peers_metrics.render_table([peers_metrics.summarize(r) for r in result["runs"]]), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
