# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What makes a namespace, dax device or memory block unsafe to change: the data-safety checks.

Owns the probing behind every refusal of ndctl_namespace, dax_kmem and memory_blocks: blkid
signatures on a namespace's block device and its partitions, mounts, holders and swap, processes
that have a device open or mapped, the contents of a devdax device, and pages held by memory
blocks. /proc and /sys are read through _sysfs; blkid runs through the module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import mmap
import os
import re

from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs

# Old ndctl spells the modes differently.
MODE_ALIASES = {"dax": "devdax", "memory": "fsdax", "safe": "sector"}


def namespace_mode(namespace):
    mode = namespace.get("mode", "raw")
    return MODE_ALIASES.get(mode, mode)


def mounts_of_blockdev(blockdev, root="/"):
    """Mount points of /dev/<blockdev> and its partitions (pmem0, pmem0p1, pmem0s...)."""
    if not blockdev:
        return []
    pattern = re.compile(r"^/dev/%s(p\d+)?$" % re.escape(blockdev))
    return [mountpoint for device, mountpoint, _fstype in _sysfs.mounts(root) if pattern.match(device)]


def dax_memory_state(chardev, root="/"):
    """(is system-ram, online block count, total block count) of a dax device, from sysfs."""
    device = _sysfs.dax_device(chardev, root) if chardev else None
    if not device or device["driver"] != "kmem":
        return False, 0, 0
    blocks = _sysfs.read_blocks(_sysfs.blocks_in_range(device["start"], device["end"], root), root)
    online = sum(1 for block in blocks.values() if block["state"] == "online")
    return True, online, len(blocks)


# How much of a devdax device is read to decide whether it holds data: its first 16 MiB and last
# 2 MiB whole (where PMDK pools, VM images and file headers start), and 4 KiB at up to 4096 evenly
# spaced offsets in between (at most 34 MiB read, whatever the size).
HEAD_BYTES = 16 << 20
TAIL_BYTES = 2 << 20
PROBE_BYTES = 4096
PROBES = 4096
# Offlining memory needs room elsewhere for the pages it holds, and the kernel needs some left over.
OFFLINE_RESERVE_BYTES = 128 << 20


def blkid_signatures(module, device_path):
    """What blkid's low-level probe finds on a block device: ["ext4 filesystem", "dos partition table"].

    Returns (signatures, error): error is text when the probe itself could not run.
    """
    blkid = module.get_bin_path("blkid")
    if not blkid:
        return [], "blkid is not installed, so %s could not be probed for signatures" % device_path
    rc, out, err = module.run_command([blkid, "-p", "-o", "export", device_path],
                                      environ_update={"LANGUAGE": "C", "LC_ALL": "C"})
    if rc == 2:  # blkid: nothing found
        return [], None
    if rc != 0:
        return [], "blkid -p %s failed (rc %s): %s" % (device_path, rc, (err or out).strip()[:200] or "no output")
    fields = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    found = []
    if fields.get("TYPE"):
        found.append("%s %s" % (fields["TYPE"][:64], fields.get("USAGE", "signature")[:32]))
    if fields.get("PTTYPE"):
        found.append("%s partition table" % fields["PTTYPE"][:32])
    if not found:
        found.append("a signature blkid reports as %s" % ", ".join(sorted(fields))[:120])
    return found, None


def devdax_contents(chardev, size, root="/"):
    """None when the sampled bytes of /dev/<chardev> are all zero (as a fresh namespace reads),
    else a description of what was found or why it could not be read."""
    path = _sysfs.host_path(root, "/dev/%s" % chardev)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return "/dev/%s could not be opened to check it holds no data (%s)" % (chardev, exc.strerror)
    try:
        try:
            view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            return "/dev/%s could not be mapped to check it holds no data (%s)" % (chardev, exc)
        try:
            spans = [(0, min(HEAD_BYTES, size)), (max(0, size - TAIL_BYTES), size)]
            step = max(PROBE_BYTES, size // PROBES)
            spans += [(offset, min(offset + PROBE_BYTES, size)) for offset in range(HEAD_BYTES, size - TAIL_BYTES, step)]
            for start, end in spans:
                chunk = view[start:end]
                if chunk.count(0) != len(chunk):
                    first = start + next(i for i, byte in enumerate(bytearray(chunk)) if byte)
                    return ("/dev/%s holds data (non-zero bytes from offset 0x%x; a fresh namespace reads as zeros)"
                            % (chardev, first))
        finally:
            view.close()
    finally:
        os.close(fd)
    return None


def blockdev_findings(module, blockdev, root="/"):
    """Why the pmem block device (or a partition of it) must not be overwritten: signatures,
    mounts, holders (device-mapper, md), swap. Probe failures count as findings."""
    if not blockdev:
        return []
    findings = []
    mounted = mounts_of_blockdev(blockdev, root)
    if mounted:
        findings.append("/dev/%s is mounted on %s" % (blockdev, ", ".join(mounted)))
    swaps = set(_sysfs.swaps(root))
    for dev in [blockdev] + _sysfs.block_partitions(blockdev, root):
        signatures, error = blkid_signatures(module, "/dev/" + dev)
        if error:
            findings.append(error)
        if signatures:
            findings.append("/dev/%s holds signatures: %s" % (dev, ", ".join(signatures)))
        holders = _sysfs.block_holders(dev, root)
        if holders:
            findings.append("/dev/%s is used by %s" % (dev, ", ".join(holders)))
        if "/dev/" + dev in swaps:
            findings.append("/dev/%s is in use as swap" % dev)
    return findings


def users_findings(paths, root="/"):
    found = _sysfs.processes_using(paths, root)
    findings = []
    for path in sorted(found):
        users = sorted(found[path])
        more = " and %d more" % (len(users) - 5) if len(users) > 5 else ""
        findings.append("%s is open or mapped by process %s%s" % (path, ", ".join(users[:5]), more))
    return findings


def hazards(module, namespace, root="/", owned=False):
    """Reasons not to touch ``namespace`` without force, and reasons not to touch it even with force.

    ``owned``: the collection made or converted it (its devdax contents are then its own).
    """
    need_force, never = [], []
    blockdev, chardev = namespace.get("blockdev"), namespace.get("chardev")
    need_force += blockdev_findings(module, blockdev, root)
    paths = ["/dev/%s" % dev for dev in ([blockdev] + _sysfs.block_partitions(blockdev, root) if blockdev else [])]
    if chardev:
        paths.append("/dev/%s" % chardev)
    need_force += users_findings(paths, root)
    system_ram, online, total = dax_memory_state(chardev, root)
    if system_ram:
        need_force.append("%s is system RAM (kmem)" % chardev)
        if online:
            never.append("%s has %d of %d memory blocks online; offline them first (tiering.pmem.dax_kmem "
                         "mode=devdax, or tiering.pmem.memory_blocks device=%s state=offline)"
                         % (chardev, online, total, chardev))
    elif chardev and not owned:
        device = _sysfs.dax_device(chardev, root)
        if device and device["size"]:
            contents = devdax_contents(chardev, device["size"], root)
            if contents:
                need_force.append(contents)
    return need_force, never


def memory_in_use(blocks, root="/", block_size=None):
    """(bytes held by the online ``blocks``, how it was counted) for a refusal to offline them.

    Counts pages in use per block from /proc/kpageflags; where that cannot be read, the used
    memory (MemTotal - MemFree) of the blocks' nodes, capped at the blocks' size.
    """
    block_size = block_size or _sysfs.memory_block_size(root)
    pages = _sysfs.pages_in_use(blocks, root, block_size)
    if pages is not None:
        return sum(pages.values()) * _sysfs.PAGE_SIZE, "pages in use (/proc/kpageflags)"
    selected = set(blocks)
    used = 0
    for node in _sysfs.node_ids(root, "online"):
        mine = selected & set(_sysfs.node_memory_block_ids(node, root))
        if mine:
            info = _sysfs.node_meminfo(node, root)
            used += min(len(mine) * block_size, max(0, info.get("MemTotal", 0) - info.get("MemFree", 0)))
    return used, "used memory of their NUMA nodes (MemTotal - MemFree; /proc/kpageflags unreadable)"


def offline_refusal(what, blocks, force, root="/", block_size=None):
    """None when ``blocks`` (online, about to be offlined) may go; else the refusal message.

    Without force, blocks that hold pages are refused. With force, only when the memory left
    online elsewhere has room for those pages plus a reserve for the kernel.
    """
    if not blocks:
        return None
    block_size = block_size or _sysfs.memory_block_size(root)
    used, how = memory_in_use(blocks, root, block_size)
    if not used:
        return None
    if not force:
        return ("refusing to offline %s: its %d online memory blocks hold %d MiB (%s) that the kernel would "
                "have to migrate elsewhere, and a process whose memory cannot move is killed or the offline "
                "fails half way; stop what uses it, or use force=true (allowed only while the rest of the "
                "system has room for it)" % (what, len(blocks), used >> 20, how))
    free_elsewhere = _sysfs.meminfo(root).get("MemFree", 0) - (len(blocks) * block_size - used)
    if used + OFFLINE_RESERVE_BYTES > free_elsewhere:
        return ("refusing to offline %s even with force=true: its blocks hold %d MiB (%s) and the memory left "
                "online elsewhere has %d MiB free, less than that plus a %d MiB reserve; free memory first"
                % (what, used >> 20, how, max(0, free_elsewhere) >> 20, OFFLINE_RESERVE_BYTES >> 20))
    return None
