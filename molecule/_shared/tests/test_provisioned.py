"""What a provisioned lab guest must look like after a reboot.

Each platform says what to expect in its host vars (molecule.yml, `lab_expect`):
  region_bytes  size of the pmem region the lab gave the guest
  pmem_node     NUMA node the pmem memory must join (1: its own CPU-less node; 0: legacy, same node)
  zone          zone every block of it must be online in (Movable or Normal)
  numa_balancing, demotion_enabled   the tiering knobs after the reboot
"""
import json

import pytest

MIB = 1 << 20


@pytest.fixture(scope="module")
def expect(host):
    return host.ansible.get_variables()["lab_expect"]


def _json(host, command):
    data = json.loads(host.check_output(command) or "[]")
    return data if isinstance(data, list) else [data]


def _node_bytes(host, node):
    meminfo = host.file("/sys/devices/system/node/node%d/meminfo" % node).content_string
    kb = [line.split()[3] for line in meminfo.splitlines() if line.split()[2] == "MemTotal:"]
    return int(kb[0]) * 1024


# ---- the lab gave the guest its pmem (fails when the QEMU pmem device is left out)

def test_region_of_the_expected_size(host, expect):
    regions = _json(host, "ndctl list -R")
    assert [r["size"] for r in regions] == [expect["region_bytes"]]
    assert regions[0]["type"] == "pmem"


def test_region_targets_the_expected_node(host, expect):
    target = host.file("/sys/bus/nd/devices/region0/target_node").content_string.strip()
    assert int(target) == expect["pmem_node"]


# ---- provisioned: system RAM on the node, every block online in the zone, knobs set

def test_dax_device_is_system_ram_fully_online(host, expect):
    devices = _json(host, "daxctl list")
    assert len(devices) == 1, devices
    device = devices[0]
    assert device["mode"] == "system-ram"
    assert device["target_node"] == expect["pmem_node"]
    assert device["total_memblocks"] > 0
    assert device["online_memblocks"] == device["total_memblocks"]


def test_boot_unit_made_the_device_system_ram_in_this_boot(host):
    device = _json(host, "daxctl list")[0]["chardev"]
    unit = host.service("tiering-pmem-dax-kmem@%s" % device)
    assert unit.is_enabled
    # RemainAfterExit: "active" means the script ran to its end in this boot.
    assert host.check_output("systemctl is-active %s" % unit.name) == "active"


def test_every_block_of_the_device_is_online_in_the_zone(host, expect):
    # The kmem range from /proc/iomem ("dax0.0" under "System RAM (kmem)") -> its memory blocks.
    iomem = host.check_output("cat /proc/iomem").splitlines()
    kmem = [l.split(":")[0].strip() for l in iomem if l.strip().endswith("System RAM (kmem)")]
    assert kmem, "no kmem range in /proc/iomem"
    block = int(host.file("/sys/devices/system/memory/block_size_bytes").content_string.strip(), 16)
    blocks = []
    for span in kmem:
        start, end = (int(x, 16) for x in span.split("-"))
        blocks += range(start // block, (end + 1) // block)
    states = host.check_output(
        "cd /sys/devices/system/memory && for b in %s; do echo \"$b $(cat memory$b/state) $(cat memory$b/valid_zones)\"; done"
        % " ".join(str(b) for b in blocks))
    wrong = [line for line in states.splitlines() if line.split()[1:] != ["online", expect["zone"]]]
    assert not wrong, "blocks not online in %s: %s" % (expect["zone"], wrong)


def test_memtotal_includes_the_pmem(host, expect):
    meminfo = host.file("/proc/meminfo").content_string
    mem_total = int(meminfo.split("MemTotal:")[1].split()[0]) * 1024
    kmem = json.loads(host.check_output("daxctl list"))
    kmem = kmem if isinstance(kmem, list) else [kmem]
    onlined = kmem[0]["online_memblocks"] * int(
        host.file("/sys/devices/system/memory/block_size_bytes").content_string.strip(), 16)
    # Whole blocks only: QEMU's 1 GiB NVDIMM gives 7 x 128 MiB after namespace metadata and alignment.
    assert onlined >= expect["region_bytes"] * 0.7
    nodes = host.file("/sys/devices/system/node/online").content_string.strip()
    total_of_nodes = sum(_node_bytes(host, n) for n in _expand(nodes))
    assert abs(mem_total - total_of_nodes) < 8 * MIB
    assert _node_bytes(host, expect["pmem_node"]) >= onlined - 8 * MIB


def test_pmem_node_is_cpu_less_when_separate(host, expect):
    if expect["pmem_node"] == 0:
        pytest.skip("legacy pmem joins node 0, which has the CPUs")
    cpulist = host.file("/sys/devices/system/node/node%d/cpulist" % expect["pmem_node"]).content_string.strip()
    assert cpulist == ""
    assert "node %d size:" % expect["pmem_node"] in host.check_output("numactl -H")


def test_tiering_knobs(host, expect):
    assert host.sysctl("kernel.numa_balancing") == expect["numa_balancing"]
    demotion = host.file("/sys/kernel/mm/numa/demotion_enabled").content_string.strip()
    assert demotion == ("true" if expect["demotion_enabled"] else "false")


def _expand(nodelist):
    nodes = []
    for part in nodelist.split(","):
        low, high = (part.split("-") + [part])[:2]
        nodes += range(int(low), int(high) + 1)
    return nodes
