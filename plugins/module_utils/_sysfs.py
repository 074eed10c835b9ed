# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads of /sys and /proc, and the one primitive that writes a sysfs/procfs value.

Owns memory blocks (state, zones, online/offline writes), NUMA nodes and memory tiers, dax devices,
mounts, swap, meminfo, block-device partitions and holders, processes using a device, and page
flags. Files the kernel does not own are _files'; the tiering knobs are _knobs'; /proc/cmdline and
the physical memory maps are _memmap's. Used by every module and module_util that looks at the host.

Every function takes ``root`` (default ``/``) so unit tests can point it at a tree of files
captured from lab guests (tests/unit/fixtures/<state>/root/...).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re

MEMORY_DIR = "sys/devices/system/memory"
NODE_DIR = "sys/devices/system/node"
TIERING_DIR = "sys/devices/virtual/memory_tiering"
DAX_DEVICES_DIR = "sys/bus/dax/devices"

# What can be written to memoryN/state, and to auto_online_blocks (Documentation/admin-guide/mm/memory-hotplug.rst).
BLOCK_STATES = ("online", "online_kernel", "online_movable", "offline")
AUTO_ONLINE_POLICIES = ("offline", "online", "online_kernel", "online_movable")

_MEMORY_ENTRY = re.compile(r"^memory(\d+)$")
_NODE_ENTRY = re.compile(r"^node(\d+)$")
_TIER_ENTRY = re.compile(r"^memory_tier(\d+)$")


def host_path(root, path):
    """Join a fixture/host root with an absolute kernel path such as /sys/... ."""
    return os.path.join(root, path.lstrip("/"))


def read_text(path, root="/", default=None):
    """Content of a sysfs/procfs file, stripped; ``default`` when it does not exist."""
    try:
        with open(host_path(root, path)) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        if default is not None:
            return default
        raise


def write_text(path, value, root="/"):
    """Write one value to a sysfs/procfs file. Returns None, or the kernel's refusal as text."""
    try:
        with open(host_path(root, path), "w") as handle:
            handle.write(value)
    except (IOError, OSError) as exc:
        return "%s (errno %s: %s)" % (os.strerror(exc.errno) if exc.errno else exc,
                                      errno.errorcode.get(exc.errno, exc.errno), path)
    return None


def exists(path, root="/"):
    return os.path.exists(host_path(root, path))


def memory_block_size(root="/"):
    """Bytes per memory block (``block_size_bytes`` is hex without a 0x prefix)."""
    return int(read_text(os.path.join("/", MEMORY_DIR, "block_size_bytes"), root), 16)


def parse_list(text):
    """A kernel cpu/node list such as ``0-2,5`` -> [0, 1, 2, 5]; empty text -> []."""
    result = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            result.extend(range(int(low), int(high) + 1))
        else:
            result.append(int(part))
    return result


def _numbered_entries(directory, pattern, root):
    try:
        names = os.listdir(host_path(root, directory))
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in (pattern.match(name) for name in names) if m)


# ---------------------------------------------------------------- memory blocks

def block_dir(index):
    return "/%s/memory%d" % (MEMORY_DIR, index)


def memory_block_ids(root="/"):
    """Indexes of every memory block the kernel knows (present blocks, online or not)."""
    return _numbered_entries("/" + MEMORY_DIR, _MEMORY_ENTRY, root)


def auto_online_blocks(root="/"):
    return read_text("/%s/auto_online_blocks" % MEMORY_DIR, root, default="")


def set_auto_online_blocks(policy, root="/"):
    return write_text("/%s/auto_online_blocks" % MEMORY_DIR, policy, root)


def _read_attribute(path):
    """A small sysfs attribute's text, stripped ("" when unreadable), read with bare os calls.

    read_blocks reads two files per block for hundreds of blocks; os.open/os.read/os.close cost
    a fraction of open()'s buffered text stack, which shows at 250 blocks under emulation.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def read_blocks(indexes, root="/", offline_zones=True):
    """{index: {"state", "zone", "default_zone", "kernel_zone"}} for the given blocks, one pass.

    ``zone`` is the zone of an online block; for an offline block ``default_zone`` is the zone a
    plain ``online`` would pick (the first entry of its valid_zones, per the kernel's docs) and
    ``kernel_zone`` the one ``online_kernel`` would. With ``offline_zones=False`` the valid_zones
    of offline blocks is not read (both stay None): the caller does not predict an online/
    online_kernel zone, and it is the costlier file (the kernel works out each candidate zone).
    """
    blocks = {}
    base = host_path(root, MEMORY_DIR)
    for index in indexes:
        directory = "%s/memory%d/" % (base, index)
        state = _read_attribute(directory + "state")
        offline = state == "offline"
        zones = _read_attribute(directory + "valid_zones").split() if (offline_zones or not offline) else []
        blocks[index] = {
            "state": state,
            "zone": zones[0] if state == "online" and zones else None,
            "default_zone": zones[0] if offline and zones else None,
            # where online_kernel would put it: DMA32 below 4 GiB on x86-64, else Normal
            "kernel_zone": next((zone for zone in zones if zone != "Movable"), None) if offline else None,
        }
    return blocks


def whole_blocks(start, end, block_size):
    """Indexes of the blocks wholly inside [start, end), present or not (hotplug adds only those)."""
    return list(range((start + block_size - 1) // block_size, end // block_size))


def blocks_in_range(start, end, root="/", block_size=None):
    """Indexes of existing blocks wholly inside the physical byte range [start, end)."""
    present = set(memory_block_ids(root))
    return [index for index in whole_blocks(start, end, block_size or memory_block_size(root)) if index in present]


def set_block_state(index, state, root="/"):
    """Online/offline one block. Returns None, or the kernel's refusal as text."""
    return write_text(block_dir(index) + "/state", state, root)


def set_blocks_state(indexes, state, root="/"):
    """Write ``state`` to every block in one pass; a refusal of one block does not stop the rest.

    Returns {index: refusal text} for the blocks the kernel refused.
    """
    refused = {}
    for index in indexes:
        error = set_block_state(index, state, root)
        if error:
            refused[index] = error
    return refused


# ---------------------------------------------------------------- NUMA nodes and tiers

def node_ids(root="/", which="online"):
    """Nodes from /sys/devices/system/node/<which> (online, possible, has_cpu, has_memory, ...)."""
    return parse_list(read_text("/%s/%s" % (NODE_DIR, which), root, default=""))


def node_memory_block_ids(node, root="/"):
    return _numbered_entries("/%s/node%d" % (NODE_DIR, node), _MEMORY_ENTRY, root)


def node_meminfo(node, root="/"):
    """nodeN/meminfo as {"MemTotal": bytes, ...} (the file counts kB)."""
    info = {}
    text = read_text("/%s/node%d/meminfo" % (NODE_DIR, node), root, default="")
    for line in text.splitlines():
        # "Node 1 MemTotal:        917504 kB"
        match = re.match(r"^Node\s+\d+\s+(\w+(?:\(\w+\))?):\s+(\d+)(\s+kB)?", line)
        if match:
            info[match.group(1)] = int(match.group(2)) * (1024 if match.group(3) else 1)
    return info


def node_info(node, root="/"):
    base = "/%s/node%d" % (NODE_DIR, node)
    meminfo = node_meminfo(node, root)
    distances = [int(d) for d in read_text(base + "/distance", root, default="").split()]
    return {
        "cpus": parse_list(read_text(base + "/cpulist", root, default="")),
        "mem_total": meminfo.get("MemTotal", 0),
        "mem_free": meminfo.get("MemFree", 0),
        "distances": distances,
        "memory_blocks": len(node_memory_block_ids(node, root)),
    }


def memory_tiers(root="/"):
    """[{"tier": N, "nodes": [...]}] from /sys/devices/virtual/memory_tiering (kernel >= 6.1)."""
    tiers = []
    for tier in _numbered_entries("/" + TIERING_DIR, _TIER_ENTRY, root):
        nodes = parse_list(read_text("/%s/memory_tier%d/nodelist" % (TIERING_DIR, tier), root, default=""))
        tiers.append({"tier": tier, "nodes": nodes})
    return tiers


# ---------------------------------------------------------------- dax devices

def dax_device(name, root="/"):
    """sysfs facts of a dax device, or None when it does not exist.

    {"name", "start", "size", "end" (exclusive), "target_node", "driver" (kmem, device_dax or None)}
    """
    base = "/%s/%s" % (DAX_DEVICES_DIR, name)
    if not exists(base, root):
        return None
    start = read_text(base + "/resource", root, default="")
    size = read_text(base + "/size", root, default="0")
    target = read_text(base + "/target_node", root, default="")
    try:
        driver = os.path.basename(os.readlink(host_path(root, base + "/driver")))
    except OSError:
        driver = None
    start_int = int(start, 16) if start else None
    return {
        "name": name,
        "start": start_int,
        "size": int(size),
        "end": start_int + int(size) if start_int is not None else None,
        "target_node": int(target) if target.lstrip("-").isdigit() else None,
        "driver": driver,
    }


def dax_memory_block_ids(name, root="/"):
    """Blocks the kernel made of a system-ram dax device: those inside its physical range."""
    device = dax_device(name, root)
    if device is None or device["start"] is None:
        return []
    return blocks_in_range(device["start"], device["end"], root)


# ---------------------------------------------------------------- /proc

def mounts(root="/"):
    """[(device, mountpoint, fstype)] from /proc/mounts."""
    result = []
    for line in read_text("/proc/mounts", root, default="").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            result.append((fields[0], fields[1].replace("\\040", " "), fields[2]))
    return result


def meminfo(root="/"):
    """/proc/meminfo as {"MemTotal": bytes, ...}."""
    info = {}
    for line in read_text("/proc/meminfo", root, default="").splitlines():
        match = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)(\s+kB)?", line)
        if match:
            info[match.group(1)] = int(match.group(2)) * (1024 if match.group(3) else 1)
    return info


# ---------------------------------------------------------------- who uses a device or memory

def block_partitions(blockdev, root="/"):
    """Partitions of a block device (pmem0 -> [pmem0p1, ...]) from /sys/class/block/<dev>/."""
    if not blockdev:
        return []
    try:
        names = os.listdir(host_path(root, "/sys/class/block/%s" % blockdev))
    except OSError:
        return []
    return sorted(name for name in names
                  if name.startswith(blockdev) and exists("/sys/class/block/%s/%s/partition" % (blockdev, name), root))


def block_holders(blockdev, root="/"):
    """Devices stacked on a block device (device-mapper, md): /sys/class/block/<dev>/holders."""
    try:
        return sorted(os.listdir(host_path(root, "/sys/class/block/%s/holders" % blockdev)))
    except OSError:
        return []


def swaps(root="/"):
    """Devices and files in use as swap (/proc/swaps)."""
    return [line.split()[0] for line in read_text("/proc/swaps", root, default="").splitlines()[1:] if line.strip()]


def processes_using(device_paths, root="/"):
    """{device path: ["1234 (comm)", ...]} of processes that have one of the paths open or mapped.

    Walks every /proc/PID/fd link and /proc/PID/maps once; a process that exits meanwhile is
    simply not listed.
    """
    wanted = set(device_paths)
    found = {}
    proc = host_path(root, "/proc")
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        users = set()
        try:
            for fd in os.listdir(os.path.join(proc, pid, "fd")):
                try:
                    target = os.readlink(os.path.join(proc, pid, "fd", fd))
                except OSError:
                    continue
                if target in wanted:
                    users.add(target)
        except OSError:
            pass
        try:
            with open(os.path.join(proc, pid, "maps")) as handle:
                for line in handle:
                    path = line.rstrip("\n").split(None, 5)[5:]
                    if path and path[0] in wanted:
                        users.add(path[0])
        except (IOError, OSError, IndexError):
            pass
        if users:
            comm = read_text("/proc/%s/comm" % pid, root, default="?")
            for path in users:
                found.setdefault(path, []).append("%s (%s)" % (pid, comm))
    return found


# /proc/kpageflags bits (Documentation/admin-guide/mm/pagemap.rst) that mark a page in use: on an
# LRU list, slab, mapped, anonymous, swap cache, compound (free pages never are), unevictable,
# KSM, page table. A free page has none of them (only the head of a free buddy block is marked).
KPAGEFLAGS_PATH = "/proc/kpageflags"
PAGE_IN_USE_BITS = (5, 7, 11, 12, 13, 15, 16, 18, 21, 26)
_PAGE_IN_USE_MASK = sum(1 << bit for bit in PAGE_IN_USE_BITS)
PAGE_SIZE = 4096


def pages_in_use(indexes, root="/", block_size=None):
    """{block index: pages in use} from /proc/kpageflags, or None when it cannot be read (no root)."""
    import struct
    block_size = block_size or memory_block_size(root)
    pages_per_block = block_size // PAGE_SIZE
    result = {}
    try:
        fd = os.open(host_path(root, KPAGEFLAGS_PATH), os.O_RDONLY)
    except OSError:
        return None
    try:
        for index in indexes:
            used = 0
            offset = index * pages_per_block * 8
            remaining = pages_per_block
            while remaining:
                count = min(remaining, 65536)
                data = os.pread(fd, count * 8, offset)
                if not data:
                    break
                used += sum(1 for flags in struct.unpack("<%dQ" % (len(data) // 8), data)
                            if flags & _PAGE_IN_USE_MASK)
                offset += len(data)
                remaining -= len(data) // 8
            result[index] = used
    except OSError:
        return None
    finally:
        os.close(fd)
    return result
