import os

import pytest

from ansible_collections.tiering.pmem.plugins.module_utils import _memmap, _sysfs
from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_blocks, _pmem_inventory
from ansible_collections.tiering.pmem.plugins.module_utils._memmap import parse_size
from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError as KernelError
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import normalise_ndctl_list, normalise_daxctl_list

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")


def root_of(name):
    return os.path.join(FIXTURES, name, "root")


@pytest.mark.parametrize("text,expected", [("0-1", [0, 1]), ("0-2,5", [0, 1, 2, 5]), ("", []), ("3", [3]),
                                           ("0-1,4-5\n", [0, 1, 4, 5])])
def test_parse_list(text, expected):
    assert _sysfs.parse_list(text) == expected


@pytest.mark.parametrize("text,expected", [("512M", 512 << 20), ("0x80000000", 1 << 31), ("4G", 4 << 30),
                                           ("1024", 1024), ("2k", 2048), ("0x1M", 1 << 20)])
def test_parse_kernel_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12Q", "-1", "0xZZ", "1.5G"])
def test_parse_kernel_size_rejects(text):
    with pytest.raises(KernelError):
        parse_size(text)


def test_cmdline_memmap(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cmdline").write_text("root=/dev/vda memmap=512M!0x80000000 quiet memmap=1G!4G,64M$0x1000\n")
    assert _pmem_inventory.cmdline_memmap(str(tmp_path)) == [
        {"raw": "512M!0x80000000", "kind": "pmem", "size": 512 << 20, "offset": 1 << 31},
        {"raw": "1G!4G", "kind": "pmem", "size": 1 << 30, "offset": 4 << 30},
        {"raw": "64M$0x1000", "kind": "reserved", "size": 64 << 20, "offset": 0x1000},
    ]


def test_block_facts_of_the_nvdimm_guest():
    root = root_of("trixie-nvdimm-system-ram-movable")
    assert _sysfs.memory_block_size(root) == 128 << 20
    assert _sysfs.node_memory_block_ids(1, root) == list(range(33, 40))
    assert _sysfs.dax_memory_block_ids("dax0.0", root) == list(range(33, 40))
    blocks = _sysfs.read_blocks([0, 33], root)
    assert blocks[33] == {"state": "online", "zone": "Movable", "default_zone": None, "kernel_zone": None}
    # the first block spans DMA and DMA32: valid_zones says "none"
    assert blocks[0] == {"state": "online", "zone": "none", "default_zone": None, "kernel_zone": None}
    assert _sysfs.node_info(1, root)["cpus"] == [] and _sysfs.node_info(0, root)["cpus"] == [0, 1]
    assert _memmap.iomem_ranges("Persistent Memory", root) == [(0x100000000, 0x13fffffff)]


def test_offline_block_reports_the_default_zone():
    blocks = _sysfs.read_blocks([33], root_of("trixie-nvdimm-system-ram-offline"))
    assert blocks[33] == {"state": "offline", "zone": None, "default_zone": "Normal", "kernel_zone": "Normal"}


def test_offline_zones_can_be_skipped_but_online_zones_are_always_read():
    offline = _sysfs.read_blocks([33], root_of("trixie-nvdimm-system-ram-offline"), offline_zones=False)
    assert offline[33] == {"state": "offline", "zone": None, "default_zone": None, "kernel_zone": None}
    online = _sysfs.read_blocks([33], root_of("trixie-nvdimm-system-ram-movable"), offline_zones=False)
    assert online[33] == {"state": "online", "zone": "Movable", "default_zone": None, "kernel_zone": None}


def test_legacy_pmem_below_4g_goes_to_dma32():
    blocks = _sysfs.read_blocks([17], root_of("trixie-legacy-system-ram-offline"))
    assert blocks[17] == {"state": "offline", "zone": None, "default_zone": "DMA32", "kernel_zone": "DMA32"}


def test_node_without_memory_is_absent_before_hotplug():
    root = root_of("trixie-nvdimm-devdax")
    assert _sysfs.node_ids(root) == [0] and _sysfs.node_ids(root, "possible") == [0, 1]
    assert _sysfs.node_memory_block_ids(1, root) == []
    assert _sysfs.dax_device("dax0.0", root)["driver"] == "device_dax"


def test_blocks_in_range_takes_whole_blocks_only():
    root = root_of("trixie-nvdimm-system-ram-movable")
    device = _sysfs.dax_device("dax0.0", root)
    assert device["start"] == 0x101200000  # 18 MiB into block 32: the devdax info block
    assert _sysfs.whole_blocks(device["start"], device["end"], 128 << 20) == list(range(33, 40))


def test_write_refusal_is_text_not_an_exception(tmp_path):
    assert _sysfs.set_block_state(99, "online", str(tmp_path)).startswith("No such file or directory (errno ENOENT")


def test_set_blocks_state_continues_after_a_refusal(tmp_path):
    for index in (1, 3):
        path = tmp_path / ("sys/devices/system/memory/memory%d" % index)
        path.mkdir(parents=True)
        (path / "state").write_text("offline\n")
    refused = _sysfs.set_blocks_state([1, 2, 3], "online_movable", str(tmp_path))
    assert list(refused) == [2]
    assert (tmp_path / "sys/devices/system/memory/memory3/state").read_text() == "online_movable"


def test_compact_and_describe():
    assert _pmem_blocks.compact([5, 1, 2, 3, 9, 10]) == "1-3,5,9-10"
    assert _pmem_blocks.compact([]) == ""
    blocks = {1: {"state": "online", "zone": "Normal"}, 2: {"state": "online", "zone": "Normal"},
              3: {"state": "offline", "zone": None}, 4: {"state": "online", "zone": "Normal"}}
    assert _pmem_blocks.describe(blocks) == "memory1-2: online Normal\nmemory3: offline\nmemory4: online Normal\n"


def test_write_order_puts_movable_from_the_top():
    assert _pmem_blocks.write_order([3, 1, 2], "online_movable") == [3, 2, 1]
    assert _pmem_blocks.write_order([3, 1, 2], "online_kernel") == [1, 2, 3]


def test_ndctl_list_shapes():
    region = {"dev": "region0", "namespaces": []}
    assert normalise_ndctl_list(None) == {"dimms": [], "regions": []}
    assert normalise_ndctl_list([region]) == {"dimms": [], "regions": [region]}
    assert normalise_ndctl_list(region) == {"dimms": [], "regions": [region]}
    assert normalise_ndctl_list({"regions": [region], "dimms": [{"dev": "nmem0"}]})["dimms"] == [{"dev": "nmem0"}]
    assert normalise_daxctl_list({"chardev": "dax0.0"}) == [{"chardev": "dax0.0"}]
