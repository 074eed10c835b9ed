#!/usr/bin/env bash
# Hostile inputs in one command (make hostile-lab): boots ONE trixie nvdimm guest, makes its region a
# devdax namespace (dax0.0), copies tierd and this directory in, runs every case of cases.py with
# hostile.py (ansible-playbook against the guest), and always stops the guest.
#   tests/lab/hostile/run.sh                 HOSTILE_LAB_NAME=hostile-nvdimm, HOSTILE_LAB_KEEP=1 keeps the guest
#   HOSTILE_ONLY=rm-zero,td-regex tests/lab/hostile/run.sh     only these cases
#   HOSTILE_WORK=DIR   playbook, ansible.log, results.json, verdicts.json (default: a new temp dir)
#   HOSTILE_TABLE=FILE write the Markdown table of the cases and their messages there
# Exit status 0 only when every case was refused as expected and the host snapshots are identical.
# Phase lines are lab/timed.sh's ("=== phase NAME: N s (exit RC)").
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
NAME=${HOSTILE_LAB_NAME:-hostile-nvdimm}
VENV=${VENV:-$REPO/.venv}
case $VENV in /*) ;; *) VENV=$REPO/$VENV ;; esac
WORK=${HOSTILE_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/hostile.XXXXXX")}
mkdir -p "$WORK"
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$REPO/.cache/collections}
if [[ ! -e $ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem ]]; then
    mkdir -p "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering"
    ln -sfn "$REPO" "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/tiering/pmem"
fi
if [[ ! -x $VENV/bin/ansible-playbook ]]; then
    echo "hostile: no ansible-playbook in $VENV (run 'make venv' first, or set VENV)" >&2
    exit 2
fi

lab() { python3 "$REPO/lab/labctl.py" "$@"; }
phase_start() { phase_started=$(date +%s); echo "=== phase $1: start $(date -u +%H:%M:%S)"; }
phase_end() { echo "=== phase $1: $(( $(date +%s) - phase_started )) s (exit $2)"; }

# Always stop the guest (unless kept), whatever failed.
trap 'set +e; [[ ${HOSTILE_LAB_KEEP:-0} == 1 ]] || { phase_start hostile-down; lab down "$NAME"; phase_end hostile-down $?; }' EXIT

phase_start hostile-boot
# A guest of this name kept by HOSTILE_LAB_KEEP=1 is used again (it must be in its first state).
if ! lab list 2>/dev/null | grep -q "^$NAME .*running"; then
    lab up "$NAME" --release trixie --flavour nvdimm >/dev/null
fi
phase_end hostile-boot 0
lab inventory "$NAME" > "$WORK/labctl-inventory.json"

phase_start hostile-setup
tar -C "$REPO" -czf - tierd/tierd tierd/bin tests/lab/hostile |
    lab ssh "$NAME" "rm -rf /opt/hostile && mkdir -p /opt/hostile && tar -xzf - -C /opt/hostile"
# The state the cases start from: region0's namespace in devdax mode (dax0.0), not system RAM.
lab ssh "$NAME" "daxctl list -d dax0.0 2>/dev/null | grep -q '\"mode\":\"devdax\"' \
    || { ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null && udevadm settle --timeout=60; }"
python3 "$REPO/tests/lab/hostile/hostile.py" tierd-spec |
    lab ssh "$NAME" "python3 /opt/hostile/tests/lab/hostile/make_tierd_files.py /opt/hostile/tierd-cases"
phase_end hostile-setup 0

args=(run --inventory "$WORK/labctl-inventory.json" --work "$WORK" --ansible-playbook "$VENV/bin/ansible-playbook")
[[ -n ${HOSTILE_ONLY:-} ]] && args+=(--only "$HOSTILE_ONLY")
[[ -n ${HOSTILE_TABLE:-} ]] && args+=(--table "$HOSTILE_TABLE")
status=0
phase_start hostile-cases
PATH=$VENV/bin:$PATH python3 "$REPO/tests/lab/hostile/hostile.py" "${args[@]}" || status=$?
phase_end hostile-cases "$status"
echo "hostile: results in $WORK (guest $NAME)" >&2
exit $status
