#!/usr/bin/env bash
# bench/peers: tierd against the other ways to keep a hot set on DRAM (nothing, kernel NUMA tiering,
# DAMOS migrate_hot/cold, memtierd), in one trixie nvdimm guest under TCG (compare peers with each
# other, not absolute seconds). Prints a markdown table; raw results go to BENCH_PEERS_OUT.
#   bench/peers/run.sh              peers a,b,c,d,f,g,h,i,j on Debian's 6.12 kernel (PEERS=a,d WORKLOADS=W2 select)
#   bench/peers/run.sh --page-idle  peer e (tierd on page_idle) in a guest booted with the lab kernel
#                                   (lab/kernel/build.sh's cached build, or TIERD_LAB_KERNEL=DIR)
# Boots t-bench-peers[-page-idle] and always stops it, unless BENCH_GUEST names a running guest.
# memtierd (peer f) is taken from MEMTIERD_BIN (default: bench/peers/build_memtierd.sh's cache);
# without it peer f is reported as skipped. BENCH_PEERS_MAX_SECONDS (default 3000) bounds the guest's
# measuring time: runs that would pass it are reported as skipped. BENCH_PEERS_FLUSH_TLB=1: the
# workloads flush their TLB after each sweep (peers_workload.py --flush-tlb). BENCH_PEERS_LRU_GEN_IDLE_SECONDS
# (default 0, every interval): peer j's mover.lru_gen_idle_seconds (peer i has tierd's default).
# BENCH_PEERS_TRACE_MIGRATIONS=1: every page migration traced (tracefs, migrate:mm_migrate_pages), pages
# summed by reason and task, over the measured seconds and with the processes' exit (raw results only).
# BENCH_PEERS_PROFILE=1: tierd runs under cProfile, its .prof files land with the logs (not for the table).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LAB="python3 $REPO/lab/labctl.py"
MEMTIERD_BIN=${MEMTIERD_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/tiering-pmem/memtierd/memtierd}
OUT=${BENCH_PEERS_OUT:-$REPO/.cache/bench-peers}
kernel_args=()
case ${1:-} in
    "")
        NAME=${BENCH_GUEST:-t-bench-peers}
        PEERS=${PEERS:-a,b,c,d,f,g,h,i,j} ;;
    --page-idle)
        NAME=${BENCH_GUEST:-t-bench-peers-page-idle}
        PEERS=${PEERS:-e}
        if ! kernel=${TIERD_LAB_KERNEL:-$(bash "$REPO/lab/kernel/build.sh" --print-dir)}; then
            echo "run.sh: --page-idle needs the lab kernel: run lab/kernel/build.sh (or make test-page-idle) first" >&2
            exit 2
        fi
        kernel_args=(--kernel "$kernel") ;;
    *)
        echo "run.sh: unknown argument '$1' (valid: --page-idle)" >&2
        exit 2 ;;
esac
WORKLOADS=${WORKLOADS:-W1,W1D,W2,W3}
MAX_SECONDS=${BENCH_PEERS_MAX_SECONDS:-3000}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
result="$OUT/peers-$stamp.json"
echo "bench/peers $stamp: PEERS=$PEERS WORKLOADS=$WORKLOADS guest $NAME, HEAD $(git -C "$REPO" rev-parse --short HEAD), host load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)

if [ -z "${BENCH_GUEST:-}" ]; then
    trap '$LAB down "$NAME" >/dev/null 2>&1 || true' EXIT
    $LAB up "$NAME" --release trixie --flavour nvdimm "${kernel_args[@]}" >/dev/null
fi
booted=$(date +%s)

stage=$(mktemp -d)
trap 'rm -rf "$stage"; [ -n "${BENCH_GUEST:-}" ] || $LAB down "$NAME" >/dev/null 2>&1 || true' EXIT
tar -C "$REPO" -cf - tierd/tierd tierd/bin tests/lab/tierd bench/peers | tar -xf - -C "$stage"
if [ -x "$MEMTIERD_BIN" ]; then
    mkdir -p "$stage/memtierd" && cp "$MEMTIERD_BIN" "$stage/memtierd/memtierd"
else
    echo "run.sh: no memtierd at $MEMTIERD_BIN (bench/peers/build_memtierd.sh builds it): peer f will be skipped" >&2
fi
# Compiled before measuring, so that no peer's CPU includes compiling tierd (the first one's did).
tar -C "$stage" -czf - . | $LAB ssh "$NAME" 'rm -rf /opt/t && mkdir -p /opt/t && tar -xzf - -C /opt/t && python3 -m compileall -q /opt/t/tierd/tierd'

rc=0
$LAB ssh "$NAME" "sh /opt/t/tests/lab/tierd/online_pmem.sh >&2 && PEERS=$PEERS WORKLOADS=$WORKLOADS BENCH_PEERS_MAX_SECONDS=$MAX_SECONDS BENCH_PEERS_FLUSH_TLB=${BENCH_PEERS_FLUSH_TLB:-0} BENCH_PEERS_LRU_GEN_IDLE_SECONDS=${BENCH_PEERS_LRU_GEN_IDLE_SECONDS:-0} BENCH_PEERS_PROFILE=${BENCH_PEERS_PROFILE:-0} BENCH_PEERS_TASK_MIGRATIONS=${BENCH_PEERS_TASK_MIGRATIONS:-0} BENCH_PEERS_TRACE_MIGRATIONS=${BENCH_PEERS_TRACE_MIGRATIONS:-0} python3 /opt/t/bench/peers/guest_peers.py /opt/t" >"$result" || rc=$?
# The agents' logs and configs, for a run that needs explaining (a failed one most of all).
mkdir -p "$OUT/peers-$stamp"
$LAB ssh "$NAME" 'tar -C /run/bench-peers -czf - --exclude=results.json .' | tar -xzf - -C "$OUT/peers-$stamp" || true
if [ "$rc" != 0 ]; then
    echo "bench/peers: the guest driver failed (rc $rc); logs in $OUT/peers-$stamp" >&2
    exit "$rc"
fi

end=$(date +%s)
echo "bench/peers: boot $((booted - start)) s, total $((end - start)) s, host load $(cut -d' ' -f1-3 /proc/loadavg); results $result" >&2
python3 "$REPO/bench/peers/peers_metrics.py" "$result"
