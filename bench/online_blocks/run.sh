#!/usr/bin/env bash
# Onlining every block of a large system-ram dax device, in one lab guest, REPS times per method:
#  (a) end to end, each as one ad-hoc Ansible task from the host (the same fixed per-task cost):
#        ansible_ping        ansible -m ping                                   (the fixed cost alone)
#        ansible_module      ansible -m tiering.pmem.memory_blocks -a 'device=dax0.0 state=online_movable'
#        ansible_daxctl      ansible -m command -a 'daxctl online-memory --movable dax0.0'
#  (b) in-guest work only, timed inside the guest (no SSH, no Ansible controller):
#        guest_module        the module's kept AnsiballZ payload run with python3 (ANSIBLE_KEEP_REMOTE_FILES=1)
#        guest_daxctl        daxctl online-memory --movable dax0.0
#        guest_shell_loop    the seed's shell loop over /sys/devices/system/memory/memoryN/state
#        guest_python_start  python3 -c pass (the interpreter's start-up floor under TCG)
#        guest_ping_payload  the kept AnsiballZ payload of ansible.builtin.ping (any module's fixed in-guest cost)
#  (c) task_loop (only with TASK_LOOP=1, run once: it is slow): one Ansible task per block.
# Before every onlining run all blocks of dax0.0 are offlined again (not timed); after it the script
# checks that every block is online in ZONE_MOVABLE. Each line: part method rep seconds host-loadavg.
#   bench/online_blocks/run.sh [PMEM_SIZE (default 32G)] [GUEST_NAME (default ob-bench)] [REPS (default 3)]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
size=${1:-32G}
name=${2:-ob-bench}
reps=${3:-3}
lab="python3 $repo/lab/labctl.py"
# qemu-noreserve/: see the comment in it (a 32 GiB NVDIMM backend on a 24 GiB host).
export PATH=$repo/bench/online_blocks/qemu-noreserve:$repo/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$repo/.cache/collections ANSIBLE_HOST_KEY_CHECKING=False
work=$(mktemp -d)
trap '$lab down "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# struct pages take ~1.6 % of the pmem size in DRAM (512 MiB for 32G): 3G of DRAM leaves room.
$lab up "$name" --flavour nvdimm --pmem-size "$size" --mem 3G >/dev/null
$lab inventory "$name" > "$work/inventory.json"
inv=(-i "$work/inventory.json" -e ansible_python_interpreter=/usr/bin/python3)
g() { $lab ssh "$name" "$@"; }
g 'ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null && echo offline > /sys/devices/system/memory/auto_online_blocks && daxctl reconfigure-device -m system-ram --no-online dax0.0 >/dev/null'
blocks=$(g "daxctl list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"total_memblocks\"])'")
first=$(g "python3 -c 'r=int(open(\"/sys/bus/dax/devices/dax0.0/resource\").read(),16); b=int(open(\"/sys/devices/system/memory/block_size_bytes\").read(),16); print((r+b-1)//b)'")
last=$((first + blocks - 1))
echo "# pmem $size: $blocks blocks memory$first-$last; guest kernel $(g 'uname -r'); $(date -u '+%F %H:%M UTC')"

reset() { g 'daxctl offline-memory dax0.0 >/dev/null 2>&1 || true'; }
# Every block of the device online and in ZONE_MOVABLE, or the run does not count.
check() {
  local movable
  movable=$(g "cd /sys/devices/system/memory && for i in \$(seq $first $last); do echo \$(cat memory\$i/state) \$(cat memory\$i/valid_zones); done | grep -c '^online Movable\$' || true")
  [ "$movable" = "$blocks" ] || { echo "FAILED: $1 left $movable of $blocks blocks online Movable" >&2; exit 1; }
}
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }
row() { python3 -c 'import sys; print("%s\t%-18s\t%s\t%8.3f\t%s" % (sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[5]) - float(sys.argv[4]), sys.argv[6]))' "$@"; }
# host-timed ad-hoc Ansible task; fails the run if the task failed
host_task() {
  local part=$1 method=$2 rep=$3; shift 3
  local l t0 t1
  l=$(load); t0=$(date +%s.%N)
  ansible lab "${inv[@]}" "$@" > "$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
  t1=$(date +%s.%N)
  row "$part" "$method" "$rep" "$t0" "$t1" "$l"
}
# guest-timed command (clock read inside the guest, around the command only)
guest_cmd() {
  local part=$1 method=$2 rep=$3 cmd=$4 l times t0 t1 rc
  l=$(load)
  times=$(g "s=\$(date +%s.%N); $cmd >/tmp/bench.out 2>&1; rc=\$?; e=\$(date +%s.%N); echo \$s \$e \$rc")
  read -r t0 t1 rc <<< "$times"
  [ "$rc" = 0 ] || { g 'cat /tmp/bench.out' >&2; echo "FAILED: $method rc=$rc" >&2; exit 1; }
  row "$part" "$method" "$rep" "$t0" "$t1" "$l"
}

# warm the SSH control connection and the controller's plugin caches
ansible lab "${inv[@]}" -m ping >/dev/null
echo "# (a) end to end, one ad-hoc Ansible task each, timed on the host"
for rep in $(seq "$reps"); do
  host_task a ansible_ping "$rep" -m ping
  reset; host_task a ansible_module "$rep" -m tiering.pmem.memory_blocks -a 'device=dax0.0 state=online_movable'
  check ansible_module
  host_task a ansible_module_noop "$rep" -m tiering.pmem.memory_blocks -a 'device=dax0.0 state=online_movable'
  reset; host_task a ansible_daxctl "$rep" -m command -a 'daxctl online-memory --movable dax0.0'
  check ansible_daxctl
done

echo "# (b) in-guest work only, timed inside the guest"
reset
ANSIBLE_KEEP_REMOTE_FILES=1 ANSIBLE_PIPELINING=False ansible lab "${inv[@]}" -m tiering.pmem.memory_blocks \
  -a 'device=dax0.0 state=online_movable' >/dev/null
payload=$(g 'ls -t /root/.ansible/tmp/ansible-tmp-*/AnsiballZ_memory_blocks.py | head -1')
ANSIBLE_KEEP_REMOTE_FILES=1 ANSIBLE_PIPELINING=False ansible lab "${inv[@]}" -m ping >/dev/null
ping_payload=$(g 'ls -t /root/.ansible/tmp/ansible-tmp-*/AnsiballZ_ping.py | head -1')
for rep in $(seq "$reps"); do
  guest_cmd b guest_python_start "$rep" 'python3 -c pass'
  guest_cmd b guest_ping_payload "$rep" "python3 $ping_payload"
  reset; guest_cmd b guest_module "$rep" "python3 $payload"
  check guest_module
  g "grep -q '\"changed\": true' /tmp/bench.out" || { echo "FAILED: payload did not report changed" >&2; exit 1; }
  guest_cmd b guest_module_noop "$rep" "python3 $payload"
  reset; guest_cmd b guest_daxctl "$rep" 'daxctl online-memory --movable dax0.0'
  check guest_daxctl
  reset; guest_cmd b guest_shell_loop "$rep" "for i in \$(seq $first $last); do f=/sys/devices/system/memory/memory\$i/state; [ \"\$(cat \$f)\" = offline ] && echo online_movable > \$f; done; true"
  check guest_shell_loop
done

if [ "${TASK_LOOP:-0}" = 1 ]; then
  echo "# (c) one Ansible task per block, once"
  reset
  cat > "$work/loop.yml" <<YAML
- hosts: lab
  gather_facts: false
  tasks:
    - name: One task per block (the naive loop)
      ansible.builtin.shell: echo online_movable > /sys/devices/system/memory/memory{{ item }}/state
      loop: "{{ range($last, $first - 1, -1) | list }}"
YAML
  l=$(load); t0=$(date +%s.%N); ansible-playbook "${inv[@]}" "$work/loop.yml" >/dev/null; t1=$(date +%s.%N)
  row c task_loop 1 "$t0" "$t1" "$l"
  check task_loop
fi
