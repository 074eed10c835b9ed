"""tierd topology lab test (#14 item 1), run as root inside a trixie two-socket guest.

    topology_test.py SRC_DIR   (run.sh with TIERD_LAB_FLAVOUR=two-socket TIERD_LAB_TEST=topology_test.py;
                                TIERD_LAB_UNINSTALL=1 removes tierd again, for a guest that goes on)

The two-socket flavour has DRAM nodes 0 (CPU 0) and 1 (CPU 1), NVDIMMs on CPU-less nodes 2 (near
node 0) and 3 (near node 1), and a tier between them, as a CXL expander per socket: nodes 4 (near
node 0) and 5 (near node 1), whose HMAT numbers put them in a memory tier of their own (checked
first: the test fails if the guest's tiers are not DRAM 0-1, then 4-5, then 2-3). All four become
system RAM; then two workloads, each pinned to one socket's CPU with its buffer on the *other*
socket's slower memory:
  wl_s0: taskset -c 0, buffer on node 3 (PMEM);   wl_s1: taskset -c 1, buffer on node 4 (middle tier).
tierd must promote each one's hot pages, from either lower tier, to the DRAM of the CPU it runs on
(wl_s0 → node 0, wl_s1 → node 1): the node with the most free DRAM (tierd's choice before topology)
would put both on one node, and one of them would get remote memory. Cold pages end on the lower
tiers (≥ 90 %; cold pages promoted on the way are counted in "cold_promoted_peak").
Beside them two workloads start on DRAM, each on the socket it does not run on:
  wl_d0: taskset -c 1, buffer on node 0;   wl_d1: taskset -c 0, buffer on node 1.
Their cold pages must be demoted to the next tier, on the socket of the node each page is on
(wl_d0 → node 4, wl_d1 → node 5), as the kernel's own demotion would: not to the middle tier near
the CPU, and not past the middle tier to the PMEM, although by SLIT node 2 is nearer node 0 than
node 4 is. The one exception is followed page by page: a cold page that a DAMON region straddling the
hot set's edge promoted along with hot ones went to the DRAM of the CPU (the other socket), and from
there belongs on that node's next tier (in one make test run 231 of wl_d1's 6,554 went 1 → 5 → 0 → 4).
Then a budget on node 1 alone (dram_budget_per_node, by a config reload), smaller than the hot pages
there (wl_s1's and wl_d1's), with wl_s1 of higher priority: the managed pages on node 1 must come
within the budget, wl_s1 keeping its share of it and wl_d1 giving up node 1, and the hot pages that
leave node 1 must go to DRAM on node 0 (no budget there) in one move, never down a tier first
(counted as relocated). Checksums unchanged.
Prints one JSON line of measurements; exits non-zero on the first failed check.
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

import guest_test as base  # noqa: E402  (the lab test's install and shell helpers)
from placement import nodes_of  # noqa: E402

DRAM_NODES, MIDDLE_NODES, PMEM_NODES = (0, 1), (4, 5), (2, 3)
LOWER_NODES = MIDDLE_NODES + PMEM_NODES
# The kernel's memory tiers, fastest first, as the flavour's HMAT numbers should make them.
TIERS = [list(DRAM_NODES), list(MIDDLE_NODES), list(PMEM_NODES)]
# workload -> (CPU it is pinned to, lower node its buffer starts on, DRAM node its hot pages belong on)
LAYOUT = {"wl_s0": (0, 3, 0), "wl_s1": (1, 4, 1)}
# workload -> (CPU it is pinned to, DRAM node its buffer starts on, node of the next tier its cold pages belong on)
DEMOTE_LAYOUT = {"wl_d0": (1, 0, 4), "wl_d1": (0, 1, 5)}
SIZE_MIB, HOT_PERCENT = 64, 20
DEMOTE_SIZE_MIB = 32
BUDGET_NODE, BUDGET_PAGES = 1, 2048  # 8 MiB: less than wl_s1's hot pages alone (20 % of 64 MiB)
PRIORITIES = {"wl_s1": 20, "wl_d1": 5}
HOT_FRACTION = float(os.environ.get("TIERD_LAB_HOT_FRACTION", "0.9"))
MAX_INTERVALS = int(os.environ.get("TIERD_LAB_MAX_INTERVALS", "40"))
WALL_LIMIT = int(os.environ.get("TIERD_LAB_WALL_SECONDS", "900"))
results = base.results


def node_memory_kb(node):
    """MemTotal of a node in kB; 0 before its memory is online (the node has no directory yet)."""
    try:
        with open("/sys/devices/system/node/node%d/meminfo" % node) as handle:
            return int(handle.readline().split()[3])
    except OSError:
        return 0


def parse_node_list(text):
    """'0-1,4' -> [0, 1, 4] (the kernel's node list format)."""
    nodes = []
    for part in filter(None, text.split(",")):
        first, _dash, last = part.partition("-")
        nodes.extend(range(int(first), int(last or first) + 1))
    return nodes


def memory_tiers():
    """The kernel's memory tiers, fastest (lowest abstract distance) first, each a sorted node list."""
    root = "/sys/devices/virtual/memory_tiering"
    tiers = sorted(int(name[len("memory_tier"):]) for name in os.listdir(root)
                   if name.startswith("memory_tier") and name[len("memory_tier"):].isdigit())
    result = []
    for tier in tiers:
        with open(os.path.join(root, "memory_tier%d" % tier, "nodelist")) as handle:
            result.append(sorted(parse_node_list(handle.read().strip())))
    return result


def online_nvdimms():
    """Each label-less region's raw namespace → devdax → system-ram, Movable (as online_pmem.sh does
    for one); nothing to do for a node that has memory already. Region N is node 2 + N's NVDIMM."""
    lower = sorted(LOWER_NODES)
    if all(node_memory_kb(node) for node in lower):
        results["pmem_online"] = "already"
    else:
        results["pmem_online"] = "by this test"
        with open("/sys/devices/system/memory/auto_online_blocks", "w") as out:
            out.write("offline")  # trixie auto-onlines hotplugged memory and daxctl refuses that policy
        devices = json.loads(base.sh("daxctl list") or "[]")
        have = {d.get("chardev") for d in ([devices] if isinstance(devices, dict) else devices)}
        for region in range(len(lower)):
            dax = "dax%d.0" % region
            if dax not in have:
                base.sh("ndctl create-namespace -fe namespace%d.0 -m devdax" % region)
            base.sh("daxctl reconfigure-device --mode=system-ram %s" % dax, check=False)
            base.sh("daxctl online-memory %s --movable" % dax, check=False)
    for node in lower:
        total_kb = node_memory_kb(node)
        cpus = base.sh("cat /sys/devices/system/node/node%d/cpulist" % node)
        if total_kb == 0 or cpus:
            base.fail("node %d should be CPU-less with memory: MemTotal %d kB, cpus %r" % (node, total_kb, cpus))
    results["distances"] = {n: base.sh("cat /sys/devices/system/node/node%d/distance" % n) for n in range(6)}
    results["tiers"] = memory_tiers()
    if results["tiers"] != TIERS:
        base.fail("the guest's memory tiers are %s (fastest first), not %s: the test would not show the "
                  "tiers kept in order" % (results["tiers"], TIERS))


def config():
    cfg = json.loads(json.dumps(base.CONFIG))
    # The buffers are 4 KiB pages (--no-thp), whatever the guest's THP setting: move them page by page.
    cfg["mover"]["block_pages"] = 1
    cfg["workloads"] = [
        {"name": name, "match": {"cmdline": r"workload\.py .*%s\.json" % name}, "vmas": {"min_size": "32M"},
         "policy": {"direction": "both", "priority": 10}}
        for name in sorted(LAYOUT) + sorted(DEMOTE_LAYOUT)]
    return cfg


def start_pinned(name, cpu, node, size_mib=SIZE_MIB):
    info_file = "/run/%s.json" % name
    if os.path.exists(info_file):
        os.unlink(info_file)
    subprocess.Popen(["taskset", "-c", str(cpu), "python3", os.path.join(HERE, "workload.py"),
                      "--size-mib", str(size_mib), "--hot-percent", str(HOT_PERCENT), "--node", str(node),
                      "--info", info_file, "--flush-tlb", "--no-thp"],
                     stdout=subprocess.DEVNULL, stderr=open("/run/%s.log" % name, "w"), start_new_session=True)
    return info_file


def page_nodes(info_file):
    """(node of each hot page, node of each cold page) by move_pages status, independent of tierd."""
    info = base.info(info_file)
    page = info["page_size"]
    count = info["length"] // page
    nodes = nodes_of(info["pid"], [info["address"] + i * page for i in range(count)])
    return nodes[:info["hot_pages"]], nodes[info["hot_pages"]:]


def counted(hot, cold):
    """{"hot": {node: pages}, "cold": {node: pages}}."""
    return {part: {n: sum(1 for x in values if x == n) for n in sorted(set(values))}
            for part, values in (("hot", hot), ("cold", cold))}


def where(info_file):
    return counted(*page_nodes(info_file))


# DRAM node -> the node of the next tier on its socket (where the kernel's demotion sends its pages).
NEXT_TIER = {start: target for _cpu, start, target in DEMOTE_LAYOUT.values()}
# workload -> {index of a cold page: the DRAM node other than its start where it was seen}
# (promoted along with hot neighbours by a DAMON region that straddled the hot set's edge).
cold_seen_elsewhere = {}


def demoted(name, cold_nodes):
    """True once ≥ 90 % of the cold pages are on the next tier's node near the DRAM node they started
    on. A cold page that was promoted to the other socket's DRAM on the way (the CPU's node, where
    promotions go) belongs on that node's next tier instead; the samples each interval track that."""
    _cpu, start_node, target = DEMOTE_LAYOUT[name]
    seen = cold_seen_elsewhere.setdefault(name, {})
    placed, misplaced = 0, {}
    for index, node in enumerate(cold_nodes):
        if node in NEXT_TIER and node != start_node:
            seen[index] = node
        allowed = (target, NEXT_TIER[seen[index]]) if index in seen else (target,)
        if node in allowed:
            placed += 1
        elif node in LOWER_NODES:
            misplaced[node] = misplaced.get(node, 0) + 1
    cold = len(cold_nodes)
    results.setdefault("cold_via_other_dram", {})[name] = len(seen)
    if sum(misplaced.values()) > 0.02 * cold:
        base.fail("%s's cold pages started on node %d, whose next tier is node %d, yet %d of %d went to %s "
                  "(the other socket, or past the middle tier; %d had been promoted to the other DRAM "
                  "node and may be on its next tier): %s"
                  % (name, start_node, target, sum(misplaced.values()), cold, misplaced, len(seen),
                     counted([], cold_nodes)["cold"]))
    return placed >= 0.9 * cold


def settled(name, spread, cold_nodes):
    if name in DEMOTE_LAYOUT:
        return demoted(name, cold_nodes)
    _cpu, _start_node, home = LAYOUT[name]
    hot = sum(spread["hot"].values())
    cold = sum(spread["cold"].values())
    on_pmem_cold = sum(spread["cold"].get(n, 0) for n in LOWER_NODES)
    # Not a failure at once: a DAMON region that straddles the edge of the contiguous hot set reads
    # hot and takes cold pages along (5,023 of 13,108 in one make test run) until DAMON's splits
    # separate them and tierd demotes the cold part again; converged means that happened.
    peak = results.setdefault("cold_promoted_peak", {})
    peak[name] = max(peak.get(name, 0), cold - on_pmem_cold)
    remote = sum(spread["hot"].get(n, 0) for n in DRAM_NODES if n != home)
    if remote > 0.02 * hot:
        base.fail("%s runs on node %d's CPU, yet %d of its %d hot pages went to the other socket's DRAM: %s"
                  % (name, home, remote, hot, spread))
    return spread["hot"].get(home, 0) >= HOT_FRACTION * hot and on_pmem_cold >= 0.9 * cold


def held_on_budget_node(spreads):
    """{workload: its buffer's pages on the budgeted node}."""
    return {name: s["hot"].get(BUDGET_NODE, 0) + s["cold"].get(BUDGET_NODE, 0) for name, s in spreads.items()}


def within_node_budget(spreads):
    """True once node 1 holds no more than its budget of the four buffers' pages, wl_s1 (higher
    priority) ≥ 90 % of the budget there, wl_d1 ≤ 2 % of its pages there, and the hot pages of
    both ≥ 90 % on DRAM (what left node 1 went to node 0, not to PMEM)."""
    on_node = held_on_budget_node(spreads)
    total = sum(on_node.values())
    if total > BUDGET_PAGES * 1.01:
        return False
    hot_on_dram = {name: sum(spreads[name]["hot"].get(n, 0) for n in DRAM_NODES) for name in PRIORITIES}
    hot = {name: sum(spreads[name]["hot"].values()) for name in PRIORITIES}
    d1_pages = sum(spreads["wl_d1"]["hot"].values()) + sum(spreads["wl_d1"]["cold"].values())
    return (on_node["wl_s1"] >= 0.9 * BUDGET_PAGES and on_node["wl_d1"] <= 0.02 * d1_pages
            and all(hot_on_dram[name] >= 0.9 * hot[name] for name in PRIORITIES))


def budget_node(files):
    """Phase 2: the node budget by a config reload; returns its measurements."""
    cfg = config()
    cfg["dram_budget_per_node"] = {str(BUDGET_NODE): BUDGET_PAGES * 4096}
    for workload in cfg["workloads"]:
        workload["policy"]["priority"] = PRIORITIES.get(workload["name"], 10)
    with open("/etc/tierd/config.json", "w") as out:
        json.dump(cfg, out, indent=1)
    base.sh("/usr/local/sbin/tierd check-config /etc/tierd/config.json")
    base.sh("systemctl reload tierd-lab.service")
    began, start_n = time.time(), base.tierd_intervals()
    hot_below_at_start, hot_below_peak = None, {}
    while True:
        spreads = {name: where(path) for name, path in files.items()}
        n = base.tierd_intervals()
        on_node = held_on_budget_node(spreads)
        # Hot pages that leave node 1 must go to DRAM on node 0 in one move, not down a tier first.
        hot_below = {name: sum(spreads[name]["hot"].get(node, 0) for node in LOWER_NODES) for name in PRIORITIES}
        hot_below_at_start = hot_below_at_start or hot_below
        for name, pages in hot_below.items():
            hot_below_peak[name] = max(hot_below_peak.get(name, 0), pages - hot_below_at_start[name])
            if hot_below_peak[name] > 0.02 * sum(spreads[name]["hot"].values()):
                base.fail("%s's hot pages went down a tier when they left node %d's budget (%d more there "
                          "than before): %s" % (name, BUDGET_NODE, hot_below_peak[name], spreads[name]))
        base.log("budget interval %d  node %d holds %d (budget %d): %s  wl_s1 hot %s  wl_d1 hot %s" % (
            n - start_n, BUDGET_NODE, sum(on_node.values()), BUDGET_PAGES, on_node,
            spreads["wl_s1"]["hot"], spreads["wl_d1"]["hot"]))
        if within_node_budget(spreads):
            state = json.loads(base.sh("cat /run/tierd/state.json"))
            relocated = {name: state["workloads"][name].get("relocated_total", 0) for name in PRIORITIES}
            if relocated["wl_d1"] <= 0:
                base.fail("wl_d1 gave up node %d, yet tierd counts none of its pages as relocated: %s"
                          % (BUDGET_NODE, relocated))
            return {"intervals": n - start_n, "seconds": round(time.time() - began, 1), "on_node": on_node,
                    "spread": spreads, "state": state.get("node_budgets"), "relocated": relocated,
                    "hot_gone_down_peak": hot_below_peak,
                    "status": base.sh("/usr/local/sbin/tierd status --state /run/tierd/state.json | grep '^node '",
                                      check=False)}
        if n - start_n >= MAX_INTERVALS or time.time() - began > WALL_LIMIT:
            base.fail("node %d's budget of %d pages not held after %d intervals / %.0f s: %s"
                      % (BUDGET_NODE, BUDGET_PAGES, n - start_n, time.time() - began, spreads))
        time.sleep(base.INTERVAL)


def main():
    numa_balancing = base.sh("cat /proc/sys/kernel/numa_balancing")
    base.sh("echo 0 > /proc/sys/kernel/numa_balancing")  # only tierd moves pages here
    online_nvdimms()
    wanted = config()  # from the lab test's config, so before that is replaced
    base.CONFIG.clear()
    base.CONFIG.update(wanted)
    base.install()
    files = {name: start_pinned(name, cpu, node) for name, (cpu, node, _home) in LAYOUT.items()}
    files.update({name: start_pinned(name, cpu, node, DEMOTE_SIZE_MIB)
                  for name, (cpu, node, _pmem) in DEMOTE_LAYOUT.items()})
    base.wait_for_files(list(files.values()), 300)
    for name, path in files.items():
        spread = where(path)
        start_node = (LAYOUT.get(name) or DEMOTE_LAYOUT[name])[1]
        if set(spread["hot"]) | set(spread["cold"]) != {start_node}:
            base.fail("%s did not start wholly on node %d: %s" % (name, start_node, spread))
    sums = {name: base.info(path)["sha256"] for name, path in files.items()}
    for stale in ("/run/tierd/state.json", "/run/tierd/damon-owner.json"):
        if os.path.exists(stale):
            os.unlink(stale)
    base.sh("systemctl start tierd-lab.service")
    began = time.time()
    while True:
        nodes = {name: page_nodes(path) for name, path in files.items()}
        spreads = {name: counted(*pages) for name, pages in nodes.items()}
        n = base.tierd_intervals()
        done = {name: settled(name, spreads[name], nodes[name][1]) for name in spreads}
        shown = "  ".join("%s hot %s cold %s" % (name, s["hot"], s["cold"]) for name, s in sorted(spreads.items()))
        base.log("interval %d  %s" % (n, shown))
        if all(done.values()):
            results["converged"] = {"intervals": n, "seconds": round(time.time() - began, 1), "spread": spreads}
            break
        if n >= MAX_INTERVALS or time.time() - began > WALL_LIMIT:
            base.fail("not converged after %d intervals / %.0f s: %s" % (n, time.time() - began, spreads))
        time.sleep(base.INTERVAL)
    results["start_line"] = base.sh("journalctl -u tierd-lab.service -o cat | grep -m1 'event=start'")
    if " lower_tiers=4,5>2,3" not in results["start_line"]:
        base.fail("tierd's start line does not name the lower tiers in order (4,5>2,3): %s" % results["start_line"])
    results["node_budget"] = budget_node(files)
    base.sh("systemctl stop tierd-lab.service")
    for name, path in files.items():
        before = base.info(path)["checks"]
        os.kill(base.info(path)["pid"], signal.SIGUSR1)
        deadline = time.time() + 120
        while time.time() < deadline and base.info(path).get("checks", 0) == before:
            time.sleep(1)
        if base.info(path).get("sha256_now") != sums[name]:
            base.fail("%s memory changed while tierd moved it" % name)
        os.kill(base.info(path)["pid"], signal.SIGTERM)
    results["checksums"] = "unchanged"
    base.sh("echo %s > /proc/sys/kernel/numa_balancing" % numa_balancing)
    if os.environ.get("TIERD_LAB_UNINSTALL") == "1":
        # In a scenario's guest, whose later checks must find only what the collection installed.
        base.sh("rm -rf /etc/systemd/system/tierd-lab.service /etc/systemd/system/tierd-lab.service.d "
                "/usr/local/lib/tierd /usr/local/sbin/tierd /etc/tierd /run/tierd && systemctl daemon-reload")
    results["passed"] = True
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
