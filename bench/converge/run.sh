#!/usr/bin/env bash
# bench/converge: intervals and seconds until >= 95 % of the hot set is on DRAM, from the tierd
# lab test (trixie nvdimm guest, DAMON, 3 s intervals, 256 MiB workload with a 20 % hot set).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
TIERD_LAB_HOT_FRACTION=0.95 TIERD_LAB_RESULT="$out" "$REPO/tests/lab/tierd/run.sh" >/dev/null
python3 - "$out" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
c = r["converged"]
print(json.dumps({"hot_fraction_target": 0.95, "intervals": c["intervals"], "seconds": c["seconds"],
                  "hot_on_dram": c["wl1"]["hot_on_dram"], "hot_pages": c["wl1"]["hot_pages"],
                  "cold_on_pmem": c["wl1"]["cold_on_pmem"], "cold_pages": c["wl1"]["cold_pages"]}))
PY
