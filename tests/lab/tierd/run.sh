#!/usr/bin/env bash
# tierd lab test in one command: boots a trixie nvdimm guest, copies tierd and the test in,
# runs guest_test.py as root, prints its measurements, and always stops the guest.
#   tests/lab/tierd/run.sh            (TIERD_LAB_NAME=t-tierd-lab, TIERD_LAB_KEEP=1 keeps the guest)
#   then soft_dirty_test.py, demotion_test.py and scale_test.py (TIERD_LAB_SCALE_INTERVALS, default 10)
#   in the same guest (damon backend; TIERD_LAB_SOFT_DIRTY=0 skips all three)
#   TIERD_LAB_BACKEND=page_idle tests/lab/tierd/run.sh
#       the same test on tierd's page_idle backend, in a guest booted with the lab kernel
#       TIERD_LAB_KERNEL=DIR (default: the cached build of lab/kernel/build.sh, which must exist)
#   TIERD_LAB_APPEND="word ..."  extra guest kernel arguments (e.g. transparent_hugepage=madvise)
#   TIERD_LAB_TEST=scale_test.py  ≥200 churning processes on one kdamond instead (make tierd-scale-lab)
#   TIERD_LAB_FLAVOUR=cxl  the same test with the slow tier on a CXL type-3 device's RAM region
#       (make tierd-lab-cxl; the soft-dirty check runs on the nvdimm guest only)
#   TIERD_LAB_TEST=topology_test.py TIERD_LAB_FLAVOUR=two-socket  another guest script of this directory
#       (make tierd-topology-lab: a workload pinned to each socket, hot pages to that socket's DRAM)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
BACKEND=${TIERD_LAB_BACKEND:-damon}
FLAVOUR=${TIERD_LAB_FLAVOUR:-nvdimm}
# The guest-side test: guest_test.py, scale_test.py (make tierd-scale-lab) or topology_test.py
# (make tierd-topology-lab); the soft-dirty, demotion and scale tests follow guest_test.py (or run alone:
# TIERD_LAB_TEST=demotion_test.py).
TEST=${TIERD_LAB_TEST:-guest_test.py}
case "$TEST" in
    guest_test.py|scale_test.py|topology_test.py|demotion_test.py) ;;
    *) echo "run.sh: TIERD_LAB_TEST=$TEST is not valid; choose guest_test.py, scale_test.py, topology_test.py or demotion_test.py" >&2; exit 2 ;;
esac
# TCG writes CXL memory at ~0.5 MiB/s (LAB-NOTES): 384 MiB of workloads did not fill in 5 minutes there.
WORKLOAD_MIB=${TIERD_LAB_WORKLOAD_MIB:-$([ "$FLAVOUR" = cxl ] && echo "32 16" || echo "256 128")}
LAB="python3 $REPO/lab/labctl.py"
case $BACKEND in
    damon)
        NAME=${TIERD_LAB_NAME:-t-tierd-lab$([ "$FLAVOUR" = nvdimm ] || echo "-$FLAVOUR")}
        kernel_args=() ;;
    page_idle)
        NAME=${TIERD_LAB_NAME:-t-tierd-lab-page-idle}
        kernel=${TIERD_LAB_KERNEL:-$(bash "$REPO/lab/kernel/build.sh" --print-dir)}
        kernel_args=(--kernel "$kernel") ;;
    *)
        echo "run.sh: TIERD_LAB_BACKEND=$BACKEND is not valid; choose damon or page_idle" >&2
        exit 2 ;;
esac
for word in ${TIERD_LAB_APPEND:-}; do kernel_args+=(--append "$word"); done
cleanup() { [ "${TIERD_LAB_KEEP:-0}" = 1 ] || $LAB down "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if ! $LAB list 2>/dev/null | grep -q "^$NAME .*running"; then
    $LAB up "$NAME" --release trixie --flavour "$FLAVOUR" "${kernel_args[@]}" >/dev/null
fi
tar -C "$REPO" -czf - tierd/tierd tierd/bin tests/lab/tierd | \
    $LAB ssh "$NAME" 'rm -rf /opt/t && mkdir -p /opt/t && tar -xzf - -C /opt/t'
start=$(date +%s)
$LAB ssh "$NAME" "TIERD_LAB_BACKEND=$BACKEND TIERD_LAB_MAX_INTERVALS=${TIERD_LAB_MAX_INTERVALS:-40} TIERD_LAB_HOT_FRACTION=${TIERD_LAB_HOT_FRACTION:-0.9} TIERD_LAB_WORKLOAD_MIB=\"$WORKLOAD_MIB\" python3 /opt/t/tests/lab/tierd/$TEST /opt/t" | tee "${TIERD_LAB_RESULT:-/dev/null}"
echo "tierd lab test $TEST ($BACKEND, $FLAVOUR) passed in $(( $(date +%s) - start )) s (guest $NAME)" >&2
if [ "$TEST" = guest_test.py ] && [ "$BACKEND" = damon ] && [ "$FLAVOUR" = nvdimm ] && [ "${TIERD_LAB_SOFT_DIRTY:-1}" = 1 ]; then
    # The write signal is backend-independent; checked once, on the default backend.
    start=$(date +%s)
    $LAB ssh "$NAME" "python3 /opt/t/tests/lab/tierd/soft_dirty_test.py /opt/t"
    echo "tierd soft-dirty lab test passed in $(( $(date +%s) - start )) s (guest $NAME)" >&2
    # Demotion from DRAM under a budget, and a hot set that moves (issue #14 item 4), in the same guest.
    start=$(date +%s)
    $LAB ssh "$NAME" "python3 /opt/t/tests/lab/tierd/demotion_test.py /opt/t"
    echo "tierd demotion lab test passed in $(( $(date +%s) - start )) s (guest $NAME)" >&2
    # 240 churning processes on one kdamond (item 3), 10 intervals here (make tierd-scale-lab runs 15).
    start=$(date +%s)
    $LAB ssh "$NAME" "TIERD_LAB_MAX_INTERVALS=${TIERD_LAB_SCALE_INTERVALS:-10} python3 /opt/t/tests/lab/tierd/scale_test.py /opt/t"
    echo "tierd scale lab test passed in $(( $(date +%s) - start )) s (guest $NAME)" >&2
fi
