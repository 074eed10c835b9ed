"""_memmap, _grub and _knobs over text captured from lab guests (tests/unit/fixtures/README-kernel.md)."""

import os
import shutil

import pytest

from ansible_collections.tiering.pmem.plugins.module_utils import _grub
from ansible_collections.tiering.pmem.plugins.module_utils import _knobs
from ansible_collections.tiering.pmem.plugins.module_utils import _memmap
from ansible_collections.tiering.pmem.plugins.module_utils import _plan

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")
FRESH = os.path.join(FIXTURES, "trixie-grub-fresh", "root")
RESERVED = os.path.join(FIXTURES, "trixie-grub-reserved", "root")
BOOKWORM = os.path.join(FIXTURES, "bookworm-legacy-reserved", "root")
GIB = 1 << 30
MIB = 1 << 20


def read(root, path):
    with open(os.path.join(root, path.lstrip("/"))) as handle:
        return handle.read()


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 * MIB), ("512m", 512 * MIB), ("4G", 4 * GIB), ("1T", 1 << 40), ("64K", 64 << 10),
    ("0x80000000", 0x80000000), ("0x20000000M", 0x20000000 * MIB), ("4096", 4096), ("12G", 12 * GIB),
])
def test_parse_size_accepts_kernel_forms(text, expected):
    assert _memmap.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "512X", "1.5G", "-1G", "0xZZ", "512 M", "G"])
def test_parse_size_rejects_and_names_value(text):
    with pytest.raises(_plan.ModuleError) as error:
        _memmap.parse_size(text)
    assert repr(text) in str(error.value)
    assert "K, M, G or T" in str(error.value)


def test_format_size_is_shortest_exact():
    assert _memmap.format_size(512 * MIB) == "512M"
    assert _memmap.format_size(4 * GIB) == "4G"
    assert _memmap.format_size(1536 * MIB) == "1536M"
    assert _memmap.format_size(4097) == "4097"


def test_memmap_value_with_several_comma_separated_ranges():
    ranges = _memmap.parse_memmap_value("512M!0x80000000,1G$4G,64K#0x1000,exactmap,2G@0")
    assert [(r.kind, r.size, r.offset) for r in ranges] == [
        ("pmem", 512 * MIB, 0x80000000), ("reserved", GIB, 4 * GIB), ("acpi", 64 << 10, 0x1000),
        ("other", None, None), ("ram", 2 * GIB, 0)]


def test_memmap_ranges_over_several_memmap_arguments():
    cmdline = 'ro memmap=512M!2G quiet memmap="256M!0xa0000000,1G$8G" memmapx=1 memmap=4G!12G'
    pmem = _memmap.memmap_ranges(cmdline, "pmem")
    assert [r.canonical() for r in pmem] == ["512M!0x80000000", "256M!0xa0000000", "4G!0x300000000"]
    assert [r.kind for r in _memmap.memmap_ranges(cmdline)] == ["pmem", "pmem", "reserved", "pmem"]


def test_running_cmdline_of_captured_guests():
    assert _memmap.memmap_ranges(_memmap.running_cmdline(FRESH), "pmem") == []
    reserved = _memmap.memmap_ranges(_memmap.running_cmdline(RESERVED), "pmem")
    assert [r.canonical() for r in reserved] == ["512M!0x80000000"]
    bookworm = _memmap.memmap_ranges(_memmap.running_cmdline(BOOKWORM), "pmem")
    assert [(r.size, r.offset) for r in bookworm] == [(GIB, 0x80000000)]


def test_parse_reservation_rejects_forms_other_than_size_bang_offset():
    for text in ("512M", "512M$0x80000000", "!0x80000000", "512M!", "1G!2G!3G"):
        with pytest.raises(_plan.ModuleError) as error:
            _memmap.parse_reservation(text)
        assert repr(text) in str(error.value) and "SIZE!OFFSET" in str(error.value)


def test_iomem_after_reboot_shows_legacy_pmem_and_not_system_ram():
    top = [e for e in _memmap.read_iomem(RESERVED) if e["depth"] == 0]
    names = dict((e["start"], e["name"]) for e in top)
    assert names[0x80000000] == "Persistent Memory (legacy)"
    assert names[0x100000] == "System RAM"
    assert [e["end"] for e in top if e["start"] == 0x100000] == [0x7fffffff]
    nested = [e for e in _memmap.read_iomem(RESERVED) if e["name"] == "namespace0.0"]
    assert nested and nested[0]["depth"] == 1


def test_firmware_memmap_is_the_boot_time_map_and_unchanged_by_memmap():
    fresh = _memmap.read_firmware_memmap(FRESH)
    reserved = _memmap.read_firmware_memmap(RESERVED)
    assert fresh == reserved
    assert {"start": 0x100000, "end": 0xbffdcfff, "name": "System RAM"} in reserved


def test_usable_ram_prefers_firmware_map_so_a_reserved_range_still_counts():
    ram, source = _memmap.usable_ram(RESERVED)
    assert source == "/sys/firmware/memmap"
    assert _memmap.inside(ram, 0x80000000, 0xa0000000)
    assert not _memmap.inside(ram, 0xc0000000, 0xe0000000)


def test_usable_ram_falls_back_to_iomem_with_legacy_pmem_as_ram(tmp_path):
    # The reserved guest's tree without /sys/firmware/memmap (a kernel without FIRMWARE_MEMMAP).
    root = str(tmp_path / "root")
    shutil.copytree(RESERVED, root)
    shutil.rmtree(os.path.join(root, "sys", "firmware"))
    ram, source = _memmap.usable_ram(root)
    assert source == "/proc/iomem"
    # System RAM, Persistent Memory (legacy), System RAM are merged into one usable stretch.
    assert ram == [(0x1000, 0x9fc00), (0x100000, 0xbffdd000)]
    assert _memmap.inside(ram, 0x80000000, 0xa0000000)


def test_grub_defaults_of_the_grub_guest():
    texts = [read(FRESH, "/etc/default/grub"), read(FRESH, "/etc/default/grub.d/10-lab.cfg")]
    env = _grub.evaluate_grub_defaults(texts)
    assert env["GRUB_CMDLINE_LINUX"] == ""
    assert env["GRUB_CMDLINE_LINUX_DEFAULT"] == "console=ttyS0,115200 net.ifnames=0"
    assert env["GRUB_TERMINAL"] == "serial console"
    assert _grub.grub_dropin_paths(FRESH) == ["/etc/default/grub.d/10-lab.cfg"]


def test_dropin_appends_and_evaluates_like_grub_mkconfig():
    dropin = _grub.dropin_text([_memmap.parse_reservation("512M!2G")], "test")
    env = _grub.evaluate_grub_defaults([read(FRESH, "/etc/default/grub"),
                                        read(FRESH, "/etc/default/grub.d/10-lab.cfg"), dropin])
    assert _grub.grub_cmdline(env) == "memmap=512M!0x80000000 console=ttyS0,115200 net.ifnames=0"


def test_captured_grub_cfg_carries_what_the_dropin_configured():
    cmdline = _grub.grub_cfg_default_cmdline(read(RESERVED, "/boot/grub/grub.cfg"))
    assert [r.canonical() for r in _memmap.memmap_ranges(cmdline, "pmem")] == ["512M!0x80000000"]
    dropin = read(RESERVED, "/etc/default/grub.d/90-tiering-pmem.cfg")
    env = _grub.evaluate_grub_defaults([read(RESERVED, "/etc/default/grub"),
                                        read(RESERVED, "/etc/default/grub.d/10-lab.cfg"), dropin])
    assert cmdline.endswith(_grub.grub_cmdline(env))


def test_rewrite_removes_only_selected_items_and_appends():
    text = ('# comment memmap=1G!1G\nGRUB_CMDLINE_LINUX="quiet memmap=1G!4G,256M$8G memmap=512M!2G"\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="memmap=2G!6G"\n')
    keep = _memmap.parse_reservation("512M!2G")
    new = _grub.rewrite_cmdline_assignments(text, lambda i: i.kind == "pmem" and i != keep,
                                            append=["memmap=1G!0x40000000"])
    assert new == ('# comment memmap=1G!1G\n'
                   'GRUB_CMDLINE_LINUX="quiet memmap=256M$8G memmap=512M!2G memmap=1G!0x40000000"\n'
                   'GRUB_CMDLINE_LINUX_DEFAULT=""\n')


def test_rewrite_adds_a_line_when_there_is_none():
    new = _grub.rewrite_cmdline_assignments("GRUB_TIMEOUT=5", lambda i: False, append=["memmap=1G!4G"])
    assert new == 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="memmap=1G!4G"\n'


def test_sysctl_and_tmpfiles_round_trip():
    sysctl = _knobs.sysctl_conf_text({"kernel.numa_balancing": "2", "vm.swappiness": "10"}, "t")
    assert _knobs.parse_sysctl_conf(sysctl) == {"kernel.numa_balancing": "2", "vm.swappiness": "10"}
    assert _knobs.parse_sysctl_conf("-kernel/numa_balancing=1\n; x\n") == {"kernel.numa_balancing": "1"}
    tmpfiles = _knobs.tmpfiles_text({"/sys/kernel/mm/numa/demotion_enabled": "true"}, "t")
    assert "w /sys/kernel/mm/numa/demotion_enabled - - - - true\n" in tmpfiles
    assert _knobs.parse_tmpfiles_writes(tmpfiles) == {"/sys/kernel/mm/numa/demotion_enabled": "true"}


def test_knobs_of_captured_trixie():
    assert _knobs.read_knob(_knobs.sysctl_path("kernel.numa_balancing"), FRESH) == "0"
    assert _knobs.read_knob(_knobs.sysctl_path("kernel.numa_balancing_promote_rate_limit_MBps"), FRESH) == "65536"
    assert _knobs.read_knob("/sys/kernel/mm/numa/demotion_enabled", FRESH) == "false"
