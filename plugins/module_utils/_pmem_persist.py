# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot-time persistence of dax_kmem: a systemd unit template of ours plus one config per device.

Why not daxctl's own ``daxctl.conf.d`` + ``daxdev-reconfigure@.service``: Debian's daxctl package
ships the udev rule but not that unit, and on kernels that auto-online hotplugged memory (trixie)
``daxctl reconfigure-device`` refuses at boot ("kernel policy will auto-online memory, aborting").
Our unit clears the auto-online policy around the reconfigure and onlines the blocks in the zone
asked for, on every release, with or without namespace labels (legacy pmem has no uuid).

A device of a CXL RAM region carries the region in its config (root decoder, memory devices, interleave
granularity): platforms that do not program the CXL decoders at boot (QEMU; many hosts for regions made
by ``cxl create-region``) forget the region on reboot, so the script creates it again first, with the
memory left offline, as cxl_region did. Regions are numbered in creation order, so the region and
its dax device come back under the same names.

Owns the unit, its script and ``/etc/tiering-pmem/dax-kmem/DEVICE.conf`` (their texts and paths);
dax_kmem writes them and cxl_region removes them through _files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path

UNIT_NAME = "tiering-pmem-dax-kmem@.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME
SCRIPT_PATH = "/usr/local/sbin/tiering-pmem-dax-kmem"
CONFIG_DIR = "/etc/tiering-pmem/dax-kmem"

# No Requires= on dev-daxX.Y.device: that character device goes away once kmem owns the range,
# which would fail (or stop) the unit whenever it is started after the first boot step.
UNIT_TEXT = """# Managed by tiering.pmem.dax_kmem: do not edit.
[Unit]
Description=tiering.pmem: dax device %I as system RAM
After=systemd-modules-load.service
Wants=systemd-modules-load.service
# tierd places pages on this memory: it starts once the memory is online.
Before=tierd.service
ConditionPathExists=/etc/tiering-pmem/dax-kmem/%I.conf

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tiering-pmem-dax-kmem %I
TimeoutStartSec=300

[Install]
WantedBy=multi-user.target
"""

SCRIPT_TEXT = r"""#!/bin/sh
# Managed by tiering.pmem.dax_kmem: do not edit.
# Makes dax device $1 system RAM as /etc/tiering-pmem/dax-kmem/$1.conf says (ONLINE, MOVABLE).
set -eu
dev="$1"
. "/etc/tiering-pmem/dax-kmem/$dev.conf"
policy_file=/sys/devices/system/memory/auto_online_blocks
if [ -n "${CXL_MEMDEVS:-}" ] && [ ! -e "/sys/bus/dax/devices/$dev" ]; then
    # The CXL RAM region of this device, if the platform did not keep it: wait for its memory
    # devices (cxl_mem probes them asynchronously), then create it with its memory left offline.
    # cxl create-region takes only memdevs whose driver is bound ("no active memdevs found" before).
    for memdev in $CXL_MEMDEVS; do
        tries=0
        while [ ! -e "/sys/bus/cxl/devices/$memdev/driver" ]; do
            tries=$((tries + 1))
            if [ "$tries" -gt 240 ]; then
                echo "tiering-pmem-dax-kmem: CXL memory device $memdev not ready after 120 s" >&2
                exit 1
            fi
            sleep 0.5
        done
    done
    udevadm settle --timeout=60 2>/dev/null || true
    if [ ! -e "/sys/bus/dax/devices/$dev" ]; then
        exec 9>/run/tiering-pmem-dax-kmem.lock
        flock 9
        policy=$(cat "$policy_file")
        [ "$policy" = offline ] || echo offline > "$policy_file"
        ways=$(set -- $CXL_MEMDEVS; echo $#)
        # The endpoint's port and decoders come up after the driver binds: retry while they do.
        attempt=1
        while :; do
            rc=0
            cxl create-region -t ram -d "$CXL_DECODER" -w "$ways" ${CXL_GRANULARITY:+-g "$CXL_GRANULARITY"} \
                -m $CXL_MEMDEVS || rc=$?
            if [ "$rc" -eq 0 ] || [ "$attempt" -ge 10 ]; then
                break
            fi
            echo "tiering-pmem-dax-kmem: $dev: cxl create-region attempt $attempt failed (rc $rc), retrying in 3 s" >&2
            attempt=$((attempt + 1))
            sleep 3
            udevadm settle --timeout=30 2>/dev/null || true
        done
        udevadm settle --timeout=60 2>/dev/null || true
        [ "$policy" = offline ] || echo "$policy" > "$policy_file"
        flock -u 9
        if [ "$rc" -eq 0 ]; then
            echo "tiering-pmem-dax-kmem: $dev: created the CXL RAM region of $CXL_MEMDEVS in $CXL_DECODER again"
        else
            echo "tiering-pmem-dax-kmem: cxl create-region for $dev ($CXL_MEMDEVS) failed: rc $rc" >&2
        fi
    fi
fi
# The dax driver probes asynchronously after its module loads: wait for the device, up to
# 170 s (the unit allows 300 s in all): emulated lab guests under load took 60-200 s to boot.
tries=0
while [ ! -e "/sys/bus/dax/devices/$dev" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 340 ]; then
        echo "tiering-pmem-dax-kmem: no dax device $dev after 170 s" >&2
        exit 1
    fi
    sleep 0.5
done
# The device appears before udev has loaded and bound its driver (device_dax, by modalias):
# reconfiguring during that bind fails ("daxctl_dev_disable: failed to disable", EBUSY; seen on a
# loaded trixie lab guest). Let udev finish, wait for a driver, and retry a failed reconfigure.
udevadm settle --timeout=60 2>/dev/null || true
tries=0
while [ ! -e "/sys/bus/dax/devices/$dev/driver" ] && [ "$tries" -lt 60 ]; do
    tries=$((tries + 1))
    sleep 0.5
done
driver() { basename "$(readlink "/sys/bus/dax/devices/$dev/driver" 2>/dev/null || echo none)"; }
if [ "$(driver)" != kmem ]; then
    # auto_online_blocks is one switch for the whole kernel, and every device's unit starts at boot
    # at once: without a lock one unit restores "online" while another hot-adds, and the kernel
    # onlines that device's memory in ZONE_NORMAL itself.
    exec 9>/run/tiering-pmem-dax-kmem.lock
    flock 9
    # daxctl refuses while the kernel would auto-online the memory: clear the policy around it.
    policy=$(cat "$policy_file")
    [ "$policy" = offline ] || echo offline > "$policy_file"
    attempt=1
    while :; do
        rc=0
        daxctl reconfigure-device --mode=system-ram --no-online "$dev" || rc=$?
        if [ "$rc" -eq 0 ] || [ "$(driver)" = kmem ] || [ "$attempt" -ge 5 ]; then
            break
        fi
        echo "tiering-pmem-dax-kmem: $dev: reconfigure attempt $attempt failed (rc $rc), retrying in 3 s" >&2
        attempt=$((attempt + 1))
        sleep 3
        udevadm settle --timeout=30 2>/dev/null || true
    done
    [ "$policy" = offline ] || echo "$policy" > "$policy_file"
    flock -u 9
    [ "$rc" -eq 0 ] || [ "$(driver)" = kmem ] || exit "$rc"
fi
[ "${ONLINE:-1}" = 1 ] || exit 0
# Online the offline blocks of the device's range (daxctl online-memory fails when none is offline).
# ZONE_MOVABLE must lie above ZONE_NORMAL: movable blocks from the top, kernel ones from the bottom.
start=$(($(cat "/sys/bus/dax/devices/$dev/resource")))
size=$(cat "/sys/bus/dax/devices/$dev/size")
block=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
first=$(((start + block - 1) / block))
end=$(((start + size) / block))
if [ "${MOVABLE:-1}" = 1 ]; then state=online_movable; else state=online_kernel; fi
in_wanted_zone() {
    zone=$(cat "/sys/devices/system/memory/memory$1/valid_zones")
    if [ "$state" = online_movable ]; then [ "$zone" = Movable ]; else [ "$zone" != Movable ]; fi
}
i=0
while [ "$i" -lt $((end - first)) ]; do
    if [ "$state" = online_movable ]; then n=$((end - 1 - i)); else n=$((first + i)); fi
    file=/sys/devices/system/memory/memory$n/state
    # Memory something else onlined in the other zone at boot holds nothing yet: move it.
    if [ -e "$file" ] && [ "$(cat "$file")" = online ] && ! in_wanted_zone "$n"; then
        echo "tiering-pmem-dax-kmem: $dev: memory$n came up in zone $zone, moving it to $state" >&2
        echo offline > "$file" || true
    fi
    if [ -e "$file" ] && [ "$(cat "$file")" = offline ]; then
        echo "$state" > "$file"
    fi
    i=$((i + 1))
done
"""


def config_path(device):
    return "%s/%s.conf" % (CONFIG_DIR, device)


def config_text(online, movable, cxl_region=None):
    text = ("# Managed by tiering.pmem.dax_kmem: do not edit.\nONLINE=%d\nMOVABLE=%d\n"
            % (1 if online else 0, 1 if movable else 0))
    if cxl_region:
        text += "# From CXL %s: created again at boot when the platform does not keep it.\n" % cxl_region["region"]
        text += "CXL_DECODER=%s\nCXL_MEMDEVS=\"%s\"\n" % (cxl_region["decoder"], " ".join(cxl_region["memdevs"]))
        if len(cxl_region["memdevs"]) > 1 and cxl_region.get("interleave_granularity"):
            text += "CXL_GRANULARITY=%d\n" % cxl_region["interleave_granularity"]
    return text


def configured_devices(root="/", exclude=None):
    """Devices with a boot config of ours (CONFIG_DIR/DEVICE.conf), ``exclude`` left out."""
    try:
        names = os.listdir(host_path(root, CONFIG_DIR))
    except OSError:
        return []
    return sorted(name[:-len(".conf")] for name in names if name.endswith(".conf") and name[:-len(".conf")] != exclude)


def unit_instance(device):
    return "tiering-pmem-dax-kmem@%s.service" % device


def wanted_files(device, online, movable, cxl_region=None):
    """{path: (content, mode)} that persistence needs; ``cxl_region``: the device's CXL region record (_cxl)."""
    return {
        UNIT_PATH: (UNIT_TEXT, 0o644),
        SCRIPT_PATH: (SCRIPT_TEXT, 0o755),
        config_path(device): (config_text(online, movable, cxl_region), 0o644),
    }
