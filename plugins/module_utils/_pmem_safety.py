# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What makes a namespace or dax device unsafe to destroy or reconfigure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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


def hazards(namespace, root="/"):
    """Reasons not to touch ``namespace`` without force, and reasons not to touch it even with force."""
    need_force, never = [], []
    mounted = mounts_of_blockdev(namespace.get("blockdev"), root)
    if mounted:
        need_force.append("/dev/%s is mounted on %s" % (namespace["blockdev"], ", ".join(mounted)))
    system_ram, online, total = dax_memory_state(namespace.get("chardev"), root)
    if system_ram:
        need_force.append("%s is system RAM (kmem)" % namespace["chardev"])
        if online:
            never.append("%s has %d of %d memory blocks online; offline them first (tiering.pmem.dax_kmem "
                         "mode=devdax, or tiering.pmem.memory_blocks device=%s state=offline)"
                         % (namespace["chardev"], online, total, namespace["chardev"]))
    return need_force, never
