# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pmem inventory: one ndctl list, one daxctl list, one cxl list (hosts with CXL), and sysfs/procfs
reads, joined.

Owns the shape of pmem_info's result and of the namespace records ndctl_namespace returns
(``namespace_record``). Used by pmem_info and ndctl_namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tiering.pmem.plugins.module_utils import _cxl, _knobs, _memmap, _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils._pmem_blocks import counts
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_record as record
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import namespaces_of

NAMESPACE_KEYS = ("dev", "region", "mode", "size", "uuid", "name", "blockdev", "chardev", "align", "map",
                  "sector_size", "state")


def namespace_record(namespace):
    record = dict((key, namespace.get(key)) for key in NAMESPACE_KEYS)
    record["state"] = namespace.get("state", "enabled")
    if not record["chardev"] and namespace.get("daxregion"):
        devices = namespace["daxregion"].get("devices") or []
        if devices:
            record["chardev"] = devices[0].get("chardev")
    return record


def region_record(region):
    return {
        "dev": region.get("dev"),
        "size": region.get("size"),
        "available_size": region.get("available_size"),
        "max_available_extent": region.get("max_available_extent"),
        "type": region.get("type"),
        "align": region.get("align"),
        "numa_node": region.get("numa_node"),
        "persistence_domain": region.get("persistence_domain"),
        "namespaces": [ns.get("dev") for ns in region.get("namespaces", []) if ns.get("size")],
    }


def dax_record(device, namespaces, root):
    name = device.get("chardev")
    sysfs = _sysfs.dax_device(name, root) or {}
    owner = next((ns for ns in namespaces if ns.get("chardev") == name), {})
    record = {
        "name": name,
        "mode": device.get("mode"),
        "size": device.get("size"),
        "target_node": device.get("target_node"),
        "align": device.get("align"),
        "namespace": owner.get("dev"),
        "region": owner.get("region"),
        "movable": device.get("movable"),
        "online_memblocks": device.get("online_memblocks", 0),
        "total_memblocks": device.get("total_memblocks", 0),
        "start": sysfs.get("start"),
        "end": sysfs.get("end"),
        "driver": sysfs.get("driver"),
        "zones": {},
        "memory_nodes": [],
    }
    if device.get("mode") == "system-ram" and sysfs.get("start") is not None:
        blocks = _sysfs.blocks_in_range(sysfs["start"], sysfs["end"], root)
        for block in _sysfs.read_blocks(blocks, root).values():
            if block["zone"]:
                record["zones"][block["zone"]] = record["zones"].get(block["zone"], 0) + 1
        nodes = set()
        for node in _sysfs.node_ids(root, "online"):
            if set(_sysfs.node_memory_block_ids(node, root)) & set(blocks):
                nodes.add(node)
        record["memory_nodes"] = sorted(nodes)
    return record


def device_source(device, soft_reserved):
    """Where a dax device comes from: an ndctl namespace (NVDIMM or memmap= pmem), a CXL region, or
    memory the firmware marked Soft Reserved (how many servers hand CXL memory over: dax_hmem)."""
    if device["namespace"]:
        return "ndctl"
    if device["cxl_region"]:
        return "cxl"
    start = device.get("start")
    if start is not None and any(low <= start <= high for low, high in soft_reserved):
        return "soft_reserved"
    return "other"


def numa_nodes(root, tiers):
    tier_of = {}
    for tier in tiers:
        for node in tier["nodes"]:
            tier_of[node] = tier["tier"]
    with_cpu = set(_sysfs.node_ids(root, "has_cpu"))
    with_memory = set(_sysfs.node_ids(root, "has_memory"))
    nodes = []
    online = _sysfs.node_ids(root, "online")
    for node in online:
        info = _sysfs.node_info(node, root)
        # nodeN/distance has one entry per online node, in node order.
        distances = dict((str(other), dist) for other, dist in zip(online, info["distances"]))
        nodes.append({
            "node": node,
            "cpus": info["cpus"],
            "has_cpu": node in with_cpu,
            "has_memory": node in with_memory,
            "mem_total": info["mem_total"],
            "mem_free": info["mem_free"],
            "distances": distances,
            "memory_blocks": info["memory_blocks"],
            "tier": tier_of.get(node),
        })
    return nodes


def gather(tools, root="/"):
    """The whole inventory (see pmem_info's RETURN)."""
    ndctl = tools.ndctl_list()
    daxctl = tools.daxctl_list()
    owned = record.read(root)
    namespaces = [namespace_record(ns) for ns in namespaces_of(ndctl) if ns.get("size")]
    for namespace in namespaces:
        entry = record.find(owned, namespace) or {}
        namespace["owned"] = record.owns(owned, namespace)
        # How it became the collection's: "created" (also any namespace named tiering-pmem) or "converted".
        namespace["owned_how"] = ("created" if namespace["name"] == record.OWNED_NAME else entry.get("how")) \
            if namespace["owned"] else None
        namespace["original_mode"] = entry.get("original_mode")
    tiers = _sysfs.memory_tiers(root)
    cxl = _cxl.inventory(tools.cxl_list(root), tiers)
    for region in cxl["regions"]:
        region["owned"] = record.owns_cxl_region(owned, region["memdevs"])
    owned_cxl_devices = set(name for region in cxl["regions"] if region["owned"] for name in region["dax_devices"])
    soft_reserved = _memmap.iomem_ranges("Soft Reserved", root)
    devices = [dax_record(device, namespaces, root) for device in daxctl]
    for device in devices:
        owner = next((ns for ns in namespaces if ns["dev"] == device["namespace"] and device["namespace"]), None)
        device["owned"] = owner["owned"] if owner else (record.owns_device(owned, device["name"])
                                                        or device["name"] in owned_cxl_devices)
        device["cxl_region"] = _cxl.region_of_dax_device(cxl, device["name"])
        device["source"] = device_source(device, soft_reserved)
    return {
        "regions": [region_record(region) for region in ndctl["regions"]],
        "namespaces": namespaces,
        "dax_devices": devices,
        "cxl": cxl,
        "numa_nodes": numa_nodes(root, tiers),
        "memory_tiers": tiers,
        "memory_block_size": _sysfs.memory_block_size(root),
        "memory_blocks": counts(_sysfs.read_blocks(_sysfs.memory_block_ids(root), root)),
        "auto_online_blocks": _sysfs.auto_online_blocks(root),
        "demotion_enabled": _knobs.demotion_enabled(root),
        "numa_balancing": _knobs.numa_balancing(root),
        "numa_balancing_promote_rate_limit_mbps": _knobs.promote_rate_limit_mbps(root),
        "memmap": {
            "cmdline": cmdline_memmap(root),
            "iomem": [{"start": start, "end": end + 1, "size": end + 1 - start}
                      for start, end in _memmap.iomem_ranges("Persistent Memory (legacy)", root)],
        },
        "mem_total": _sysfs.meminfo(root).get("MemTotal"),
    }


def cmdline_memmap(root="/"):
    """``memmap=`` items of the running kernel's command line, parsed the way reserved_memory does.

    [{"raw": "512M!0x80000000", "kind": "pmem", "size": bytes, "offset": bytes}]; items that are
    not a range (``exactmap``, ``%`` retyping) have kind ``other`` and size/offset None.
    """
    cmdline = _sysfs.read_text("/proc/cmdline", root, default="")
    return [{"raw": item.text, "kind": item.kind, "size": item.size, "offset": item.offset}
            for item in _memmap.memmap_ranges(cmdline)]
