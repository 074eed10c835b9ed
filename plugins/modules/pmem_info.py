#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pmem_info
short_description: Inventory of persistent memory, dax devices, NUMA nodes and memory tiers
description:
  - Reports NVDIMM regions and namespaces, CXL memory devices, ports, decoders and regions, dax
    devices (devdax or system-ram, target node, memory blocks online and their zones, and whether they
    come from a pmem namespace, a CXL region or firmware Soft Reserved memory), NUMA nodes (memory,
    CPUs, distances), memory tiers, the memory
    block size, the hotplug auto-online policy, kernel tiering knobs, and C(memmap=) reservations
    of legacy pmem from C(/proc/cmdline) and C(/proc/iomem).
  - Runs one C(ndctl list) and one C(daxctl list) in total, whatever the number of devices, and on
    hosts with a CXL root one C(cxl list); the rest is read from sysfs and procfs.
  - Changes nothing.
version_added: "0.1.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options: {}
requirements:
  - ndctl and daxctl on the managed host (and the C(cxl) tool of ndctl on hosts with CXL memory)
extends_documentation_fragment:
  - tiering.pmem.attributes.info_module
notes:
  - A machine without pmem returns empty C(regions), C(namespaces) and C(dax_devices), not a failure.
"""

EXAMPLES = r"""
- name: Read the pmem inventory
  tiering.pmem.pmem_info:
  register: pmem

- name: Show where pmem-backed system RAM lives
  ansible.builtin.debug:
    msg: "{{ pmem.dax_devices | selectattr('mode', 'equalto', 'system-ram') | map(attribute='target_node') | list }}"
"""

RETURN = r"""
regions:
  description: NVDIMM / legacy pmem regions from C(ndctl list -RNDi).
  returned: always
  type: list
  elements: dict
  sample:
    - {dev: region0, size: 1073741824, available_size: 0, type: pmem, align: 16777216,
       persistence_domain: unknown, numa_node: 1, namespaces: [namespace0.0]}
namespaces:
  description:
    - Namespaces of every region (idle seeds of size 0 left out).
    - C(owned) is true for the collection's own namespaces (named C(tiering-pmem), or recorded in
      C(/etc/tiering-pmem/owned.json) when it created or converted them); C(owned_how) says which
      (V(created) or V(converted)), and C(original_mode) the mode a converted one had before.
  returned: always
  type: list
  elements: dict
  sample:
    - {dev: namespace0.0, region: region0, mode: devdax, size: 1054867456,
       uuid: abf69d97-c6ba-4460-bf4f-372918ec992e, name: null, blockdev: null, chardev: dax0.0,
       align: 2097152, map: dev, sector_size: null, state: enabled, owned: true,
       owned_how: converted, original_mode: raw}
dax_devices:
  description:
    - Dax devices from C(daxctl list) joined with their sysfs range and memory blocks.
    - C(owned) is true when the device's namespace, the device itself, or its CXL region is the collection's own.
    - C(source) is V(ndctl) (a pmem namespace), V(cxl) (a CXL region, named in C(cxl_region)),
      V(soft_reserved) (memory the firmware marked Soft Reserved, as many servers hand CXL memory
      over) or V(other).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: dax0.0, mode: system-ram, size: 1054867456, target_node: 1, align: 2097152,
       namespace: namespace0.0, region: region0, movable: true, online_memblocks: 7,
       total_memblocks: 7, start: 4313841664, end: 5368709120, driver: kmem,
       zones: {Movable: 7}, memory_nodes: [1], owned: true, source: ndctl, cxl_region: null}
cxl:
  description:
    - CXL memory from C(cxl list -vvv); empty lists on hosts without a CXL root or without the C(cxl) tool.
  returned: always
  type: dict
  contains:
    memdevs:
      description: Memory devices with C(ram_size) and C(pmem_size) in bytes, their endpoint and port.
      type: list
      elements: dict
      sample: [{memdev: mem0, ram_size: 536870912, pmem_size: 0, serial: 1, host: "0000:0d:00.0",
                numa_node: null, endpoint: endpoint2, port: port1}]
    ports:
      description: Switch and host-bridge ports (not endpoints) with their parent and committed decoders.
      type: list
      elements: dict
      sample: [{port: port1, parent: root0, host: "pci0000:0c", depth: 1, decoders_committed: 0}]
    decoders:
      description:
        - Decoders at every C(level) (V(root), V(port), V(endpoint)). Root decoders are the fixed memory
          windows regions are created in; C(volatile_capable) says a RAM region fits, and
          C(max_available_extent) how much of the window is free.
      type: list
      elements: dict
      sample: [{decoder: decoder0.0, level: root, port: root0, resource: 13153337344, size: 4294967296,
                mode: null, region: null, state: enabled, interleave_ways: 1, volatile_capable: true,
                pmem_capable: true, max_available_extent: 4294967296, targets: ["pci0000:0c"]}]
    regions:
      description:
        - Regions with C(type) (V(ram) or V(pmem)), C(decode_state), the root C(decoder), the C(memdevs)
          in interleave order, their C(dax_devices), the NUMA nodes their memory is on and those nodes'
          memory C(tiers).
        - C(owned) is true for a region M(tiering.pmem.cxl_region) created (recorded by its memory
          devices); its dax devices are then owned too.
      type: list
      elements: dict
      sample: [{region: region0, type: ram, size: 536870912, resource: 13153337344, decode_state: commit,
                interleave_ways: 1, interleave_granularity: 256, decoder: decoder0.0, memdevs: [mem0],
                dax_devices: [dax0.0], numa_nodes: [1], tiers: [22], owned: true}]
numa_nodes:
  description: Online NUMA nodes.
  returned: always
  type: list
  elements: dict
  sample:
    - {node: 1, cpus: [], has_cpu: false, has_memory: true, mem_total: 939524096,
       mem_free: 939524096, distances: {"0": 20, "1": 10}, memory_blocks: 7, tier: 225}
memory_tiers:
  description: Memory tiers of C(/sys/devices/virtual/memory_tiering) (empty on kernels without them).
  returned: always
  type: list
  elements: dict
  sample:
    - {tier: 4, nodes: [0]}
    - {tier: 225, nodes: [1]}
memory_block_size:
  description: Bytes per memory block.
  returned: always
  type: int
  sample: 134217728
memory_blocks:
  description: Number of memory blocks per state (and per zone of the online ones).
  returned: always
  type: dict
  sample: {total: 23, online: 23, offline: 0, zones: {DMA32: 1, Normal: 15, Movable: 7}}
auto_online_blocks:
  description: The hotplug policy in C(/sys/devices/system/memory/auto_online_blocks).
  returned: always
  type: str
  sample: online
demotion_enabled:
  description: C(/sys/kernel/mm/numa/demotion_enabled); null when the kernel has no such knob.
  returned: always
  type: bool
  sample: false
numa_balancing:
  description: C(kernel.numa_balancing) (0 off, 1 NUMA balancing, 2 memory tiering); null when absent.
  returned: always
  type: int
  sample: 0
numa_balancing_promote_rate_limit_mbps:
  description: C(kernel.numa_balancing_promote_rate_limit_MBps); null when absent.
  returned: always
  type: int
  sample: 65536
memmap:
  description: Legacy pmem reservations.
  returned: always
  type: dict
  contains:
    cmdline:
      description: C(memmap=) entries of the running kernel command line.
      type: list
      elements: dict
    iomem:
      description: C(Persistent Memory (legacy)) ranges of C(/proc/iomem) (end exclusive).
      type: list
      elements: dict
  sample:
    cmdline: [{raw: "512M!0x80000000", kind: pmem, size: 536870912, offset: 2147483648}]
    iomem: [{start: 2147483648, end: 2684354560, size: 536870912}]
mem_total:
  description: MemTotal of C(/proc/meminfo) in bytes.
  returned: always
  type: int
  sample: 2979643392
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.tiering.pmem.plugins.module_utils._plan import shorten
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import PmemTools, PmemToolError
from ansible_collections.tiering.pmem.plugins.module_utils._pmem_inventory import gather

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"


class InfoModule(AnsibleModule):
    """AnsibleModule whose refusal of an option says that there are none.

    Ansible's own message would end in "Supported parameters include: ." (an empty list).
    """

    def fail_json(self, msg, **kwargs):
        try:
            unsupported = isinstance(self.validation_result.errors[0], UnsupportedError)
        except (AttributeError, IndexError):
            unsupported = False
        if unsupported:
            given = sorted(name for name in self.params if not name.startswith("_ansible_"))
            msg = ("tiering.pmem.pmem_info takes no options (it only reads the host), but got: %s; "
                   "remove them" % ", ".join(shorten(name, 40, quote=False) for name in given[:10]))
        super(InfoModule, self).fail_json(msg, **kwargs)


def main():
    module = InfoModule(argument_spec={}, supports_check_mode=True)
    try:
        inventory = gather(PmemTools(module), ROOT)
    except PmemToolError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(changed=False, **inventory)


if __name__ == "__main__":
    main()
