#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cxl_region
short_description: Create or destroy CXL RAM regions of CXL type-3 memory devices
description:
  - With O(state=present), makes sure the CXL memory devices have a RAM region; the ones named in
    O(memdevs) get one region interleaved across them (in that order), or, without O(memdevs), every
    memory device with RAM capacity that no region uses yet one region each. A device already in a
    RAM region of the same devices is left as it is.
  - The kernel's dax driver turns a new RAM region into a dax device in system-ram mode on its own
    NUMA node. By default (O(leave_offline=true)) the module sets C(auto_online_blocks) to
    C(offline) while it creates the region and restores it after, so the memory stays offline for
    M(tiering.pmem.dax_kmem) to online in the zone asked for (ZONE_MOVABLE by default), as for
    NVDIMMs; O(leave_offline=false) lets the kernel online it by its own policy.
  - With O(state=absent), destroys the region named in O(region). Its memory must be offline;
    a region whose memory is online (it may hold pages) is refused unless O(force=true), and then
    only when the rest of the system has room for what it holds; the module offlines it first.
    A region with a dax device that a process has open or mapped is refused unless O(force=true).
    The boot config that M(tiering.pmem.dax_kmem) wrote for the region's dax devices (which would
    create the region again at boot) goes with it.
  - A region the module creates is recorded as the collection's (by its memory devices) in
    C(/etc/tiering-pmem/owned.json), so C(tiering.pmem.pmem_info) reports it as owned and the
    teardown playbook gives it back; destroying it drops the record.
  - Refusals happen before anything is changed, in check mode too.
version_added: "0.2.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  state:
    description: Whether the region should exist.
    type: str
    choices: [present, absent]
    default: present
  region:
    description:
      - The region to destroy (C(regionN) as C(tiering.pmem.pmem_info) reports it in C(cxl.regions)).
        Needed with O(state=absent); a region is destroyed only when it is named.
    type: str
  memdevs:
    description:
      - The memory devices (C(memN)) of the region, in interleave order. Without it, every memory
        device with RAM capacity that is in no region gets a region of its own.
    type: list
    elements: str
  type:
    description: The region type. Only RAM (volatile) regions are supported.
    type: str
    choices: [ram]
    default: ram
  decoder:
    description:
      - The root decoder (CXL fixed memory window, C(decoderN.M) of level C(root)) to create the
        region in. Default is the first volatile-capable root decoder whose targets include the
        devices' host bridge and whose free capacity holds the region.
    type: str
  interleave_granularity:
    description: Interleave granularity in bytes when the region spans several devices.
    type: int
    choices: [256, 512, 1024, 2048, 4096, 8192, 16384]
  leave_offline:
    description:
      - Keep the new region's memory offline (C(auto_online_blocks) is C(offline) while the region
        is created), so M(tiering.pmem.dax_kmem) onlines it in the zone asked for.
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), destroy a region whose memory is online (offlined first, and only
        while the rest of the system has room for its pages) or whose dax device is in use.
    type: bool
    default: false
requirements:
  - the C(cxl) and C(daxctl) tools of ndctl (Debian trixie's C(ndctl) package has both), a kernel with CXL region support
extends_documentation_fragment:
  - tiering.pmem.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - A RAM region is volatile; its contents and, on platforms that do not program the decoders at
    boot, the region itself do not survive a reboot. The provisioning role creates it again at boot.
seealso:
  - module: tiering.pmem.dax_kmem
  - module: tiering.pmem.pmem_info
"""

EXAMPLES = r"""
- name: Every free CXL memory device gets a RAM region, its memory left offline
  tiering.pmem.cxl_region:

- name: One region interleaved across two devices, in a chosen window
  tiering.pmem.cxl_region:
    memdevs: [mem0, mem1]
    decoder: decoder0.0
    interleave_granularity: 4096

- name: Give a region back (its memory must be offline, or force)
  tiering.pmem.cxl_region:
    region: region0
    state: absent
"""

RETURN = r"""
actions:
  description: What the task did (or, in check mode, would do), in order.
  returned: always
  type: list
  elements: str
  sample: ["auto_online_blocks: online -> offline (the new region's memory stays offline)",
           "cxl create-region -t ram -d decoder0.0 -w 1 -m mem0",
           "record the region of mem0 in /etc/tiering-pmem/owned.json", "udevadm settle --timeout=60",
           "auto_online_blocks: offline -> online (restored)"]
regions:
  description:
    - The RAM regions of the devices the task is about, as C(tiering.pmem.pmem_info) reports them
      in C(cxl.regions), after the task (in check mode, a region to be created has C(region=null)).
  returned: always
  type: list
  elements: dict
  sample: [{region: region0, type: ram, size: 536870912, decode_state: commit, decoder: decoder0.0,
            memdevs: [mem0], dax_devices: [dax0.0], numa_nodes: [1], tiers: [22]}]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tiering.pmem.plugins.module_utils import _cxl, _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_persist as persist
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_record as record
from ansible_collections.tiering.pmem.plugins.module_utils._files import read_file, remove_file
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_safety as safety
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import PmemTools
from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError, command_text, run, shorten

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"


def read_cxl(tools, root):
    return _cxl.inventory(tools.cxl_list(root), _sysfs.memory_tiers(root))


def host_bridge(cxl, memdev):
    """The host bridge (``pci0000:0c``) a memdev sits below: its port chain up to depth 1."""
    ports = dict((port["port"], port) for port in cxl["ports"])
    port = ports.get(memdev["port"])
    while port is not None and port["parent"] in ports:
        port = ports[port["parent"]]
    return port["host"] if port else None


def used_memdevs(cxl):
    return set(name for region in cxl["regions"] for name in region["memdevs"])


def pick_decoder(cxl, memdevs, size):
    """(root decoder record, None) for the region, or (None, why none fits)."""
    bridges = set(host_bridge(cxl, memdev) for memdev in memdevs)
    roots = [d for d in cxl["decoders"] if d["level"] == "root"]
    for decoder in roots:
        if decoder["volatile_capable"] and bridges <= set(decoder["targets"]) \
                and (decoder["max_available_extent"] or 0) >= size:
            return decoder, None
    described = ", ".join("%s (%s, targets %s, %d MiB free)"
                          % (d["decoder"], "volatile" if d["volatile_capable"] else "not volatile-capable",
                             ",".join(d["targets"]) or "none", (d["max_available_extent"] or 0) >> 20)
                          for d in roots) or "none"
    return None, ("no root decoder can hold a %d MiB RAM region of %s (host bridges %s); root decoders: %s"
                  % (size >> 20, ", ".join(m["memdev"] for m in memdevs), ",".join(sorted(bridges)), described))


def planned_regions(plan, cxl, params):
    """[(memdev records, decoder record)] of the regions to create; [] when they all exist."""
    memdevs = dict((memdev["memdev"], memdev) for memdev in cxl["memdevs"])
    used = used_memdevs(cxl)
    if params["memdevs"]:
        names = list(params["memdevs"])
        unknown = [name for name in names if name not in memdevs]
        if unknown:
            plan.refuse("CXL memory device %s does not exist; memory devices: %s"
                        % (", ".join(shorten(name) for name in unknown[:5]), ", ".join(sorted(memdevs)) or "none"))
        if len(set(names)) != len(names):
            plan.refuse("memdevs lists a device twice: %s; name each device once, in interleave order"
                        % ", ".join(names))
        existing = [r for r in cxl["regions"] if r["type"] == "ram" and r["memdevs"] == names]
        if existing:
            return []
        busy = [name for name in names if name in used]
        if busy:
            holders = ", ".join("%s in %s" % (name, next(r["region"] for r in cxl["regions"] if name in r["memdevs"]))
                                for name in busy)
            verb = "it is" if len(busy) == 1 else "they are"
            plan.refuse("refusing to create a region of %s: %s already in another region (%s); destroy that "
                        "region first (state=absent, region=...)" % (", ".join(names), verb, holders))
        groups = [[memdevs[name] for name in names]]
    else:
        groups = [[memdev] for name, memdev in sorted(memdevs.items())
                  if memdev["ram_size"] and name not in used]
        if not groups and not any(r["type"] == "ram" for r in cxl["regions"]):
            plan.refuse("no CXL memory device with RAM capacity is free for a region (memory devices: %s)"
                        % (", ".join(sorted(memdevs)) or "none: this host has no CXL memory"))
    planned = []
    for group in groups:
        no_ram = [m["memdev"] for m in group if not m["ram_size"]]
        if no_ram:
            plan.refuse("%s has no RAM (volatile) capacity; a RAM region needs memory devices with ram_size > 0"
                        % ", ".join(no_ram))
        size = sum(m["ram_size"] for m in group)
        if params["decoder"]:
            decoder = next((d for d in cxl["decoders"] if d["decoder"] == params["decoder"]), None)
            roots = [d["decoder"] for d in cxl["decoders"] if d["level"] == "root"]
            if decoder is None or decoder["level"] != "root":
                plan.refuse("decoder %s is not a root decoder; root decoders (CXL memory windows): %s"
                            % (shorten(params["decoder"]), ", ".join(roots) or "none"))
            if not decoder["volatile_capable"]:
                plan.refuse("decoder %s cannot hold a RAM region (not volatile-capable); root decoders: %s"
                            % (decoder["decoder"], ", ".join(roots)))
            if (decoder["max_available_extent"] or 0) < size:
                plan.refuse("decoder %s has %d MiB free, less than the %d MiB of %s"
                            % (decoder["decoder"], (decoder["max_available_extent"] or 0) >> 20, size >> 20,
                               ", ".join(m["memdev"] for m in group)))
        else:
            decoder, why = pick_decoder(cxl, group, size)
            if decoder is None:
                plan.refuse(why)
        planned.append((group, decoder))
    return planned


def plan_present(plan, tools, root, cxl, params):
    planned = planned_regions(plan, cxl, params)
    policy = _sysfs.auto_online_blocks(root)
    switch_policy = params["leave_offline"] and policy and policy != "offline"
    for group, decoder in planned:
        names = [m["memdev"] for m in group]
        if switch_policy:
            plan.step("auto_online_blocks: %s -> offline (the new region's memory stays offline)" % policy,
                      lambda: set_policy(plan, "offline", root))
        argv = tools.create_region_argv(decoder["decoder"], names, params["type"],
                                        granularity=params["interleave_granularity"] if len(names) > 1 else None)
        plan.step(command_text(argv), lambda argv=argv: create(tools, argv, policy if switch_policy else None, root))
        plan.step("record the region of %s in %s" % (",".join(names), record.RECORD_PATH),
                  lambda names=names: record.write(plan.module, record.with_cxl_region(record.read(root), names), root))
        settle = [tools.module.get_bin_path("udevadm") or "udevadm", "settle", "--timeout=60"]
        plan.step(command_text(settle), lambda settle=settle: tools.run(settle, check=False))
        if switch_policy:
            plan.step("auto_online_blocks: offline -> %s (restored)" % policy,
                      lambda: set_policy(plan, policy, root))
    wanted = [m["memdev"] for group, _d in planned for m in group] + list(params["memdevs"] or [])
    before = [r for r in cxl["regions"] if r["type"] == "ram"
              and (not params["memdevs"] or r["memdevs"] == params["memdevs"])]
    predicted = before + [{"region": None, "type": params["type"], "size": sum(m["ram_size"] for m in group),
                           "decoder": decoder["decoder"], "memdevs": [m["memdev"] for m in group],
                           "decode_state": "commit", "dax_devices": [], "numa_nodes": [], "tiers": []}
                          for group, decoder in planned]
    plan.result["regions"] = predicted
    plan.diff(render(before), render(predicted))

    def reread():
        after = read_cxl(tools, root)
        plan.result["regions"] = [r for r in after["regions"] if r["type"] == "ram"
                                  and (set(r["memdevs"]) & set(wanted) or not params["memdevs"])]
    if planned:
        plan.when_applied(reread)


def plan_absent(plan, tools, root, cxl, params):
    if not params["region"]:
        plan.refuse("state=absent needs region= (the region to destroy: %s)"
                    % (", ".join(r["region"] for r in cxl["regions"]) or "this host has no CXL region"))
    region = next((r for r in cxl["regions"] if r["region"] == params["region"]), None)
    plan.result["regions"] = []
    if region is None:
        return
    devices = dict((d["chardev"], d) for d in tools.daxctl_list())
    offline = []
    for name in region["dax_devices"]:
        device = devices.get(name, {})
        users = safety.users_findings(["/dev/%s" % name], root)
        if users and not params["force"]:
            plan.refuse("refusing to destroy %s: its dax device %s is in use (%s); stop the process, or use "
                        "force=true" % (region["region"], name, "; ".join(users)))
        if device.get("mode") == "system-ram" and device.get("online_memblocks"):
            blocks = [i for i, block in _sysfs.read_blocks(_sysfs.dax_memory_block_ids(name, root), root).items()
                      if block["state"] == "online"]
            if not params["force"]:
                plan.refuse("refusing to destroy %s: the memory of %s is online as system RAM (%d of %d blocks) "
                            "and may hold pages; offline it first (tiering.pmem.dax_kmem, "
                            "tiering.pmem.memory_blocks), or use force=true to have it offlined (allowed only "
                            "while the rest of the system has room for what it holds)"
                            % (region["region"], name, len(blocks), device.get("total_memblocks", len(blocks))))
            refusal = safety.offline_refusal("%s (%s)" % (name, region["region"]), blocks, True, root)
            if refusal:
                plan.refuse(refusal)
            offline.append(name)
    for name in offline:
        argv = tools.offline_memory_argv(name)
        plan.step(command_text(argv), lambda argv=argv: tools.run(argv))
    for argv in (tools.disable_region_argv(region["region"]), tools.destroy_region_argv(region["region"])):
        plan.step(command_text(argv), lambda argv=argv: tools.run(argv))
    plan_forget_boot_config(plan, tools, root, region)
    if record.owns_cxl_region(record.read(root), region["memdevs"]):
        plan.step("drop the region of %s from %s" % (",".join(region["memdevs"]), record.RECORD_PATH),
                  lambda: record.write(plan.module, record.without_cxl_region(record.read(root), region["memdevs"]),
                                       root))
    plan.diff(render([region]), render([]))


def plan_forget_boot_config(plan, tools, root, region):
    """Take away dax_kmem's boot config of the region's dax devices: it would create the region again at boot."""
    configured = [name for name in region["dax_devices"] if read_file(persist.config_path(name), root) is not None]
    for name in configured:
        unit = persist.unit_instance(name)
        if os.path.lexists(_sysfs.host_path(root, "/etc/systemd/system/multi-user.target.wants/" + unit)):
            argv = [tools.bin("systemctl"), "disable", unit]
            plan.step(command_text(argv), lambda argv=argv: tools.run(argv))
        path = persist.config_path(name)
        plan.step("remove %s" % path, lambda path=path: remove_file(plan.module, path, root))
    if configured and not [name for name in persist.configured_devices(root) if name not in configured]:
        leftovers = [path for path in (persist.UNIT_PATH, persist.SCRIPT_PATH) if read_file(path, root) is not None]
        for path in leftovers:
            plan.step("remove %s" % path, lambda path=path: remove_file(plan.module, path, root))
        if persist.UNIT_PATH in leftovers:
            argv = [tools.bin("systemctl"), "daemon-reload"]
            plan.step(command_text(argv), lambda argv=argv: tools.run(argv))


def create(tools, argv, restore_policy, root):
    try:
        tools.run(argv)
    except ModuleError:
        if restore_policy:
            _sysfs.set_auto_online_blocks(restore_policy, root)
        raise


def set_policy(plan, policy, root):
    error = _sysfs.set_auto_online_blocks(policy, root)
    if error:
        plan.refuse("cannot set auto_online_blocks to %s: %s" % (policy, error))


def render(regions):
    lines = []
    for region in regions:
        where = ""
        if region["dax_devices"]:
            where = ", dax %s on node %s" % (",".join(region["dax_devices"]),
                                             ",".join(str(n) for n in region["numa_nodes"]))
        lines.append("%s: %s region of %s, %d MiB in %s%s" % (
            region["region"] or "(new)", region["type"], ",".join(region["memdevs"]), region["size"] >> 20,
            region["decoder"], where))
    return "\n".join(lines) + "\n" if lines else ""


def plan_region(plan, root):
    params = plan.module.params
    if params["state"] == "present" and params["region"]:
        plan.refuse("region=%s names a region to destroy (state=absent); cxl names new regions itself, so "
                    "state=present takes memdevs= (or nothing: every free device)" % shorten(params["region"], quote=False))
    tools = PmemTools(plan.module)
    cxl = read_cxl(tools, root)
    if params["state"] == "present":
        plan_present(plan, tools, root, cxl, params)
    else:
        plan_absent(plan, tools, root, cxl, params)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            region=dict(type="str"),
            memdevs=dict(type="list", elements="str"),
            type=dict(type="str", choices=["ram"], default="ram"),
            decoder=dict(type="str"),
            interleave_granularity=dict(type="int", choices=[256, 512, 1024, 2048, 4096, 8192, 16384]),
            leave_offline=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    root = ROOT
    run(module, lambda plan: plan_region(plan, root), regions=[])


if __name__ == "__main__":
    main()
