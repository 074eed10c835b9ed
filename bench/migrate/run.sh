#!/usr/bin/env bash
# bench/migrate: tierd mover vs migratepages in a trixie nvdimm guest (TCG: absolute GB/s are
# emulator numbers, the ratio is the result). Boots t-bench-migrate unless BENCH_GUEST names one.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LAB="python3 $REPO/lab/labctl.py"
NAME=${BENCH_GUEST:-t-bench-migrate}
if [ -z "${BENCH_GUEST:-}" ]; then
    trap '$LAB down "$NAME" >/dev/null 2>&1 || true' EXIT
    $LAB up "$NAME" --release trixie --flavour nvdimm >/dev/null
fi
tar -C "$REPO" -czf - tierd/tierd tests/lab/tierd bench/migrate | \
    $LAB ssh "$NAME" 'rm -rf /opt/b && mkdir -p /opt/b && tar -xzf - -C /opt/b'
$LAB ssh "$NAME" "sh /opt/b/tests/lab/tierd/online_pmem.sh >&2 && python3 /opt/b/bench/migrate/guest_bench.py /opt/b ${BENCH_MIGRATE_ARGS:-}"
