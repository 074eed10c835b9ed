# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning and applying memory block state changes (shared by memory_blocks and dax_kmem)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs

# valid_zones reads "none" for a block spanning several zones (the first block: DMA and DMA32).
KERNEL_ZONES = ("DMA", "DMA32", "Normal", "none")
# The zone an online block must be in to satisfy each wanted state (None: any zone).
WANTED_ZONES = {"online_movable": ("Movable",), "online_kernel": KERNEL_ZONES, "online": None}


def compact(indexes):
    """[33, 34, 35, 39] -> "33-35,39" (readable lists of thousands of blocks)."""
    runs = []  # [first, last] pairs
    for index in sorted(indexes):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(first) if first == last else "%d-%d" % (first, last) for first, last in runs)


def counts(blocks):
    """{"total", "online", "offline", "zones": {zone: n}} of a {index: {state, zone}} map."""
    result = {"total": len(blocks), "online": 0, "offline": 0, "zones": {}}
    for block in blocks.values():
        if block["state"] in ("online", "offline"):
            result[block["state"]] += 1
        if block["zone"]:
            result["zones"][block["zone"]] = result["zones"].get(block["zone"], 0) + 1
    return result


def satisfied(block, wanted):
    if wanted == "offline":
        return block["state"] == "offline"
    if block["state"] != "online":
        return False
    zones = WANTED_ZONES[wanted]
    return zones is None or block["zone"] in zones


def plan(blocks, wanted, rezone=False):
    """Which blocks to offline first (wrong zone, only with rezone) and which to write ``wanted`` to.

    Returns (to_offline, to_set, wrong_zone): wrong_zone lists online blocks in another zone.
    """
    wrong_zone = sorted(i for i, b in blocks.items()
                        if wanted != "offline" and b["state"] == "online" and not satisfied(b, wanted))
    to_offline = wrong_zone if rezone else []
    to_set = sorted(i for i, b in blocks.items() if not satisfied(b, wanted) and (rezone or i not in wrong_zone))
    return to_offline, to_set, wrong_zone


def offline_block(zone_when_online):
    """An offline block as read_blocks describes it, for predictions."""
    kernel = zone_when_online if zone_when_online and zone_when_online != "Movable" else None
    return {"state": "offline", "zone": None, "default_zone": zone_when_online, "kernel_zone": kernel}


def predicted(blocks, wanted, to_set, to_offline=()):
    """The blocks map as it will be once the plan is applied (for check mode and diffs)."""
    after = dict((i, dict(b)) for i, b in blocks.items())
    for index in list(to_offline) + (list(to_set) if wanted == "offline" else []):
        after[index] = offline_block(blocks[index].get("zone"))
    if wanted != "offline":
        for index in to_set:
            block = after[index]
            if wanted == "online_movable":
                zone = "Movable"
            elif wanted == "online_kernel":
                zone = block.get("kernel_zone") or "Normal"
            else:
                zone = block.get("default_zone") or "Normal"
            after[index] = {"state": "online", "zone": zone, "default_zone": None, "kernel_zone": None}
    return after


def write_order(indexes, wanted):
    """ZONE_MOVABLE must lie above ZONE_NORMAL in a node: kernel blocks go up, movable ones down."""
    return sorted(indexes, reverse=(wanted == "online_movable"))


def apply(indexes, wanted, root="/"):
    """Write ``wanted`` to every block in one pass. Returns {index: kernel refusal}."""
    return _sysfs.set_blocks_state(write_order(indexes, wanted), wanted, root)


def describe(blocks):
    """Text lines "memory33-39: online Movable" grouping equal neighbours (for --diff)."""
    lines = []
    groups = {}
    for index, block in sorted(blocks.items()):
        label = block["state"] + ((" " + block["zone"]) if block["zone"] else "")
        groups.setdefault(label, []).append(index)
    for label, members in sorted(groups.items(), key=lambda item: item[1][0]):
        for part in compact(members).split(","):
            lines.append("memory%s: %s" % (part, label))
    lines.sort(key=lambda line: int(line[len("memory"):].split("-")[0].split(":")[0]))
    return "\n".join(lines) + "\n"
