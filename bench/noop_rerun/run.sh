#!/usr/bin/env bash
# A no-op rerun of playbooks/provision.yml (as `make demo` runs it: lab/demo-vars.yml) against one
# nvdimm guest, next to `ansible -m ping` on the same guest. One first provisioning run (changes the
# guest; not counted), then REPS rounds of [ping, provision rerun], each timed on the host with the
# host's load average. Every rerun must report changed=0 and failed=0, or the script fails. Per-task
# wall times of each rerun come from the task_times callback next to this script (ansible-core ships
# no profile_tasks; ansible.posix is not in the venv): OUT_DIR/rerun-N.tsv. Every round runs again
# with ANSIBLE_PIPELINING=True (OUT_DIR/rerun_pipelined-N.tsv).
#   bench/noop_rerun/run.sh [GUEST_NAME (default ob-noop)] [REPS (default 3)] [OUT_DIR (default a temp dir)]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
name=${1:-ob-noop}
reps=${2:-3}
out=${3:-$(mktemp -d)}
mkdir -p "$out"
lab="python3 $repo/lab/labctl.py"
export PATH=$repo/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$repo/.cache/collections ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_CALLBACK_PLUGINS=$repo/bench/noop_rerun/callback_plugins ANSIBLE_CALLBACKS_ENABLED=task_times
trap '$lab down "$name" >/dev/null 2>&1 || true' EXIT
cd "$repo"
$lab up "$name" --flavour nvdimm >/dev/null
$lab inventory "$name" > "$out/inventory.json"
play=(ansible-playbook -i "$out/inventory.json" playbooks/provision.yml -e @lab/demo-vars.yml)
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }
row() { python3 -c 'import sys; print("%-16s\t%s\t%8.3f\t%s" % (sys.argv[1], sys.argv[2], float(sys.argv[4]) - float(sys.argv[3]), sys.argv[5]))' "$@"; }
timed() {
  local method=$1 rep=$2 l t0 t1; shift 2
  l=$(load); t0=$(date +%s.%N)
  "$@" > "$out/$method-$rep.log" 2>&1 || { cat "$out/$method-$rep.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  row "$method" "$rep" "$t0" "$t1" "$l"
}
echo "# $(date -u '+%F %H:%M UTC'); guest $name (nvdimm, $($lab ssh "$name" 'uname -r')); raw logs in $out"
TASK_TIMES_FILE=$out/first.tsv timed provision_first 1 "${play[@]}"
grep -A1 'PLAY RECAP' "$out/provision_first-1.log" | tail -1
ansible lab -i "$out/inventory.json" -m ping >/dev/null  # warm the SSH control connection
for rep in $(seq "$reps"); do
  # Each round twice: Ansible's defaults, then with SSH pipelining (one SSH command per module
  # instead of several: put the payload, run it, remove it).
  for mode in "" _pipelined; do
    if [ -n "$mode" ]; then export ANSIBLE_PIPELINING=True; else export ANSIBLE_PIPELINING=False; fi
    timed "ansible_ping$mode" "$rep" ansible lab -i "$out/inventory.json" -m ping
    TASK_TIMES_FILE=$out/rerun$mode-$rep.tsv timed "provision_rerun$mode" "$rep" "${play[@]}"
    recap=$(grep -A1 'PLAY RECAP' "$out/provision_rerun$mode-$rep.log" | tail -1)
    echo "#   $recap"
    case $recap in
      *" changed=0 "*" failed=0 "*) ;;
      *) echo "FAILED: rerun $rep$mode is not a no-op: $recap" >&2; exit 1 ;;
    esac
  done
done
