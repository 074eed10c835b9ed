#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dax_kmem
short_description: Make a dax device system RAM (kmem) on its NUMA node, online in the zone asked for
description:
  - Switches a dax device between V(devdax) and V(system_ram) (the kmem driver hot-adds its range
    as memory on the device's target NUMA node), onlines or offlines its memory blocks in the
    zone asked for, and optionally makes that survive a reboot.
  - Handles kernels that auto-online hot-added memory (Debian trixie), where
    C(daxctl reconfigure-device) refuses with "kernel policy will auto-online memory, aborting";
    the module sets C(auto_online_blocks) to C(offline) for the reconfigure, restores it, then
    onlines every block itself in one pass, so the memory ends in the zone asked for on any kernel.
    It reports the zone the blocks actually got.
  - Refuses a layout where movable memory would exceed O(movable_ratio) times the kernel (normal)
    memory, unless O(force=true), because the kernel cannot place its own allocations in ZONE_MOVABLE
    (Documentation/admin-guide/mm/memory-hotplug.rst; ndctl issue 110, OOM).
  - Refuses, unless O(force=true), to make system RAM of a dax device that a process has open or
    mapped, or of a pmem-backed devdax device that the collection did not create or convert and whose
    sampled contents are not all zeros (it holds an application's data; see
    M(tiering.pmem.ndctl_namespace) for how it is sampled). Volatile dax devices without a pmem
    namespace (firmware "Soft Reserved" / hmem, CXL RAM regions) hold nothing across a boot, so only
    their users are checked. What it converts is recorded in C(/etc/tiering-pmem/owned.json).
  - Refuses to offline memory blocks that hold pages (O(mode=devdax), O(online=false)) unless
    O(force=true), and even then unless the memory left online has room for those pages.
version_added: "0.1.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  device:
    description: The dax device, for example C(dax0.0).
    type: str
  namespace:
    description: Select the dax device of this devdax namespace (for example C(namespace0.0)).
    type: str
  region:
    description: Select the only dax device of this region (C(region0) or C(0)).
    type: str
  mode:
    description: V(system_ram) hot-adds the device as memory; V(devdax) gives it back as a character device.
    type: str
    choices: [system_ram, devdax]
    default: system_ram
  movable:
    description: Online the memory in ZONE_MOVABLE (true) or ZONE_NORMAL (false).
    type: bool
    default: true
  online:
    description: Whether the memory blocks of a system_ram device are online.
    type: bool
    default: true
  persistent:
    description:
      - Make the device system RAM again at boot (a systemd unit C(tiering-pmem-dax-kmem@DEVICE)
        with C(/etc/tiering-pmem/dax-kmem/DEVICE.conf)); V(false) removes that configuration.
      - Only with O(mode=system_ram); O(mode=devdax) always removes it.
    type: bool
    default: true
  movable_ratio:
    description: Largest allowed ratio of movable to normal online memory after the change.
    type: float
    default: 3.0
  force:
    description:
      - Go beyond O(movable_ratio); convert a device that holds data or is in use (its data is lost,
        its users get SIGBUS); offline memory that holds pages while the rest of the system has room.
    type: bool
    default: false
extends_documentation_fragment:
  - tiering.pmem.attributes
requirements:
  - daxctl, the kmem kernel module; ndctl when selecting by O(namespace) or O(region)
notes:
  - Debian's daxctl package ships no C(daxdev-reconfigure@.service), and daxctl's own boot-time
    reconfigure would hit the same auto-online refusal, so persistence uses a unit of this collection.
seealso:
  - module: tiering.pmem.ndctl_namespace
  - module: tiering.pmem.memory_blocks
"""

EXAMPLES = r"""
- name: Hot-add the pmem devdax device as movable system RAM on its own NUMA node
  tiering.pmem.dax_kmem:
    device: dax0.0
    mode: system_ram
    movable: true
  register: kmem

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ kmem.device }} -> node {{ kmem.numa_nodes }} in zone {{ kmem.zones }}"

- name: Give the device back as devdax
  tiering.pmem.dax_kmem:
    namespace: namespace0.0
    mode: devdax
"""

RETURN = r"""
changed:
  description: Whether anything changed (would change, in check mode).
  returned: always
  type: bool
  sample: true
actions:
  description: The steps taken (or that would be taken), commands and sysfs writes.
  returned: always
  type: list
  elements: str
  sample:
    - "auto_online_blocks: online -> offline (daxctl refuses while the kernel auto-onlines)"
    - "daxctl reconfigure-device --mode=system-ram --no-online dax0.0"
    - "auto_online_blocks: offline -> online (restored)"
    - "online_movable 7 blocks: memory33-39"
    - "write /etc/tiering-pmem/dax-kmem/dax0.0.conf"
    - "systemctl enable tiering-pmem-dax-kmem@dax0.0.service"
device:
  description: The dax device.
  returned: always
  type: str
  sample: dax0.0
mode:
  description: The device mode after the task (daxctl spelling).
  returned: always
  type: str
  sample: system-ram
target_node:
  description: The NUMA node the device's memory is meant for.
  returned: always
  type: int
  sample: 1
numa_nodes:
  description: The NUMA nodes that hold the device's memory blocks.
  returned: always
  type: list
  elements: int
  sample: [1]
zones:
  description: Zones of the device's online blocks, with counts (what the kernel actually gave).
  returned: always
  type: dict
  sample: {Movable: 7}
online_blocks:
  description: Online memory blocks of the device.
  returned: always
  type: int
  sample: 7
total_blocks:
  description: Memory blocks of the device.
  returned: always
  type: int
  sample: 7
auto_online_blocks:
  description: The hotplug policy after the task (unchanged by the module).
  returned: always
  type: str
  sample: online
persistent:
  description: Whether the boot-time configuration is in place after the task.
  returned: always
  type: bool
  sample: true
refused:
  description: Blocks the kernel refused to online/offline, with its error.
  returned: always
  type: list
  elements: dict
  sample: []
diff:
  description: Device state before and after (with --diff).
  returned: when diff mode is on
  type: dict
  sample:
    before: "mode: devdax\nonline_blocks: 0\n"
    after: "mode: system-ram\nonline_blocks: 7\nzones: Movable=7\n"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tiering.pmem.plugins.module_utils import _cxl
from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_record as record
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_safety as safety
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_blocks as blocks_util
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_persist as persist
from ansible_collections.tiering.pmem.plugins.module_utils._files import file_mode, read_file, remove_file, write_file_atomic
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import (
    AUTO_ONLINE_REFUSAL, PmemTools, PmemToolError, find_namespace, find_region, namespaces_of)
from ansible_collections.tiering.pmem.plugins.module_utils._plan import STOP, ModuleError, command_text, run

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"


def resolve_device(params, tools):
    if params["device"]:
        return params["device"]
    inventory = tools.ndctl_list()
    if params["namespace"]:
        # A namespace of size 0 (a region's seed) has no dax device: it counts as not there.
        namespace = find_namespace(inventory, params["namespace"], idle=False)
        if not namespace.get("chardev"):
            raise ModuleError("namespace %s is in %s mode and has no dax device; make it devdax first "
                              "(tiering.pmem.ndctl_namespace mode=devdax)"
                              % (params["namespace"], namespace.get("mode")))
        return namespace["chardev"]
    region = find_region(inventory, params["region"])["dev"]
    devices = [ns["chardev"] for ns in namespaces_of(inventory)
               if ns.get("size") and ns.get("region") == region and ns.get("chardev")]
    if len(devices) != 1:
        raise ModuleError("%s has %d dax devices (%s): name one with device="
                          % (region, len(devices), ", ".join(devices) or "none; make a devdax namespace first"))
    return devices[0]


def kernel_memory(root, exclude=()):
    """(movable bytes, normal bytes) of the online memory, leaving out blocks in ``exclude``."""
    size = _sysfs.memory_block_size(root)
    ids = [i for i in _sysfs.memory_block_ids(root) if i not in set(exclude)]
    movable = normal = 0
    for block in _sysfs.read_blocks(ids, root).values():
        if block["zone"] == "Movable":
            movable += size
        elif block["zone"]:
            normal += size
    return movable, normal


def describe(state):
    lines = ["mode: %s" % state["mode"], "online_blocks: %d" % state["online_blocks"],
             "total_blocks: %d" % state["total_blocks"]]
    if state["zones"]:
        lines.append("zones: %s" % ", ".join("%s=%d" % kv for kv in sorted(state["zones"].items())))
    lines.append("persistent: %s" % str(state["persistent"]).lower())
    return "\n".join(lines) + "\n"


def device_state(device, blocks, root, persistent):
    zones = {}
    online = 0
    for block in blocks.values():
        if block["state"] == "online":
            online += 1
            zones[block["zone"]] = zones.get(block["zone"], 0) + 1
    return {"mode": "system-ram" if device["driver"] == "kmem" else "devdax", "online_blocks": online,
            "total_blocks": len(blocks), "zones": zones, "persistent": persistent}


def cxl_region_of(tools, name, root):
    """The CXL region record whose dax device ``name`` is (the boot config creates it again), or None."""
    return _cxl.region_record_of_dax_device(_cxl.inventory(tools.cxl_list(root), []), name)


def persistence_state(device, root, online, movable, cxl_region):
    """(files that differ from what is wanted, unit enabled?)"""
    wanted = persist.wanted_files(device, online, movable, cxl_region)
    stale = [path for path, (content, mode) in sorted(wanted.items())
             if read_file(path, root) != content or file_mode(path, root) != mode]
    enabled = os.path.lexists(_sysfs.host_path(root, "/etc/systemd/system/multi-user.target.wants/"
                                               + persist.unit_instance(device)))
    return stale, enabled


def check_options(params):
    if params["movable_ratio"] <= 0:
        raise ModuleError("movable_ratio=%s must be a positive number (default 3.0 = at most 3 parts movable "
                          "per part normal memory)" % params["movable_ratio"])
    if params["device"] and not params["device"].startswith("dax"):
        raise ModuleError("device=%r is not a dax device name: use the form daxX.Y (see tiering.pmem.pmem_info)"
                          % params["device"])


def plan_device(plan, tools, root):
    module = plan.module
    params = module.params
    result = plan.result
    check_options(params)
    name = resolve_device(params, tools)
    listed = dict((d.get("chardev"), d) for d in tools.daxctl_list())
    device = _sysfs.dax_device(name, root)
    if name not in listed or device is None:
        raise ModuleError("dax device %r does not exist; dax devices: %s"
                          % (name, ", ".join(sorted(listed)) or "none (make a devdax namespace first)"))
    block_size = _sysfs.memory_block_size(root)
    device_blocks = _sysfs.whole_blocks(device["start"], device["end"], block_size)
    want_ram = params["mode"] == "system_ram"
    want_persistent = want_ram and params["persistent"]
    zone_state = "online_movable" if params["movable"] else "online_kernel"

    current_blocks = _sysfs.read_blocks([i for i in device_blocks if i in set(_sysfs.memory_block_ids(root))], root) \
        if device["driver"] == "kmem" else {}
    cxl_region = cxl_region_of(tools, name, root) if want_persistent else None
    stale, enabled = persistence_state(name, root, params["online"], params["movable"], cxl_region)
    has_config = read_file(persist.config_path(name), root) is not None
    before = device_state(device, current_blocks, root, enabled and has_config)
    policy = _sysfs.auto_online_blocks(root)

    # ---- plan
    steps = []  # (kind, payload, description)
    predicted = dict((i, dict(b)) for i, b in current_blocks.items())
    converting = want_ram and device["driver"] != "kmem"
    owned = record.read(root) if converting else []
    namespace = namespace_of(tools, name) if converting else None
    if want_ram:
        if device["driver"] != "kmem":
            refuse_unsafe_conversion(plan, name, device, namespace, owned, root)
            if params["online"] and params["movable"]:
                movable, normal = kernel_memory(root)
                added = len(device_blocks) * block_size
                if normal and (movable + added) > params["movable_ratio"] * normal and not params["force"]:
                    plan.refuse("refusing to make %s movable: movable memory would be %d MiB against %d MiB "
                                "normal (ratio %.1f > movable_ratio %.1f); the kernel cannot allocate its own "
                                "memory in ZONE_MOVABLE. Use movable=false, a larger movable_ratio, or force=true"
                                % (name, (movable + added) >> 20, normal >> 20, float(movable + added) / normal,
                                   params["movable_ratio"]))
            if policy and policy != "offline":
                steps.append(("policy", "offline", "auto_online_blocks: %s -> offline (daxctl refuses while the "
                                                   "kernel auto-onlines)" % policy))
            steps.append(("cmd", tools.reconfigure_argv(name, "system-ram", online=False), None))
            if policy and policy != "offline":
                steps.append(("policy", policy, "auto_online_blocks: offline -> %s (restored)" % policy))
            # Not hot-added yet, so no valid_zones to read: x86-64 puts kernel memory below 4 GiB in DMA32.
            predicted = dict((i, blocks_util.offline_block("DMA32" if (i + 1) * block_size <= 1 << 32 else "Normal"))
                             for i in device_blocks)
        if params["online"]:
            to_offline, to_set, _wrong = blocks_util.plan(predicted, zone_state, rezone=True)
            if to_offline:
                steps.append(("blocks", ("offline", to_offline), "offline %d blocks in the wrong zone: memory%s"
                              % (len(to_offline), blocks_util.compact(to_offline))))
            if to_set:
                steps.append(("blocks", (zone_state, to_set), "%s %d blocks: memory%s"
                              % (zone_state, len(to_set), blocks_util.compact(to_set))))
            predicted = blocks_util.predicted(predicted, zone_state, to_set, to_offline)
        else:
            _o, to_set, _w = blocks_util.plan(predicted, "offline")
            refuse_offline_in_use(plan, name, to_set, predicted, root, block_size)
            if to_set:
                steps.append(("blocks", ("offline", to_set), "offline %d blocks: memory%s"
                              % (len(to_set), blocks_util.compact(to_set))))
            predicted = blocks_util.predicted(predicted, "offline", to_set)
    elif device["driver"] == "kmem":
        _o, to_set, _w = blocks_util.plan(current_blocks, "offline")
        refuse_offline_in_use(plan, name, to_set, current_blocks, root, block_size)
        if to_set:
            steps.append(("blocks", ("offline", to_set), "offline %d blocks: memory%s"
                          % (len(to_set), blocks_util.compact(to_set))))
        steps.append(("cmd", tools.reconfigure_argv(name, "devdax"), None))
        predicted = {}

    if converting and not owns(owned, name, namespace):
        steps.append(("record", namespace, "record %s in %s" % (
            "%s (%s, %s)" % (name, namespace["dev"], namespace["region"]) if namespace else name, record.RECORD_PATH)))
    if want_persistent:
        wanted = persist.wanted_files(name, params["online"], params["movable"], cxl_region)
        for path in stale:
            steps.append(("write", (path,) + wanted[path], "write %s" % path))
        if persist.UNIT_PATH in stale:
            steps.append(("cmd", [tools.bin("systemctl"), "daemon-reload"], None))
        if not enabled:
            steps.append(("cmd", [tools.bin("systemctl"), "enable", persist.unit_instance(name)], None))
    else:
        if enabled:
            steps.append(("cmd", [tools.bin("systemctl"), "disable", persist.unit_instance(name)], None))
        if has_config:
            steps.append(("remove", persist.config_path(name), "remove %s" % persist.config_path(name)))
        if not persist.configured_devices(root, exclude=name):
            # The last device no longer needs the boot unit: take the unit and its script away too.
            leftovers = [path for path in (persist.UNIT_PATH, persist.SCRIPT_PATH)
                         if read_file(path, root) is not None]
            for path in leftovers:
                steps.append(("remove", path, "remove %s" % path))
            if persist.UNIT_PATH in leftovers:
                steps.append(("cmd", [tools.bin("systemctl"), "daemon-reload"], None))

    predicted_device = dict(device, driver="kmem" if want_ram else "device_dax")
    after = device_state(predicted_device, predicted, root, want_persistent)
    result.update(device=name, target_node=device["target_node"], auto_online_blocks=policy)
    fill(result, after, predicted, root)
    plan.diff(describe(before), describe(after))
    refused = {}
    appliers = {"policy": set_policy, "cmd": run_command, "blocks": set_blocks,
                "write": write_file, "remove": remove_path, "record": write_record}
    context = dict(plan=plan, tools=tools, root=root, policy=policy, refused=refused, owned=owned, name=name)
    for kind, payload, text in steps:
        plan.step(text or command_text(payload),
                  lambda kind=kind, payload=payload: appliers[kind](context, payload))

    def finish():
        final_device = _sysfs.dax_device(name, root) or predicted_device
        final_blocks = _sysfs.read_blocks(_sysfs.blocks_in_range(device["start"], device["end"], root, block_size),
                                          root) if final_device["driver"] == "kmem" else {}
        _stale, enabled = persistence_state(name, root, params["online"], params["movable"], cxl_region)
        final = device_state(final_device, final_blocks, root,
                             enabled and read_file(persist.config_path(name), root) is not None)
        result["auto_online_blocks"] = _sysfs.auto_online_blocks(root)
        fill(result, final, final_blocks, root)
        if module._diff:
            result["diff"]["after"] = describe(final)
        if refused:
            result["refused"] = [{"block": i, "error": refused[i]} for i in sorted(refused)]
            plan.refuse("the kernel refused %d memory blocks of %s (left as they were): %s"
                        % (len(refused), name, "; ".join("memory%d: %s" % (i, refused[i])
                                                         for i in sorted(refused)[:10])))

    plan.when_applied(finish)


# What each kind of planned step does when applied; ``context`` is what plan_device read.

def set_policy(context, policy):
    error = _sysfs.set_auto_online_blocks(policy, context["root"])
    if error:
        context["plan"].refuse("cannot set auto_online_blocks to %s: %s" % (policy, error))


def run_command(context, argv):
    try:
        context["tools"].run(argv)
    except PmemToolError as exc:
        policy = context["policy"]
        if argv[1:2] == ["reconfigure-device"] and policy and policy != "offline":
            _sysfs.set_auto_online_blocks(policy, context["root"])
        if AUTO_ONLINE_REFUSAL in (exc.stderr or ""):
            exc.msg += " (the kernel policy auto_online_blocks changed while the module ran; rerun the task)"
        raise


def set_blocks(context, payload):
    state, indexes = payload
    refused, root = context["refused"], context["root"]
    # The blocks exist only once kmem hot-added the range.
    present = set(_sysfs.memory_block_ids(root))
    refused.update(blocks_util.apply([i for i in indexes if i in present and i not in refused], state, root))
    if refused:
        return STOP  # e.g. no devdax reconfigure while some memory is still online
    return None


def write_file(context, payload):
    path, content, mode = payload
    write_file_atomic(context["plan"].module, path, content, context["root"], mode=mode)


def remove_path(context, path):
    remove_file(context["plan"].module, path, context["root"])


def write_record(context, namespace):
    owned = context["owned"]
    entries = record.with_namespace(owned, namespace, "converted", "devdax") if namespace \
        else record.with_device(owned, context["name"])
    record.write(context["plan"].module, entries, context["root"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            mode=dict(type="str", choices=["system_ram", "devdax"], default="system_ram"),
            device=dict(type="str"),
            namespace=dict(type="str"),
            region=dict(type="str"),
            movable=dict(type="bool", default=True),
            online=dict(type="bool", default=True),
            persistent=dict(type="bool", default=True),
            movable_ratio=dict(type="float", default=3.0),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[["device", "namespace", "region"]],
        required_one_of=[["device", "namespace", "region"]],
        supports_check_mode=True,
    )
    root = ROOT
    run(module, lambda plan: plan_device(plan, PmemTools(module), root), refused=[])


def namespace_of(tools, device):
    """The pmem namespace behind a dax device, or None (no ndctl, or a device without one)."""
    if not tools.module.get_bin_path("ndctl"):
        return None
    return next((dict(ns) for ns in namespaces_of(tools.ndctl_list()) if ns.get("chardev") == device), None)


def owns(owned, device, namespace):
    return record.owns(owned, namespace) if namespace else record.owns_device(owned, device)


def refuse_unsafe_conversion(plan, name, device, namespace, owned, root):
    findings = safety.users_findings(["/dev/%s" % name], root)
    if namespace and not owns(owned, name, namespace) and device["size"]:
        contents = safety.devdax_contents(name, device["size"], root)
        if contents:
            findings.append(contents)
    if findings and not plan.module.params["force"]:
        plan.refuse("refusing to make %s%s system RAM without force=true: %s (its data would be lost; "
                    "the collection converts only devices it created or that hold nothing)"
                    % (name, " (%s)" % namespace["dev"] if namespace else "", "; ".join(findings)))


def refuse_offline_in_use(plan, name, to_offline, blocks, root, block_size):
    online = [i for i in to_offline if blocks.get(i, {}).get("state") == "online"]
    refusal = safety.offline_refusal("the memory of %s" % name, online, plan.module.params["force"], root, block_size)
    if refusal:
        plan.refuse(refusal)


def fill(result, state, blocks, root):
    result.update(mode=state["mode"], zones=state["zones"], online_blocks=state["online_blocks"],
                  total_blocks=state["total_blocks"], persistent=state["persistent"])
    nodes = set()
    if blocks:
        for node in _sysfs.node_ids(root, "possible") or _sysfs.node_ids(root, "online"):
            if set(_sysfs.node_memory_block_ids(node, root)) & set(blocks):
                nodes.add(node)
        if not nodes and result.get("target_node") is not None:
            nodes.add(result["target_node"])  # check mode: blocks not hot-added yet
    result["numa_nodes"] = sorted(nodes)


if __name__ == "__main__":
    main()
