#!/usr/bin/env bash
# bench/lanes: does a second lab guest running beside the first slow it down? (Why make test runs two lanes.)
# Boots two trixie NVDIMM guests, provisions both, then times a no-op rerun of tiering.pmem.provision
# on one guest alone and on both at once. Prints one line per run: LABEL GUEST RUN SECONDS.
#   bench/lanes/run.sh [LABEL]        (LAB_TCG_THREAD=single or --cpus via LANES_CPUS to compare)
# Needs the two lab guest slots free; leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_PIPELINING=True PATH=$PWD/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$PWD/.cache/collections
label=${1:-smp${LANES_CPUS:-2}-${LAB_TCG_THREAD:-multi}}
work=$(mktemp -d)
lab() { python3 lab/labctl.py "$@"; }
trap 'lab down bench-lane1 bench-lane2 >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for g in bench-lane1 bench-lane2; do
    lab up "$g" --flavour nvdimm --cpus "${LANES_CPUS:-2}" >/dev/null
    lab inventory "$g" > "$work/$g.json"
done
run() {
    local start end
    start=$(date +%s.%N)
    ansible-playbook -i "$work/$1.json" tiering.pmem.provision > "$work/$1-$2.log" 2>&1
    end=$(date +%s.%N)
    printf '%s %s %s %.1f\n' "$label" "$1" "$2" "$(echo "$end - $start" | bc)"
}
run bench-lane1 first & run bench-lane2 first & wait
run bench-lane1 alone
run bench-lane1 both & run bench-lane2 both & wait
run bench-lane1 alone-again
