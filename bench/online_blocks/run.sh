#!/usr/bin/env bash
# Onlining every block of a large system-ram dax device, four ways, in one lab guest:
#   memory_blocks   tiering.pmem.memory_blocks device=dax0.0 state=online_movable (one task)
#   task_loop       one Ansible task per block (ansible.builtin.shell echo ... > memoryN/state, loop)
#   shell_loop      the seed's shell loop over /sys/devices/system/memory/memoryN/state
#   daxctl          daxctl online-memory --movable dax0.0
# Between runs the device's blocks are offlined again (not timed). Prints one line per method.
#   bench/online_blocks/run.sh [PMEM_SIZE (default 16G)] [GUEST_NAME (default m1-bench)]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
size=${1:-16G}
name=${2:-m1-bench}
lab="python3 $repo/lab/labctl.py"
export PATH=$repo/.venv/bin:$PATH ANSIBLE_COLLECTIONS_PATH=$repo/.cache/collections ANSIBLE_HOST_KEY_CHECKING=False
trap '$lab down "$name" >/dev/null 2>&1 || true' EXIT
# ~1.6 % of the pmem size goes to struct pages in DRAM: 2G of DRAM is plenty up to 64G of pmem.
info=$($lab up "$name" --flavour nvdimm --pmem-size "$size" --mem 2G)
port=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$info")
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["identity_file"])' "$info")
inv=(-i '127.0.0.1,' -e ansible_port="$port" -e ansible_user=root -e ansible_ssh_private_key_file="$key"
     -e ansible_python_interpreter=/usr/bin/python3)
g() { $lab ssh "$name" "$@"; }
g 'ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null && echo offline > /sys/devices/system/memory/auto_online_blocks && daxctl reconfigure-device -m system-ram --no-online dax0.0 >/dev/null'
blocks=$(g "daxctl list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"total_memblocks\"])'")
first=$(g "python3 -c 'r=int(open(\"/sys/bus/dax/devices/dax0.0/resource\").read(),16); b=int(open(\"/sys/devices/system/memory/block_size_bytes\").read(),16); print((r+b-1)//b)'")
echo "pmem $size: $blocks blocks from memory$first" >&2
reset() { g 'daxctl offline-memory dax0.0 >/dev/null 2>&1 || true'; }
now() { date +%s.%N; }
report() { python3 -c "import sys; print('%-14s %8.2f s' % (sys.argv[1], float(sys.argv[3]) - float(sys.argv[2])))" "$@"; }

# warm the SSH connection and the module cache so the first method is not penalised
ansible all "${inv[@]}" -m ping >/dev/null
t0=$(now); ansible all "${inv[@]}" -m ping >/dev/null; t1=$(now); report ansible_ping "$t0" "$t1"

reset; t0=$(now)
ansible all "${inv[@]}" -m tiering.pmem.memory_blocks -a 'device=dax0.0 state=online_movable' >/dev/null
t1=$(now); report memory_blocks "$t0" "$t1"
t0=$(now)
ansible all "${inv[@]}" -m tiering.pmem.memory_blocks -a 'device=dax0.0 state=online_movable' >/dev/null
t1=$(now); report memory_blocks_noop "$t0" "$t1"

reset; t0=$(now)
g "for i in \$(seq $first \$(($first + $blocks - 1))); do f=/sys/devices/system/memory/memory\$i/state; [ \"\$(cat \$f)\" = offline ] && echo online_movable > \$f; done; true"
t1=$(now); report shell_loop "$t0" "$t1"

reset; t0=$(now); g 'daxctl online-memory --movable dax0.0 >/dev/null 2>&1'; t1=$(now); report daxctl "$t0" "$t1"

reset
play=$(mktemp --suffix=.yml)
cat > "$play" <<YAML
- hosts: all
  gather_facts: false
  tasks:
    - name: One task per block (the naive loop)
      ansible.builtin.shell: echo online_movable > /sys/devices/system/memory/memory{{ item }}/state
      loop: "{{ range($first, $first + $blocks) | list }}"
YAML
t0=$(now); ansible-playbook "${inv[@]}" "$play" >/dev/null; t1=$(now); report task_loop "$t0" "$t1"
rm -f "$play"
