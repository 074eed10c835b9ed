# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel sizes, ``memmap=`` values and the physical memory maps.

Owns the kernel's size syntax (memparse: ``512M``, ``0x80000000``), ``memmap=`` values of a command
line (``SIZE!OFFSET`` and the other memmap forms), ``/proc/cmdline``, ``/proc/iomem`` and
``/sys/firmware/memmap`` (the RAM a reservation may take). Used by reserved_memory (reservations),
ndctl_namespace and memory_blocks (size and address options), _grub (memmap= words in GRUB files
and grubby args) and _pmem_inventory (pmem_info's ``memmap`` facts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError, shorten
from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path, read_text

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# parse_size() refuses this and more: no physical address or size reaches 2^64.
MAX_SIZE = 1 << 64
SIZE_HELP = ("a whole number (decimal, or hex with 0x) with an optional K, M, G or T suffix, "
             "e.g. 512M, 4G or 0x20000000")
MEMMAP_HELP = "SIZE!OFFSET, e.g. 512M!0x80000000 or 4G!12G (SIZE and OFFSET: %s)" % SIZE_HELP

# memmap= separators (Documentation/admin-guide/kernel-parameters.txt): '!' legacy pmem
# (E820 type 12), '$' reserved, '#' ACPI data, '@' usable RAM, '%' retype.
MEMMAP_KINDS = {"!": "pmem", "$": "reserved", "#": "acpi", "@": "ram"}

# Firmware map / iomem names of ranges a memmap=!-reservation may lie in. A range reserved as
# legacy pmem at the last boot is no longer "System RAM" in /proc/iomem but it is still RAM.
USABLE_RAM_TYPES = ("System RAM", "Persistent Memory (legacy)")


# ---------------------------------------------------------------- sizes and memmap=

def parse_size(text, what="size"):
    """``'512M'``, ``'0x80000000'``, ``'4G'`` -> bytes, the way the kernel's memparse() reads them.

    Values of 2^64 bytes or more are refused: no physical address or size is that large.
    """
    match = re.match(r"^(0[xX][0-9a-fA-F]+|[0-9]+)([KMGTkmgt]?)\Z", str(text).strip())
    if not match:
        raise ModuleError("%s %s is not a valid size: use %s" % (what, shorten(text), SIZE_HELP))
    number, unit = match.groups()
    # More than 20 decimal digits is above 2^64 whatever the unit (and int() of a huge decimal
    # string is slow, or refused past 4300 digits).
    if len(number) > 20 and not number.lower().startswith("0x"):
        value = MAX_SIZE
    else:
        value = int(number, 0 if number.lower().startswith("0x") else 10) * SIZE_UNITS[unit.upper()]
    if value >= MAX_SIZE:
        raise ModuleError("%s %s is too large: sizes and addresses are below 2^64 bytes (16 EiB); use %s"
                          % (what, shorten(text), SIZE_HELP))
    return value


def format_size(value):
    """Bytes -> the shortest exact K/M/G/T form (``536870912`` -> ``512M``)."""
    for unit in ("T", "G", "M", "K"):
        if value and value % SIZE_UNITS[unit] == 0:
            return "%d%s" % (value // SIZE_UNITS[unit], unit)
    return "%d" % value


class MemmapRange(object):
    """One item of a memmap= value: ``kind`` is pmem/reserved/acpi/ram/other."""

    def __init__(self, kind, size, offset, text):
        self.kind = kind
        self.size = size
        self.offset = offset
        self.text = text

    @property
    def end(self):
        """Exclusive end address."""
        return self.offset + self.size

    def key(self):
        return (self.kind, self.size, self.offset)

    def canonical(self):
        return "%s!0x%x" % (format_size(self.size), self.offset)

    def describe(self):
        return "%s (0x%x-0x%x)" % (self.text, self.offset, self.end - 1)

    def overlaps(self, other_start, other_end):
        return self.offset < other_end and other_start < self.end

    def __eq__(self, other):
        return isinstance(other, MemmapRange) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "MemmapRange(%r)" % self.text


def parse_reservation(text):
    """A wanted legacy-pmem reservation ``SIZE!OFFSET`` -> MemmapRange (kind pmem)."""
    parts = str(text).strip().split("!")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ModuleError("reservation %s is not SIZE!OFFSET: use %s" % (shorten(text), MEMMAP_HELP))
    size = parse_size(parts[0], "size of reservation %s" % shorten(text))
    offset = parse_size(parts[1], "offset of reservation %s" % shorten(text))
    if size == 0:
        raise ModuleError("reservation %s has size 0: use %s" % (shorten(text), MEMMAP_HELP))
    if offset + size > MAX_SIZE:
        raise ModuleError("reservation %s ends beyond 2^64 bytes: use %s" % (shorten(text), MEMMAP_HELP))
    return MemmapRange("pmem", size, offset, str(text).strip())


def parse_memmap_value(value):
    """The value of one ``memmap=`` argument -> list of MemmapRange (comma-separated items).

    Items that are not a range (``exactmap``, a bare size limit, ``%`` retyping) come back with
    kind ``other`` and size/offset None: they are kept verbatim, never interpreted.
    """
    ranges = []
    for item in value.split(","):
        match = re.match(r"^([^!$#@%]+)([!$#@])([^!$#@%]+)$", item)
        if match:
            try:
                size = parse_size(match.group(1))
                offset = parse_size(match.group(3))
            except ModuleError:
                ranges.append(MemmapRange("other", None, None, item))
                continue
            ranges.append(MemmapRange(MEMMAP_KINDS[match.group(2)], size, offset, item))
        else:
            ranges.append(MemmapRange("other", None, None, item))
    return ranges


def split_cmdline(cmdline):
    """Kernel command line -> words; double quotes group a value with spaces, as the kernel does."""
    return re.findall(r'(?:[^\s"]+|"[^"]*")+', cmdline or "")


def memmap_ranges(cmdline, kind=None):
    """All memmap= ranges of a command line (every memmap= argument, every comma item)."""
    found = []
    for word in split_cmdline(cmdline):
        if word.startswith("memmap="):
            for item in parse_memmap_value(word[len("memmap="):].strip('"')):
                if kind is None or item.kind == kind:
                    found.append(item)
    return found


def strip_memmap_items(word, drop):
    """A ``memmap=`` word without the items ``drop(item)`` selects; None when nothing is left."""
    items = [item for item in parse_memmap_value(word[len("memmap="):]) if not drop(item)]
    if not items:
        return None
    return "memmap=" + ",".join(item.text for item in items)


# ---------------------------------------------------------------- /proc/cmdline and physical memory maps


def running_cmdline(root="/"):
    return read_text("/proc/cmdline", root)


def parse_iomem(text):
    """``/proc/iomem`` -> list of dicts start, end (inclusive), name, depth (0 = top level)."""
    entries = []
    for line in text.splitlines():
        match = re.match(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$", line)
        if match:
            entries.append({"start": int(match.group(2), 16), "end": int(match.group(3), 16),
                            "name": match.group(4).strip(), "depth": len(match.group(1)) // 2})
    return entries


def read_iomem(root="/"):
    return parse_iomem(read_text("/proc/iomem", root, default=""))


def iomem_ranges(label, root="/"):
    """[(start, end_inclusive)] of the /proc/iomem entries named ``label`` (any depth)."""
    return [(entry["start"], entry["end"]) for entry in read_iomem(root) if entry["name"] == label]


def read_firmware_memmap(root="/"):
    """``/sys/firmware/memmap/N/{start,end,type}`` -> list of dicts, sorted by start; [] if absent.

    This is the map the firmware handed over at boot, before memmap= changed anything.
    """
    base = host_path(root, "/sys/firmware/memmap")
    if not os.path.isdir(base):
        return []
    entries = []
    for name in os.listdir(base):
        entry = "/sys/firmware/memmap/%s" % name
        try:
            entries.append({"start": int(read_text(entry + "/start", root), 16),
                            "end": int(read_text(entry + "/end", root), 16),
                            "name": read_text(entry + "/type", root)})
        except (IOError, OSError, ValueError):
            continue
    return sorted(entries, key=lambda item: item["start"])


def merge_ranges(ranges):
    """(start, end-exclusive) pairs -> sorted, with touching/overlapping pairs merged."""
    merged = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def usable_ram(root="/"):
    """(ranges, source): RAM a legacy-pmem reservation may take, as end-exclusive pairs.

    The firmware map is preferred: it is the boot-time map, so a range that memmap= turned
    into legacy pmem at this boot still counts, and a reservation the kernel accepted outside
    real RAM does not. /proc/iomem (top-level entries) is the fallback.
    """
    firmware = read_firmware_memmap(root)
    if firmware:
        source, entries = "/sys/firmware/memmap", firmware
    else:
        source, entries = "/proc/iomem", [e for e in read_iomem(root) if e["depth"] == 0]
    ranges = [(e["start"], e["end"] + 1) for e in entries if e["name"] in USABLE_RAM_TYPES]
    return merge_ranges(ranges), source


def inside(ranges, start, end):
    return any(low <= start and end <= high for low, high in ranges)


def format_ranges(ranges):
    return ", ".join("0x%x-0x%x" % (start, end - 1) for start, end in ranges) or "none"
