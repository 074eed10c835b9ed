"""After provision (twice) and a reboot of the cxl guest: mem0's RAM region was created again at boot
by the collection's unit, its memory is system RAM, every block Movable on a CPU-less node in a tier
below DRAM; status shows it; teardown gives the region back and a rerun changes nothing."""
import json
import os
import subprocess

import pytest


def _json(host, command):
    data = json.loads(host.check_output(command) or "[]")
    return data if isinstance(data, list) else [data]


@pytest.fixture(scope="module")
def region(host):
    regions = _json(host, "cxl list -R")
    assert len(regions) == 1, regions
    return regions[0]


@pytest.fixture(scope="module")
def device(host):
    devices = _json(host, "daxctl list")
    assert len(devices) == 1, devices
    return devices[0]


def test_the_region_is_a_ram_region_of_mem0_again_after_the_reboot(host, region):
    assert region["type"] == "ram" and region["decode_state"] == "commit"
    memdevs = _json(host, "cxl list -M -r %s" % region["region"])
    assert [m["memdev"] for m in memdevs] == ["mem0"]


def test_the_collections_boot_unit_created_it_in_this_boot(host, device):
    unit = "tiering-pmem-dax-kmem@%s.service" % device["chardev"]
    assert host.check_output("systemctl is-active %s" % unit) == "active"
    journal = host.check_output("journalctl -b --no-pager -o cat -u %s" % unit)
    assert "created the CXL RAM region of mem0 in decoder0.0 again" in journal, journal
    config = host.file("/etc/tiering-pmem/dax-kmem/%s.conf" % device["chardev"]).content_string
    assert 'CXL_MEMDEVS="mem0"' in config.splitlines()


def test_every_block_is_online_movable_on_a_cpu_less_node(host, device):
    node = device["target_node"]
    assert device["mode"] == "system-ram"
    assert device["online_memblocks"] == device["total_memblocks"] > 0
    assert host.file("/sys/devices/system/node/node%d/cpulist" % node).content_string.strip() == ""
    zones = host.check_output("cat /sys/devices/system/node/node%d/memory*/valid_zones | sort | uniq -c" % node)
    assert zones.split() == [str(device["total_memblocks"]), "Movable"], zones


def test_the_cxl_node_is_in_a_tier_below_dram(host, device):
    tiers = {}
    for line in host.check_output("for t in /sys/devices/virtual/memory_tiering/memory_tier*; do "
                                  "echo $(basename $t) $(cat $t/nodelist); done").splitlines():
        name, nodes = line.split()
        for node in nodes.split(","):
            tiers[int(node)] = int(name[len("memory_tier"):])
    assert tiers[device["target_node"]] > tiers[0], tiers


def test_the_record_lists_the_region_by_its_device(host):
    owned = json.loads(host.file("/etc/tiering-pmem/owned.json").content_string)["namespaces"]
    assert [e for e in owned if "cxl_memdevs" in e] == [{"cxl_memdevs": ["mem0"], "how": "created"}]


def _playbook(name, *extra):
    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    run = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], *extra,
                          os.path.join(root, "playbooks", name)], capture_output=True, text=True, timeout=1500,
                         check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    recap = [line for line in run.stdout.splitlines() if " : ok=" in line]
    return run.stdout, int(recap[-1].split("changed=")[1].split()[0])


def test_status_shows_the_cxl_region_on_its_node(host, region, device):
    out, changed = _playbook("status.yml")
    assert changed == 0
    assert "CXL mem0: 512 MiB RAM" in out
    assert "CXL %s: ram 512 MiB of mem0 in decoder0.0, dax %s on node %d" % (
        region["region"], device["chardev"], device["target_node"]) in out
    assert "the collection's (created)" in out
    assert "from CXL %s" % region["region"] in out


def test_zz_teardown_gives_the_region_back_and_a_rerun_changes_nothing(host):
    """Runs last (file order)."""
    _out, changed = _playbook("teardown.yml")
    assert changed > 0
    assert _json(host, "cxl list -R") == []
    assert _json(host, "daxctl list") == []
    assert not host.file("/etc/tiering-pmem/dax-kmem/dax0.0.conf").exists
    assert not host.file("/etc/systemd/system/tiering-pmem-dax-kmem@.service").exists
    owned = json.loads(host.file("/etc/tiering-pmem/owned.json").content_string)["namespaces"]
    assert [e for e in owned if "cxl_memdevs" in e] == []
    _out, again = _playbook("teardown.yml")
    assert again == 0
