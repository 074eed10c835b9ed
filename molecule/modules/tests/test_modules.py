"""A guest provisioned by molecule/modules/converge.yml: pmem is movable RAM on node 1."""
import json

import pytest

MIB = 1 << 20


@pytest.fixture(scope="module")
def expect(host):
    return host.ansible.get_variables()["modules_expect"]


@pytest.fixture(scope="module")
def device(host):
    devices = json.loads(host.check_output("daxctl list") or "[]")
    devices = devices if isinstance(devices, list) else [devices]
    assert len(devices) == 1, devices
    return devices[0]


def meminfo_total(host):
    line = [l for l in host.file("/proc/meminfo").content_string.splitlines() if l.startswith("MemTotal:")][0]
    return int(line.split()[1]) * 1024


def test_device_is_system_ram_on_the_pmem_node(device, expect):
    assert device["mode"] == "system-ram"
    assert device["target_node"] == expect["pmem_node"]
    assert device["online_memblocks"] == device["total_memblocks"] > 0
    assert device["movable"] is True


def test_memtotal_grew_by_about_the_pmem_size(host, device, expect):
    before = int(host.file("/var/lib/tiering-pmem-test/memtotal-before").content_string)
    grown = meminfo_total(host) - before
    # Only whole 128 MiB blocks past the devdax info block become RAM: 896 of 1024 MiB here.
    assert expect["region_bytes"] * 0.8 <= grown <= expect["region_bytes"], grown // MIB


def test_numactl_shows_the_memory_on_the_cpu_less_node(host, expect):
    out = host.check_output("numactl -H")
    sizes = dict((int(l.split()[1]), int(l.split()[3])) for l in out.splitlines()
                 if l.startswith("node ") and " size: " in l)
    cpus = [l for l in out.splitlines() if l.startswith("node %d cpus:" % expect["pmem_node"])][0]
    assert sizes[expect["pmem_node"]] >= 0.8 * expect["region_bytes"] // MIB
    assert cpus.split(":")[1].strip() == ""


def test_every_block_of_the_device_online_in_the_zone(host, device, expect):
    sysfs = "/sys/bus/dax/devices/%s" % device["chardev"]
    start = int(host.file(sysfs + "/resource").content_string.strip(), 16)
    size = int(host.file(sysfs + "/size").content_string.strip())
    block = int(host.file("/sys/devices/system/memory/block_size_bytes").content_string.strip(), 16)
    indexes = range((start + block - 1) // block, (start + size) // block)
    assert len(indexes) == device["total_memblocks"]
    for index in indexes:
        base = "/sys/devices/system/memory/memory%d" % index
        assert host.file(base + "/state").content_string.strip() == "online", index
        assert host.file(base + "/valid_zones").content_string.strip() == expect["zone"], index
        assert host.file("/sys/devices/system/node/node%d/memory%d" % (expect["pmem_node"], index)).exists


def test_persistence_is_in_place(host, device):
    unit = host.service("tiering-pmem-dax-kmem@%s" % device["chardev"])
    assert unit.is_enabled
    assert host.file("/etc/tiering-pmem/dax-kmem/%s.conf" % device["chardev"]).contains("MOVABLE=1")
