# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of ``cxl list -vvv`` (ndctl's CXL tool), flattened into what pmem_info reports.

``cxl list -vvv`` prints one tree: buses, their ports and endpoints, each endpoint's memdev, the
decoders at every level, and under the root decoders the regions with their dax devices. The
command itself runs in _ndctl (PmemTools.cxl_list, with ndctl's and daxctl's), once per inventory.
Used by: _pmem_inventory (pmem_info), cxl_region and dax_kmem (the region of a dax device).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _children(node, prefix):
    """The lists ``cxl list`` nests under keys named ``<prefix>:<parent>`` (e.g. ``ports:root0``)."""
    found = []
    for key, value in node.items():
        if key.split(":", 1)[0] == prefix and isinstance(value, list):
            found.extend(value)
    return found


def _walk_ports(node, parent):
    """(port dict, its parent's name) for every port and endpoint below ``node``, depth first."""
    found = []
    for kind in ("ports", "endpoints"):
        for child in _children(node, kind):
            found.append((child, parent))
            found.extend(_walk_ports(child, child.get("port") or child.get("endpoint")))
    return found


def memdev_record(memdev, endpoint, port):
    return {
        "memdev": memdev.get("memdev"),
        "ram_size": memdev.get("ram_size", 0),
        "pmem_size": memdev.get("pmem_size", 0),
        "serial": memdev.get("serial"),
        "host": memdev.get("host"),
        "numa_node": memdev.get("numa_node"),
        "endpoint": endpoint,
        "port": port,
    }


def decoder_record(decoder, level, owner):
    return {
        "decoder": decoder.get("decoder"),
        "level": level,
        "port": owner,
        "resource": decoder.get("resource"),
        "size": decoder.get("size", 0),
        "mode": decoder.get("mode"),
        "region": decoder.get("region"),
        "state": decoder.get("state", "enabled"),
        "interleave_ways": decoder.get("interleave_ways"),
        "volatile_capable": bool(decoder.get("volatile_capable")),
        "pmem_capable": bool(decoder.get("pmem_capable")),
        "max_available_extent": decoder.get("max_available_extent", 0) if level == "root" else None,
        "targets": [target.get("target") for target in decoder.get("targets", [])],
    }


def region_record(region, root_decoder, node_tier):
    devices = (region.get("daxregion") or {}).get("devices") or []
    nodes = sorted(set(device["target_node"] for device in devices if device.get("target_node") is not None))
    return {
        "region": region.get("region"),
        "type": region.get("type"),
        "size": region.get("size", 0),
        "resource": region.get("resource"),
        "decode_state": region.get("decode_state"),
        "interleave_ways": region.get("interleave_ways"),
        "interleave_granularity": region.get("interleave_granularity"),
        "decoder": root_decoder,
        "memdevs": [mapping.get("memdev") for mapping in sorted(region.get("mappings", []),
                                                                key=lambda m: m.get("position", 0))],
        "dax_devices": [device.get("chardev") for device in devices],
        "numa_nodes": nodes,
        "tiers": sorted(set(node_tier[node] for node in nodes if node in node_tier)),
    }


def inventory(tree, tiers):
    """{"memdevs", "ports", "decoders", "regions"} of a ``cxl list -vvv`` tree.

    ``tiers``: the memory tiers ([{"tier": N, "nodes": [...]}]) that say which tier a region's node is in.
    """
    node_tier = {}
    for tier in tiers:
        for node in tier["nodes"]:
            node_tier[node] = tier["tier"]
    memdevs, ports, decoders, regions = [], [], [], []
    for bus in tree:
        bus_name = bus.get("bus")
        for decoder in _children(bus, "decoders"):
            decoders.append(decoder_record(decoder, "root", bus_name))
            for region in _children(decoder, "regions"):
                regions.append(region_record(region, decoder.get("decoder"), node_tier))
        for port, parent in _walk_ports(bus, bus_name):
            if "endpoint" in port:
                memdev = port.get("memdev")
                if memdev:
                    memdevs.append(memdev_record(memdev, port["endpoint"], parent))
                level, name = "endpoint", port["endpoint"]
            else:
                ports.append({"port": port.get("port"), "parent": parent, "host": port.get("host"),
                              "depth": port.get("depth"), "decoders_committed": port.get("decoders_committed", 0)})
                level, name = "port", port.get("port")
            for decoder in _children(port, "decoders"):
                decoders.append(decoder_record(decoder, level, name))
    return {"memdevs": memdevs, "ports": ports, "decoders": decoders, "regions": regions}


def region_record_of_dax_device(cxl, name):
    """The record (see region_record) of the CXL region whose dax device ``name`` is, or None."""
    return next((region for region in cxl["regions"] if name in region["dax_devices"]), None)


def region_of_dax_device(cxl, name):
    """The name of the CXL region whose dax device ``name`` is, or None."""
    region = region_record_of_dax_device(cxl, name)
    return region["region"] if region else None
