#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: memory_blocks
short_description: Online or offline the memory blocks of a NUMA node, a dax device or a physical range
description:
  - Brings every memory block of the selected memory to O(state) in one task, whatever the number
    of blocks (one pass over C(/sys/devices/system/memory/memoryN/state)), and reports the number
    of blocks per state and zone before and after.
  - Sets the hotplug policy C(/sys/devices/system/memory/auto_online_blocks).
  - When the kernel refuses to offline a block (memory in use, unmovable pages), the module
    reports each refused block with the kernel's error, leaves it as it was, and fails after
    handling all other blocks.
version_added: "0.1.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  node:
    description: NUMA node whose memory blocks are selected.
    type: int
  device:
    description:
      - A dax device in system-ram mode (for example C(dax0.0)); its blocks are those inside its
        physical range.
    type: str
  phys_start:
    description:
      - Start of a physical address range (bytes, C(0x) hex, or with a K/M/G/T suffix); aligned to
        the memory block size. Needs O(phys_size).
    type: str
  phys_size:
    description: Size of the physical range (same formats as O(phys_start)); a multiple of the block size.
    type: str
  blocks:
    description: Memory block numbers (the N of C(memoryN)).
    type: list
    elements: int
  state:
    description:
      - What the selected blocks must be. V(online_movable) (ZONE_MOVABLE, can be offlined again),
        V(online_kernel) (ZONE_NORMAL), V(online) (any zone; the kernel picks), V(offline).
      - Needs one of O(node), O(device), O(phys_start), O(blocks).
    type: str
    choices: [online_movable, online_kernel, online, offline]
  auto_online_blocks:
    description: Policy for memory hot-added later (C(/sys/devices/system/memory/auto_online_blocks)).
    type: str
    choices: [offline, online, online_kernel, online_movable]
  force:
    description:
      - Offline and re-online blocks that are online in another zone than O(state) asks for
        (without it they are reported and the task fails).
      - Allow O(state=offline) of blocks in a kernel zone (not ZONE_MOVABLE) on a node that has CPUs.
    type: bool
    default: false
extends_documentation_fragment:
  - tiering.pmem.attributes
notes:
  - Blocks are written in an order the kernel accepts (ZONE_MOVABLE above ZONE_NORMAL in a node).
  - Runs no commands; reads and writes sysfs only.
seealso:
  - module: tiering.pmem.dax_kmem
"""

EXAMPLES = r"""
- name: Online all memory of the CPU-less pmem node as movable
  tiering.pmem.memory_blocks:
    node: 1
    state: online_movable

- name: Online the blocks of a system-ram dax device
  tiering.pmem.memory_blocks:
    device: dax0.0
    state: online_movable

- name: Offline a physical range (each refusal is reported per block)
  tiering.pmem.memory_blocks:
    phys_start: 0x108000000
    phys_size: 512M
    state: offline

- name: Leave memory hot-added later offline (daxctl needs that on kernels that auto-online)
  tiering.pmem.memory_blocks:
    auto_online_blocks: offline
"""

RETURN = r"""
changed:
  description: Whether any block or the policy changed (would change, in check mode).
  returned: always
  type: bool
  sample: true
actions:
  description: The state changes made (or, in check mode, that would be made).
  returned: always
  type: list
  elements: str
  sample: ["auto_online_blocks: online -> offline", "online_movable 7 blocks: memory33-39"]
selected:
  description: The selected block numbers, compacted.
  returned: always
  type: str
  sample: "33-39"
before:
  description: Counts of the selected blocks per state and zone before the task.
  returned: always
  type: dict
  sample: {total: 7, online: 0, offline: 7, zones: {}}
after:
  description: Counts after the task (predicted in check mode).
  returned: always
  type: dict
  sample: {total: 7, online: 7, offline: 0, zones: {Movable: 7}}
onlined:
  description: Blocks onlined (or to be onlined), compacted.
  returned: always
  type: str
  sample: "33-39"
offlined:
  description: Blocks offlined (or to be offlined), compacted.
  returned: always
  type: str
  sample: ""
refused:
  description: Blocks the kernel refused to change, with its error; they were left as they were.
  returned: always
  type: list
  elements: dict
  sample: [{block: 35, error: "Device or resource busy (errno EBUSY: /sys/devices/system/memory/memory35/state)"}]
auto_online_blocks:
  description: The hotplug policy after the task.
  returned: always
  type: str
  sample: offline
diff:
  description: Blocks per state before and after, grouped in ranges (with --diff).
  returned: when diff mode is on
  type: dict
  sample: {before: "memory33-39: offline\n", after: "memory33-39: online Movable\n"}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_safety as safety
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_blocks as blocks_util
from ansible_collections.tiering.pmem.plugins.module_utils._memmap import parse_size
from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError, run, shorten

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"
# States whose outcome a successful write fully determines (no zone picked by the kernel).
DETERMINED_BY_WRITE = ("online_movable", "offline")


def select_blocks(params, root):
    if params["node"] is not None:
        node = params["node"]
        if node < 0 or not _sysfs.exists("/%s/node%d" % (_sysfs.NODE_DIR, node), root):
            raise ModuleError("NUMA node %s does not exist; online nodes: %s"
                              % (node, ", ".join(str(n) for n in _sysfs.node_ids(root)) or "none"))
        selected = _sysfs.node_memory_block_ids(node, root)
        if not selected:
            raise ModuleError("NUMA node %d has no memory blocks" % node)
        return selected, "node %d" % node
    if params["device"]:
        name = params["device"]
        device = _sysfs.dax_device(name, root)
        if device is None:
            raise ModuleError("dax device %r does not exist; dax devices: %s"
                              % (name, ", ".join(_dax_names(root)) or "none"))
        if device["driver"] != "kmem":
            raise ModuleError("dax device %s is not in system-ram mode (driver %s), so it has no memory "
                              "blocks; use tiering.pmem.dax_kmem to make it system RAM"
                              % (name, device["driver"] or "none"))
        selected = _sysfs.blocks_in_range(device["start"], device["end"], root)
        return selected, "dax device %s" % name
    if params["phys_start"] is not None:
        block_size = _sysfs.memory_block_size(root)
        start = parse_size(str(params["phys_start"]), what="phys_start")
        size = parse_size(str(params["phys_size"]), what="phys_size")
        if start % block_size or size % block_size or size <= 0:
            raise ModuleError("phys_start=%s and phys_size=%s must be non-zero multiples of the memory "
                              "block size 0x%x (%d MiB)"
                              % (shorten(params["phys_start"], quote=False),
                                 shorten(params["phys_size"], quote=False), block_size, block_size >> 20))
        selected = _sysfs.blocks_in_range(start, start + size, root, block_size)
        if not selected:
            raise ModuleError("no memory blocks in 0x%x-0x%x" % (start, start + size - 1))
        return selected, "range 0x%x-0x%x" % (start, start + size - 1)
    present = _sysfs.memory_block_ids(root)
    missing = sorted(set(params["blocks"]) - set(present))
    if missing:
        raise ModuleError("memory blocks %s do not exist; present blocks: %s"
                          % (blocks_util.compact(missing), blocks_util.compact(present)))
    return sorted(set(params["blocks"])), "blocks %s" % blocks_util.compact(params["blocks"])


def _dax_names(root):
    try:
        return sorted(os.listdir(_sysfs.host_path(root, "/" + _sysfs.DAX_DEVICES_DIR)))
    except OSError:
        return []


def check_options(params):
    has_selector = any(params[key] is not None for key in ("node", "device", "phys_start", "blocks"))
    if params["state"] and not has_selector:
        raise ModuleError("state=%s needs the memory to act on: one of node, device, phys_start/phys_size, blocks"
                          % params["state"])
    if has_selector and not params["state"]:
        raise ModuleError("node/device/phys_start/blocks select memory for state, which is missing "
                          "(online_movable, online_kernel, online or offline)")
    if params["blocks"] is not None and not params["blocks"]:
        raise ModuleError("blocks is an empty list: name at least one memory block number")


def refuse_unsafe_offline(plan, what, current, to_set, root):
    """Offlining kernel memory of a CPU node, or memory that holds pages, needs force (or is refused)."""
    params = plan.module.params
    # ZONE_MOVABLE is made to be offlined; kernel zones of a node with CPUs hold kernel data.
    cpu_nodes = set(_sysfs.node_ids(root, "has_cpu"))
    kernel_blocks = set(i for i in to_set if current[i]["zone"] not in (None, "Movable"))
    on_cpu_nodes = sorted(n for n in cpu_nodes if set(_sysfs.node_memory_block_ids(n, root)) & kernel_blocks)
    if on_cpu_nodes and not params["force"]:
        plan.refuse("refusing to offline kernel memory (blocks memory%s, not ZONE_MOVABLE) of node %s, "
                    "which has CPUs; use force=true to try anyway"
                    % (blocks_util.compact(kernel_blocks), ",".join(str(n) for n in on_cpu_nodes)))
    refusal = safety.offline_refusal("%s (memory%s)" % (what, blocks_util.compact(to_set)), to_set,
                                     params["force"], root)
    if refusal:
        plan.refuse(refusal)


def plan_policy(plan, root, texts):
    """auto_online_blocks: one step when the wanted policy differs."""
    policy_before = _sysfs.auto_online_blocks(root)
    wanted_policy = plan.module.params["auto_online_blocks"]
    if wanted_policy and not policy_before:
        raise ModuleError("this kernel has no /sys/devices/system/memory/auto_online_blocks (no memory hotplug)")
    if wanted_policy and wanted_policy != policy_before:
        def set_policy():
            error = _sysfs.set_auto_online_blocks(wanted_policy, root)
            if error:
                plan.refuse("cannot set auto_online_blocks to %s: %s" % (wanted_policy, error))

        plan.step("auto_online_blocks: %s -> %s" % (policy_before, wanted_policy), set_policy)
        texts["before"] += "auto_online_blocks: %s\n" % policy_before
        texts["after"] += "auto_online_blocks: %s\n" % wanted_policy
    plan.result["auto_online_blocks"] = wanted_policy or policy_before


def plan_blocks(plan, root):
    params = plan.module.params
    check_options(params)
    texts = {"before": "", "after": ""}
    plan_policy(plan, root, texts)
    wanted = params["state"]
    if not wanted:
        plan.diff(texts["before"], texts["after"])
        return
    result = plan.result
    selected, what = select_blocks(params, root)
    result["selected"] = blocks_util.compact(selected)
    # Only a plain online or online_kernel needs the zone an offline block would go to.
    current = _sysfs.read_blocks(selected, root, offline_zones=wanted in ("online", "online_kernel"))
    to_offline, to_set, wrong_zone = blocks_util.plan(current, wanted, rezone=params["force"])
    if wrong_zone and not params["force"]:
        zones = sorted(set(current[i]["zone"] for i in wrong_zone))
        plan.refuse("%d blocks of %s (memory%s) are online in zone %s, not %s; offline them first, "
                    "or use force=true to offline and re-online them"
                    % (len(wrong_zone), what, blocks_util.compact(wrong_zone), "/".join(zones), wanted))
    if wanted == "offline" and to_set:
        refuse_unsafe_offline(plan, what, current, to_set, root)
    refused = {}
    if to_offline:
        plan.step("offline %d blocks in the wrong zone: memory%s" % (len(to_offline), blocks_util.compact(to_offline)),
                  lambda: refused.update(_sysfs.set_blocks_state(to_offline, "offline", root)))
    if to_set:
        plan.step("%s %d blocks: memory%s" % (wanted, len(to_set), blocks_util.compact(to_set)),
                  lambda: refused.update(blocks_util.apply([i for i in to_set if i not in refused], wanted, root)))
    result["before"] = blocks_util.counts(current)
    after = blocks_util.predicted(current, wanted, to_set, to_offline)
    result["after"] = blocks_util.counts(after)
    if wanted == "offline":
        result["offlined"] = blocks_util.compact(to_set)
    else:
        result["onlined"] = blocks_util.compact(to_set)
        result["offlined"] = blocks_util.compact(to_offline)
    plan.diff(texts["before"] + blocks_util.describe(current), texts["after"] + blocks_util.describe(after))

    def finish():
        if refused or wanted not in DETERMINED_BY_WRITE:
            final = _sysfs.read_blocks(sorted(current), root, offline_zones=False)
        else:
            # Every write succeeded and leaves no choice to the kernel (online_movable is ZONE_MOVABLE,
            # offline is offline): reading the blocks again would only repeat the prediction.
            final = after
        result["after"] = blocks_util.counts(final)
        if plan.module._diff and current:
            # What the kernel actually did (differs from the prediction only where it refused).
            result["diff"]["after"] = texts["after"] + blocks_util.describe(final)
        if refused:
            done = [i for i in to_set if i not in refused]
            result["offlined" if wanted == "offline" else "onlined"] = blocks_util.compact(done)
            result["refused"] = [{"block": i, "error": refused[i]} for i in sorted(refused)]
            plan.refuse("the kernel refused %s for %d of %d blocks (left as they were): %s"
                        % (wanted, len(refused), len(to_set) + len(to_offline),
                           "; ".join("memory%d: %s" % (i, refused[i]) for i in sorted(refused)[:10])
                           + (" ..." if len(refused) > 10 else "")))

    plan.when_applied(finish)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            node=dict(type="int"),
            device=dict(type="str"),
            phys_start=dict(type="str"),
            phys_size=dict(type="str"),
            blocks=dict(type="list", elements="int"),
            state=dict(type="str", choices=list(blocks_util.WANTED_ZONES) + ["offline"]),
            auto_online_blocks=dict(type="str", choices=list(_sysfs.AUTO_ONLINE_POLICIES)),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[["node", "device", "phys_start", "blocks"]],
        required_together=[["phys_start", "phys_size"]],
        required_one_of=[["state", "auto_online_blocks"]],
        required_by={"phys_size": "phys_start"},
        supports_check_mode=True,
    )
    root = ROOT
    run(module, lambda plan: plan_blocks(plan, root), selected="", before={}, after={}, onlined="", offlined="",
        refused=[])


if __name__ == "__main__":
    main()
