"""memory_layout_svg over inventories gathered from captured guests, and rendered by headless Chromium.

The input is what pmem_info returns for a fixture: the module_utils gather() over the captured
/sys and /proc tree and the captured ndctl/daxctl output, as the unit tests of pmem_info do.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tiering.pmem.plugins.filter.memory_layout_svg import (
    COLOURS, OFFLINE, ONLINE, FilterModule, memory_layout_svg)
from ansible_collections.tiering.pmem.plugins.module_utils import _ndctl, _pmem_inventory

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
SVG = "{http://www.w3.org/2000/svg}"


class RecordedTools:
    """The ndctl/daxctl list calls pmem_info makes, answered from a fixture's captured output."""

    def __init__(self, fixture):
        self.fixture = fixture

    def _read(self, name):
        path = os.path.join(FIXTURES, self.fixture, name)
        text = open(path).read() if os.path.exists(path) else ""
        return _ndctl.parse_json_output(text)

    def ndctl_list(self):
        return _ndctl.normalise_ndctl_list(self._read("ndctl-list.json"))

    def daxctl_list(self):
        return _ndctl.normalise_daxctl_list(self._read("daxctl-list.json"))

    def cxl_list(self, root):
        tree = self._read("cxl-list.json") or []
        return [tree] if isinstance(tree, dict) else tree


def inventory(fixture):
    return _pmem_inventory.gather(RecordedTools(fixture), root=os.path.join(FIXTURES, fixture, "root"))


def texts(svg):
    return [t.text for t in ET.fromstring(svg.encode()).iter(SVG + "text")]


def squares(svg, colour):
    return [r for r in ET.fromstring(svg.encode()).iter(SVG + "rect")
            if r.get("fill") == colour and r.get("width") == "9"]


def test_filter_is_registered():
    assert FilterModule().filters()["memory_layout_svg"] is memory_layout_svg


def test_movable_system_ram_is_a_pmem_node_in_a_lower_tier():
    info = inventory("trixie-nvdimm-system-ram-movable")
    svg = memory_layout_svg(info, host="guest1")
    words = texts(svg)
    assert "guest1: memory layout" in words
    assert "node 0 · DRAM" in words and "node 1 · PMEM" in words
    tiers = sorted(t["tier"] for t in info["memory_tiers"])
    assert "memory tier %d (fastest)" % tiers[0] in words
    assert "memory tier %d" % tiers[-1] in words
    assert any(w.startswith("dax0.0 (namespace0.0) system-ram: 7/7 blocks online, Movable 7") for w in words), words
    # One square per memory block: all online here.
    assert len(squares(svg, ONLINE)) == info["memory_blocks"]["total"]
    assert squares(svg, OFFLINE) == []


def test_offline_system_ram_shows_offline_blocks_outside_the_tiers():
    info = inventory("trixie-nvdimm-system-ram-offline")
    svg = memory_layout_svg(info, host="guest2")
    words = texts(svg)
    assert "node 1 · PMEM" in words
    assert "memory blocks: 0 online, 7 offline (128 MiB each)" in words
    assert any(w.startswith("no memory tier") for w in words)
    assert len(squares(svg, OFFLINE)) == 7 == info["memory_blocks"]["offline"]


def test_devdax_namespace_is_listed_as_not_system_ram():
    svg = memory_layout_svg(inventory("trixie-nvdimm-devdax"))
    words = texts(svg)
    assert "Persistent memory not used as system RAM" in words
    assert any(w.startswith("namespace0.0 in region0: devdax") and "dax0.0" in w for w in words), words
    assert "node 1 · PMEM" not in words


def test_legacy_reservation_without_node_data_still_renders():
    info = inventory("bookworm-legacy-reserved")
    words = texts(memory_layout_svg(info))
    assert "no NUMA node information" in words
    assert any(w.startswith("kernel command line memmap=1024M!0x80000000") for w in words), words


def test_names_are_escaped():
    info = inventory("trixie-nvdimm-system-ram-movable")
    svg = memory_layout_svg(info, host="<evil & host>")
    assert "<evil" not in svg and "&lt;evil &amp; host&gt;" in svg
    ET.fromstring(svg.encode())


@pytest.mark.parametrize("bad,message", [
    ("text", "got str"),
    ({"numa_nodes": []}, "lacks memory_tiers, dax_devices, namespaces, memory_block_size"),
])
def test_bad_input_is_refused_with_what_is_expected(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        memory_layout_svg(bad)


# --------------------------------------------------------------- rendering in a real browser

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB/RGBA non-interlaced PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _c, _f, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + b) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def _rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian package: chromium)")
def test_chromium_renders_the_picture(tmp_path):
    info = inventory("trixie-nvdimm-system-ram-movable")
    svg = memory_layout_svg(info, host="guest1")
    root = ET.fromstring(svg.encode())
    width, height = int(root.get("width")), int(root.get("height"))
    page = tmp_path / "layout.svg"
    page.write_text(svg)
    shot = tmp_path / "layout.png"
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        proc = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             "--user-data-dir=%s" % profile, "--window-size=%d,%d" % (width, height),
             "--screenshot=%s" % shot, "file://%s" % page],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), "no screenshot; chromium rc=%d stderr:\n%s" % (proc.returncode, proc.stderr[-2000:])
    keep = os.environ.get("SVG_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, os.path.join(keep, "memory-layout.png"))
        shutil.copy(page, os.path.join(keep, "memory-layout.svg"))
    png_width, png_height, rows = read_png(str(shot))
    assert (png_width, png_height) == (width, height)
    pixels = {}
    for row in rows:
        for p in row:
            pixels[p] = pixels.get(p, 0) + 1
    # The browser drew the picture, not an error page: the card colours and the block squares are
    # there, and the online squares cover about what 23 squares of 9x9 pixels cover.
    for colour in (COLOURS["DRAM"][0], COLOURS["PMEM"][0], COLOURS["PMEM"][1]):
        assert pixels.get(_rgb(colour), 0) > 500, "%s barely present in the screenshot" % colour
    online = pixels.get(_rgb(ONLINE), 0)
    assert 23 * 81 * 0.8 <= online <= 23 * 81 * 1.3 + 200, online
