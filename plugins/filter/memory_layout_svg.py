# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: memory_layout_svg
author: tiering.pmem developers (@tiering)
version_added: 0.1.0
short_description: Draw a host's memory layout (NUMA nodes, tiers, memory blocks) as an SVG picture
description:
  - Turns the result of M(tiering.pmem.pmem_info) into a standalone SVG document.
  - Each memory tier is a band, fastest first; each NUMA node in it is a card that says whether it is DRAM
    (a node with CPUs) or PMEM (a CPU-less node fed by a dax device in C(system-ram) mode), its size, CPUs,
    the dax devices behind it, and one square per memory block, green when online and grey when offline.
  - Persistent memory that is not system RAM (raw, fsdax or devdax namespaces) and legacy C(memmap=)
    reservations are listed below the tiers, so a host whose pmem is not yet provisioned still shows it.
  - Runs on the controller and uses the Python standard library only.
options:
  _input:
    description: The registered result of M(tiering.pmem.pmem_info) (keys C(numa_nodes), C(memory_tiers), ...).
    type: dict
    required: true
  host:
    description: Name shown in the title, usually C(inventory_hostname).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Read the pmem inventory
  tiering.pmem.pmem_info:
  register: pmem

- name: Write a picture of the memory layout per host on the controller
  ansible.builtin.copy:
    content: "{{ pmem | tiering.pmem.memory_layout_svg(host=inventory_hostname) }}"
    dest: "/tmp/pmem-status/{{ inventory_hostname }}.svg"
    mode: "0644"
  delegate_to: localhost
"""

RETURN = r"""
_value:
  description: An SVG 1.1 document (UTF-8 text) that browsers and image viewers display as it is.
  type: str
"""

from xml.sax.saxutils import escape, quoteattr

from ansible.errors import AnsibleFilterError

WIDTH = 820
MARGIN = 16
CARD_WIDTH = 380
CARD_GAP = 14
SQUARE = 9
SQUARE_GAP = 2
SQUARES_PER_ROW = 32
MAX_SQUARES = 256
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"

COLOURS = {
    "DRAM": ("#dbeafe", "#1d4ed8"),
    "PMEM": ("#f3e8ff", "#7e22ce"),
    "CPU-less memory": ("#fef3c7", "#b45309"),
    "no memory online": ("#f3f4f6", "#6b7280"),
}
ONLINE = "#16a34a"
OFFLINE = "#d1d5db"
REQUIRED_KEYS = ("numa_nodes", "memory_tiers", "dax_devices", "namespaces", "memory_block_size")


def _size(value):
    if value is None:
        return "?"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if value == int(value) else ("%.1f %s" % (value, unit))
        value /= 1024.0
    return "?"


def _ranges(numbers):
    """[0, 1, 2, 5] -> '0-2,5' (how the kernel writes CPU lists)."""
    runs = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(first) if first == last else "%d-%d" % (first, last) for first, last in runs)


def _text(x, y, content, size=12, weight="normal", fill="#111827", anchor="start"):
    return ('<text x="%d" y="%d" font-family=%s font-size="%d" font-weight="%s" fill="%s" text-anchor="%s">%s</text>'
            % (x, y, quoteattr(FONT), size, weight, fill, anchor, escape(str(content))))


def _node_dax_devices(node, dax_devices):
    return [d for d in dax_devices
            if d.get("mode") == "system-ram"
            and (node in (d.get("memory_nodes") or []) or d.get("target_node") == node)]


def _node_cards(info):
    """One card per NUMA node, plus nodes that only a system-ram dax device names (all its memory offline)."""
    nodes = {n["node"]: dict(n) for n in info["numa_nodes"]}
    for dax in info["dax_devices"]:
        target = dax.get("target_node")
        if dax.get("mode") == "system-ram" and target is not None and target >= 0 and target not in nodes:
            nodes[target] = {"node": target, "cpus": [], "has_cpu": False, "has_memory": False,
                             "mem_total": 0, "mem_free": 0, "memory_blocks": 0, "tier": None}
    cards = []
    for number in sorted(nodes):
        node = nodes[number]
        devices = _node_dax_devices(number, info["dax_devices"])
        if node.get("has_cpu"):
            kind = "DRAM"
        elif devices:
            kind = "PMEM"
        elif node.get("has_memory"):
            kind = "CPU-less memory"
        else:
            kind = "no memory online"
        dax_total = sum(d.get("total_memblocks") or 0 for d in devices)
        dax_offline = sum((d.get("total_memblocks") or 0) - (d.get("online_memblocks") or 0) for d in devices)
        total = max(node.get("memory_blocks") or 0, dax_total)
        offline = min(dax_offline, total)
        cards.append({"node": node, "kind": kind, "devices": devices, "blocks_total": total,
                      "blocks_offline": offline})
    return cards


def _card_lines(card, block_size):
    node = card["node"]
    lines = []
    if node.get("cpus"):
        lines.append("CPUs %s" % _ranges(node["cpus"]))
    else:
        lines.append("no CPUs")
    lines.append("%s online, %s free" % (_size(node.get("mem_total")), _size(node.get("mem_free"))))
    online = card["blocks_total"] - card["blocks_offline"]
    lines.append("memory blocks: %d online, %d offline (%s each)"
                 % (online, card["blocks_offline"], _size(block_size)))
    for dax in card["devices"]:
        zones = ", ".join("%s %d" % (z, c) for z, c in sorted((dax.get("zones") or {}).items())) or "no zone"
        lines.append("%s (%s) system-ram: %d/%d blocks online, %s"
                     % (dax.get("name"), dax.get("namespace") or ("CXL " + dax["cxl_region"] if dax.get("cxl_region") else "")
                        or dax.get("region") or "?",
                        dax.get("online_memblocks") or 0, dax.get("total_memblocks") or 0, zones))
    return lines


def _card_height(card, block_size):
    shown = min(card["blocks_total"], MAX_SQUARES)
    rows = (shown + SQUARES_PER_ROW - 1) // SQUARES_PER_ROW
    return 30 + 16 * len(_card_lines(card, block_size)) + rows * (SQUARE + SQUARE_GAP) + 12


def _draw_card(out, card, x, y, height, block_size):
    fill, stroke = COLOURS[card["kind"]]
    node = card["node"]
    out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="%s" stroke="%s" stroke-width="2"/>'
               % (x, y, CARD_WIDTH, height, fill, stroke))
    out.append(_text(x + 12, y + 20, "node %d · %s" % (node["node"], card["kind"]), 14, "bold", stroke))
    line_y = y + 38
    for line in _card_lines(card, block_size):
        out.append(_text(x + 12, line_y, line, 11))
        line_y += 16
    shown = min(card["blocks_total"], MAX_SQUARES)
    online = card["blocks_total"] - card["blocks_offline"]
    # Offline blocks drawn last: in a mixed node they are the hot-added ones at the top of the range.
    for i in range(shown):
        col, row = i % SQUARES_PER_ROW, i // SQUARES_PER_ROW
        colour = ONLINE if i < min(online, shown) else OFFLINE
        out.append('<rect x="%d" y="%d" width="%d" height="%d" rx="1" fill="%s"/>'
                   % (x + 12 + col * (SQUARE + SQUARE_GAP), line_y - 8 + row * (SQUARE + SQUARE_GAP),
                      SQUARE, SQUARE, colour))
    if card["blocks_total"] > shown:
        out.append(_text(x + CARD_WIDTH - 10, y + height - 6, "+%d blocks not drawn" % (card["blocks_total"] - shown),
                         10, anchor="end", fill="#6b7280"))


def _unused_pmem_lines(info):
    lines = []
    ram_namespaces = {d.get("namespace") for d in info["dax_devices"] if d.get("mode") == "system-ram"}
    for ns in info["namespaces"]:
        if ns.get("dev") in ram_namespaces:
            continue
        where = ns.get("blockdev") and "/dev/%s" % ns["blockdev"] or ns.get("chardev") or "no device"
        note = {"fsdax": "block device, may hold a filesystem", "sector": "block device, may hold a filesystem",
                "raw": "block device, may hold a filesystem", "devdax": "device dax, not system RAM"}.get(
                    ns.get("mode"), "not system RAM")
        lines.append("%s in %s: %s, %s -> %s (%s)"
                     % (ns.get("dev"), ns.get("region"), ns.get("mode"), _size(ns.get("size")), where, note))
    memmap = info.get("memmap") or {}
    for entry in memmap.get("cmdline") or []:
        lines.append("kernel command line memmap=%s: %s reserved as legacy pmem at 0x%x"
                     % (entry.get("raw"), _size(entry.get("size")), entry.get("offset") or 0))
    return lines


def memory_layout_svg(info, host=""):
    if not isinstance(info, dict):
        raise AnsibleFilterError("memory_layout_svg expects the registered result of tiering.pmem.pmem_info "
                                 "(a dict), got %s" % type(info).__name__)
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise AnsibleFilterError("memory_layout_svg: the input lacks %s; pass the registered result of "
                                 "tiering.pmem.pmem_info" % ", ".join(missing))
    block_size = info.get("memory_block_size")
    cards = _node_cards(info)
    tier_of_node = {}
    for tier in info["memory_tiers"] or []:
        for n in tier.get("nodes") or []:
            tier_of_node[n] = tier["tier"]
    bands = {}
    for card in cards:
        tier = card["node"].get("tier", tier_of_node.get(card["node"]["node"]))
        bands.setdefault(tier, []).append(card)
    # Lower tier ids are faster (memory_tier4 is DRAM); nodes outside every tier come last.
    order = sorted(bands, key=lambda t: (t is None, t if t is not None else 0))

    body = []
    y = MARGIN
    title = "%s: memory layout" % host if host else "memory layout"
    body.append(_text(MARGIN, y + 16, title, 18, "bold"))
    y += 26
    facts = ["MemTotal %s" % _size(info.get("mem_total")), "block %s" % _size(block_size),
             "auto_online_blocks=%s" % info.get("auto_online_blocks"),
             "demotion %s" % {True: "on", False: "off"}.get(info.get("demotion_enabled"), "n/a"),
             "numa_balancing=%s" % info.get("numa_balancing")]
    body.append(_text(MARGIN, y + 12, " · ".join(facts), 12, fill="#374151"))
    y += 26

    if not cards:
        body.append(_text(MARGIN, y + 14, "no NUMA node information", 13, fill="#6b7280"))
        y += 24
    for index, tier in enumerate(order):
        band_cards = bands[tier]
        if tier is None:
            label = "no memory tier (memory offline, or a kernel without memory tiers)"
        else:
            label = "memory tier %s%s" % (tier, " (fastest)" if index == 0 and len(order) > 1 else "")
        per_row = max(1, (WIDTH - 2 * MARGIN - 20 + CARD_GAP) // (CARD_WIDTH + CARD_GAP))
        rows = [band_cards[i:i + per_row] for i in range(0, len(band_cards), per_row)]
        heights = [max(_card_height(c, block_size) for c in row) for row in rows]
        band_height = 28 + sum(heights) + CARD_GAP * len(rows)
        body.append('<rect x="%d" y="%d" width="%d" height="%d" rx="10" fill="#ffffff" stroke="#9ca3af" '
                    'stroke-dasharray="4 3"/>' % (MARGIN, y, WIDTH - 2 * MARGIN, band_height))
        body.append(_text(MARGIN + 10, y + 18, label, 13, "bold", "#374151"))
        card_y = y + 28
        for row, height in zip(rows, heights):
            for col, card in enumerate(row):
                _draw_card(body, card, MARGIN + 10 + col * (CARD_WIDTH + CARD_GAP), card_y, height, block_size)
            card_y += height + CARD_GAP
        y += band_height + 10

    unused = _unused_pmem_lines(info)
    if unused:
        y += 6
        body.append(_text(MARGIN, y + 12, "Persistent memory not used as system RAM", 13, "bold", "#7e22ce"))
        y += 20
        for line in unused:
            body.append(_text(MARGIN + 10, y + 12, line, 11))
            y += 16

    y += 8
    legend = [(ONLINE, "online block"), (OFFLINE, "offline block"), (COLOURS["DRAM"][1], "DRAM node"),
              (COLOURS["PMEM"][1], "PMEM node")]
    x = MARGIN
    for colour, label in legend:
        body.append('<rect x="%d" y="%d" width="10" height="10" rx="1" fill="%s"/>' % (x, y + 2, colour))
        body.append(_text(x + 14, y + 11, label, 11, fill="#374151"))
        x += 30 + 7 * len(label)
    y += 20 + MARGIN

    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" viewBox="0 0 %d %d">\n'
            '<title>%s</title>\n<rect width="100%%" height="100%%" fill="#f9fafb"/>\n'
            % (WIDTH, y, WIDTH, y, escape(title)))
    return head + "\n".join(body) + "\n</svg>\n"


class FilterModule:
    """tiering.pmem filters."""

    def filters(self):
        return {"memory_layout_svg": memory_layout_svg}
