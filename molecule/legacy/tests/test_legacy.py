"""The legacy lab guest has 512 MiB of RAM reserved by memmap= as /dev/pmem0."""
import json

PMEM_BYTES = 512 << 20


def test_cmdline_reserves_the_range(host):
    assert "memmap=512M!0x80000000" in host.file("/proc/cmdline").content_string.split()


def test_iomem_shows_legacy_pmem(host):
    lines = [l for l in host.check_output("cat /proc/iomem").splitlines() if "Persistent Memory (legacy)" in l]
    assert [l.split(":")[0].strip() for l in lines] == ["80000000-9fffffff"]


def test_pmem0_block_device(host):
    assert host.file("/dev/pmem0").exists
    assert host.check_output("stat -c %F /dev/pmem0") == "block special file"
    assert int(host.check_output("blockdev --getsize64 /dev/pmem0")) == PMEM_BYTES


def test_label_less_region(host):
    regions = json.loads(host.check_output("ndctl list -R"))
    regions = regions if isinstance(regions, list) else [regions]
    assert [r["size"] for r in regions] == [PMEM_BYTES]
