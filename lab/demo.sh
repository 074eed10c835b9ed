#!/usr/bin/env bash
# make demo: boot a lab guest with an emulated NVDIMM, run the collection's main playbook
# against it, and show what it did to the guest's memory. Leaves nothing running unless KEEP=1.
#
#   DEMO_RELEASE=trixie|bookworm  DEMO_FLAVOUR=nvdimm|legacy|cxl (or FLAVOUR=)  DEMO_PLAYBOOK=playbooks/provision.yml  KEEP=1
#   make demo FLAVOUR=cxl: a CXL type-3 device without a region becomes RAM on its own node (trixie's QEMU 10).
set -euo pipefail
cd "$(dirname "$0")/.."

release=${DEMO_RELEASE:-trixie}
flavour=${DEMO_FLAVOUR:-${FLAVOUR:-nvdimm}}
playbook=${DEMO_PLAYBOOK:-playbooks/provision.yml}
name=demo-$release-$flavour
work=$(mktemp -d)
lab() { python3 lab/labctl.py "$@"; }

cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "KEEP=1: $name is still running. Log in: python3 lab/labctl.py ssh $name ; stop: python3 lab/labctl.py down $name"
  else
    lab down "$name" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

snapshot() {
  # The command runs in the guest's shell: its $(...) and $t must not expand here.
  # shellcheck disable=SC2016
  lab ssh "$name" 'echo "# MemTotal"; grep MemTotal /proc/meminfo; echo "# NUMA nodes (numactl -H)"; numactl -H;
    echo "# memory tiers"; for t in /sys/devices/virtual/memory_tiering/memory_tier*; do [ -e "$t/nodelist" ] && echo "$(basename "$t"): nodes $(cat "$t/nodelist")"; done;
    echo "# pmem devices"; ndctl list -N 2>/dev/null | tr -d "\n " | sed "s/},{/}\n{/g"; echo; daxctl list 2>/dev/null | tr -d "\n " | sed "s/},{/}\n{/g"; echo;
    if [ -d /sys/bus/cxl/devices ]; then echo "# CXL regions"; cxl list -R 2>/dev/null | tr -d "\n " | sed "s/},{/}\n{/g"; echo; fi;
    echo "# memory blocks by state"; cat /sys/devices/system/memory/memory*/state | sort | uniq -c;
    echo "# tiering knobs"; echo "demotion_enabled=$(cat /sys/kernel/mm/numa/demotion_enabled 2>/dev/null)"; echo "numa_balancing=$(cat /proc/sys/kernel/numa_balancing)"'
}

echo "== booting a $release guest with $flavour pmem (QEMU/TCG, 127.0.0.1 only)"
lab up "$name" --release "$release" --flavour "$flavour" >/dev/null
lab inventory "$name" > "$work/inventory.json"

echo "== guest BEFORE"
snapshot | tee "$work/before.txt"

echo "== ansible-playbook $playbook"
ansible-playbook -i "$work/inventory.json" "$playbook" -e "@lab/demo-vars.yml" | tee "$work/play.txt"

echo "== guest AFTER"
snapshot | tee "$work/after.txt"

echo "== what changed (diff before → after)"
diff "$work/before.txt" "$work/after.txt" || true
echo
grep -A2 "PLAY RECAP" "$work/play.txt" || true
