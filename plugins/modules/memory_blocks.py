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
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
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

from ansible_collections.tiering.pmem.plugins.module_utils import _memmap
from ansible_collections.tiering.pmem.plugins.module_utils import _plan
from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_safety as safety
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_blocks as blocks_util

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"
# States whose outcome a successful write fully determines (no zone picked by the kernel).
DETERMINED_BY_WRITE = ("online_movable", "offline")


def parse_bytes(module, value, name):
    try:
        return _memmap.parse_size(str(value), what=name)
    except _plan.ModuleError as err:
        module.fail_json(msg=str(err))


def select_blocks(module, root):
    params = module.params
    present = _sysfs.memory_block_ids(root)
    if params["node"] is not None:
        node = params["node"]
        if node < 0 or not _sysfs.exists("/%s/node%d" % (_sysfs.NODE_DIR, node), root):
            module.fail_json(msg="NUMA node %s does not exist; online nodes: %s"
                             % (node, ", ".join(str(n) for n in _sysfs.node_ids(root)) or "none"))
        selected = _sysfs.node_memory_block_ids(node, root)
        if not selected:
            module.fail_json(msg="NUMA node %d has no memory blocks" % node)
        return selected, "node %d" % node
    if params["device"]:
        name = params["device"]
        device = _sysfs.dax_device(name, root)
        if device is None:
            module.fail_json(msg="dax device %r does not exist; dax devices: %s"
                             % (name, ", ".join(_dax_names(root)) or "none"))
        if device["driver"] != "kmem":
            module.fail_json(msg="dax device %s is not in system-ram mode (driver %s), so it has no memory "
                             "blocks; use tiering.pmem.dax_kmem to make it system RAM"
                             % (name, device["driver"] or "none"))
        selected = _sysfs.blocks_in_range(device["start"], device["end"], root)
        return selected, "dax device %s" % name
    if params["phys_start"] is not None:
        block_size = _sysfs.memory_block_size(root)
        start = parse_bytes(module, params["phys_start"], "phys_start")
        size = parse_bytes(module, params["phys_size"], "phys_size")
        if start % block_size or size % block_size or size <= 0:
            module.fail_json(msg="phys_start=%s and phys_size=%s must be non-zero multiples of the memory "
                             "block size 0x%x (%d MiB)"
                             % (_plan.shorten(params["phys_start"], quote=False),
                                _plan.shorten(params["phys_size"], quote=False), block_size, block_size >> 20))
        selected = _sysfs.blocks_in_range(start, start + size, root, block_size)
        if not selected:
            module.fail_json(msg="no memory blocks in 0x%x-0x%x" % (start, start + size - 1))
        return selected, "range 0x%x-0x%x" % (start, start + size - 1)
    missing = sorted(set(params["blocks"]) - set(present))
    if missing:
        module.fail_json(msg="memory blocks %s do not exist; present blocks: %s"
                         % (blocks_util.compact(missing), blocks_util.compact(present)))
    return sorted(set(params["blocks"])), "blocks %s" % blocks_util.compact(params["blocks"])


def _dax_names(root):
    try:
        return sorted(os.listdir(_sysfs.host_path(root, "/" + _sysfs.DAX_DEVICES_DIR)))
    except OSError:
        return []


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
    params = module.params
    root = ROOT
    has_selector = any(params[key] is not None for key in ("node", "device", "phys_start", "blocks"))
    if params["state"] and not has_selector:
        module.fail_json(msg="state=%s needs the memory to act on: one of node, device, phys_start/phys_size, blocks"
                         % params["state"])
    if has_selector and not params["state"]:
        module.fail_json(msg="node/device/phys_start/blocks select memory for state, which is missing "
                         "(online_movable, online_kernel, online or offline)")
    if params["blocks"] is not None and not params["blocks"]:
        module.fail_json(msg="blocks is an empty list: name at least one memory block number")

    actions = []
    result = dict(changed=False, actions=actions, selected="", before={}, after={}, onlined="", offlined="",
                  refused=[])
    before_text = after_text = ""

    policy_before = _sysfs.auto_online_blocks(root)
    wanted_policy = params["auto_online_blocks"]
    if wanted_policy and not policy_before:
        module.fail_json(msg="this kernel has no /sys/devices/system/memory/auto_online_blocks (no memory hotplug)")
    if wanted_policy and wanted_policy != policy_before:
        actions.append("auto_online_blocks: %s -> %s" % (policy_before, wanted_policy))
        before_text += "auto_online_blocks: %s\n" % policy_before
        after_text += "auto_online_blocks: %s\n" % wanted_policy
    result["auto_online_blocks"] = wanted_policy or policy_before

    wanted = params["state"]
    to_offline, to_set, current = [], [], {}
    if wanted:
        selected, what = select_blocks(module, root)
        result["selected"] = blocks_util.compact(selected)
        # Only a plain online or online_kernel needs the zone an offline block would go to.
        current = _sysfs.read_blocks(selected, root, offline_zones=wanted in ("online", "online_kernel"))
        to_offline, to_set, wrong_zone = blocks_util.plan(current, wanted, rezone=params["force"])
        if wrong_zone and not params["force"]:
            zones = sorted(set(current[i]["zone"] for i in wrong_zone))
            module.fail_json(msg="%d blocks of %s (memory%s) are online in zone %s, not %s; offline them first, "
                             "or use force=true to offline and re-online them"
                             % (len(wrong_zone), what, blocks_util.compact(wrong_zone), "/".join(zones), wanted),
                             **result)
        if wanted == "offline" and to_set:
            # ZONE_MOVABLE is made to be offlined; kernel zones of a node with CPUs hold kernel data.
            cpu_nodes = set(_sysfs.node_ids(root, "has_cpu"))
            kernel_blocks = set(i for i in to_set if current[i]["zone"] not in (None, "Movable"))
            on_cpu_nodes = sorted(n for n in cpu_nodes if set(_sysfs.node_memory_block_ids(n, root)) & kernel_blocks)
            if on_cpu_nodes and not params["force"]:
                module.fail_json(msg="refusing to offline kernel memory (blocks memory%s, not ZONE_MOVABLE) of node %s, "
                                 "which has CPUs; use force=true to try anyway"
                                 % (blocks_util.compact(kernel_blocks), ",".join(str(n) for n in on_cpu_nodes)),
                                 **result)
            refusal = safety.offline_refusal("%s (memory%s)" % (what, blocks_util.compact(to_set)), to_set,
                                             params["force"], root)
            if refusal:
                module.fail_json(msg=refusal, **result)
        if to_offline:
            actions.append("offline %d blocks in the wrong zone: memory%s"
                           % (len(to_offline), blocks_util.compact(to_offline)))
        if to_set:
            actions.append("%s %d blocks: memory%s" % (wanted, len(to_set), blocks_util.compact(to_set)))
        result["before"] = blocks_util.counts(current)
        after = blocks_util.predicted(current, wanted, to_set, to_offline)
        result["after"] = blocks_util.counts(after)
        before_text += blocks_util.describe(current)
        after_text += blocks_util.describe(after)
        if wanted == "offline":
            result["offlined"] = blocks_util.compact(to_set)
        else:
            result["onlined"] = blocks_util.compact(to_set)
            result["offlined"] = blocks_util.compact(to_offline)

    result["changed"] = bool(actions)
    if module._diff:
        result["diff"] = dict(before=before_text, after=after_text)
    if module.check_mode or not actions:
        module.exit_json(**result)

    if wanted_policy and wanted_policy != policy_before:
        error = _sysfs.set_auto_online_blocks(wanted_policy, root)
        if error:
            module.fail_json(msg="cannot set auto_online_blocks to %s: %s" % (wanted_policy, error), **result)
    refused = {}
    if to_offline:
        refused.update(_sysfs.set_blocks_state(to_offline, "offline", root))
    if to_set:
        refused.update(blocks_util.apply([i for i in to_set if i not in refused], wanted, root))
    if refused or wanted not in DETERMINED_BY_WRITE:
        final = _sysfs.read_blocks(sorted(current), root, offline_zones=False)
    else:
        # Every write succeeded and leaves no choice to the kernel (online_movable is ZONE_MOVABLE,
        # offline is offline): reading the blocks again would only repeat the prediction.
        final = after
    result["after"] = blocks_util.counts(final)
    if module._diff and current:
        # What the kernel actually did (differs from the prediction only where it refused).
        policy_line = after_text.split("memory", 1)[0] if after_text.startswith("auto_online_blocks") else ""
        result["diff"]["after"] = policy_line + blocks_util.describe(final)
    if refused:
        done = [i for i in to_set if i not in refused]
        if wanted == "offline":
            result["offlined"] = blocks_util.compact(done)
        else:
            result["onlined"] = blocks_util.compact(done)
        result["refused"] = [{"block": i, "error": refused[i]} for i in sorted(refused)]
        module.fail_json(msg="the kernel refused %s for %d of %d blocks (left as they were): %s"
                         % (wanted, len(refused), len(to_set) + len(to_offline),
                            "; ".join("memory%d: %s" % (i, refused[i]) for i in sorted(refused)[:10])
                            + (" ..." if len(refused) > 10 else "")), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
