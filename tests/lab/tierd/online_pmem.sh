#!/bin/sh
# Make the nvdimm flavour's raw namespace0.0 a CPU-less NUMA node (system-ram), by hand,
# until the collection's provisioning modules do it. Idempotent: exits 0 if a CPU-less
# node with memory already exists.
set -eu
for n in /sys/devices/system/node/node[0-9]*; do
    if [ -z "$(cat "$n/cpulist")" ] && grep -q 'MemTotal: *[1-9]' "$n/meminfo"; then
        echo "pmem node already online: ${n##*/}"
        exit 0
    fi
done
ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null
# trixie auto-onlines hotplugged memory and daxctl refuses that policy (LAB-NOTES).
if [ -w /sys/devices/system/memory/auto_online_blocks ]; then
    echo offline > /sys/devices/system/memory/auto_online_blocks
fi
daxctl reconfigure-device --mode=system-ram dax0.0 >/dev/null
daxctl online-memory dax0.0 --movable >/dev/null 2>&1 || true
for n in /sys/devices/system/node/node[0-9]*; do
    if [ -z "$(cat "$n/cpulist")" ] && grep -q 'MemTotal: *[1-9]' "$n/meminfo"; then
        echo "pmem node online: ${n##*/}"
        exit 0
    fi
done
echo "no CPU-less node with memory after daxctl" >&2
exit 1
