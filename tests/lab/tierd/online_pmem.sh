#!/bin/sh
# Make the lab's slow memory a CPU-less NUMA node (system-ram, Movable), by hand, so tierd's test
# does not depend on the provisioning roles (their own scenarios test them): the nvdimm flavour's
# raw namespace0.0, or on the cxl flavour a RAM region of the CXL device mem0. Idempotent: exits 0
# if a CPU-less node with memory already exists.
set -eu
for n in /sys/devices/system/node/node[0-9]*; do
    if [ -z "$(cat "$n/cpulist")" ] && grep -q 'MemTotal: *[1-9]' "$n/meminfo"; then
        echo "pmem node already online: ${n##*/}"
        exit 0
    fi
done
# trixie auto-onlines hotplugged memory and daxctl refuses that policy (LAB-NOTES).
if [ -w /sys/devices/system/memory/auto_online_blocks ]; then
    echo offline > /sys/devices/system/memory/auto_online_blocks
fi
if [ -e /sys/bus/cxl/devices/mem0 ]; then
    cxl create-region -t ram -d decoder0.0 -w 1 -m mem0 >/dev/null
    udevadm settle --timeout=60 || true
else
    ndctl create-namespace -fe namespace0.0 -m devdax >/dev/null
    daxctl reconfigure-device --mode=system-ram dax0.0 >/dev/null
fi
daxctl online-memory dax0.0 --movable >/dev/null 2>&1 || true
for n in /sys/devices/system/node/node[0-9]*; do
    if [ -z "$(cat "$n/cpulist")" ] && grep -q 'MemTotal: *[1-9]' "$n/meminfo"; then
        echo "pmem node online: ${n##*/}"
        exit 0
    fi
done
echo "no CPU-less node with memory after daxctl" >&2
exit 1
