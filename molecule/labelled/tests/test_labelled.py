"""After provision (twice) and a reboot of the two-socket labelled guest: the free space of both
regions is system RAM of the collection's own on nodes 2 and 3, Movable, in a tier below DRAM; the
applications' namespaces and their data are untouched; status and teardown know what is whose."""
import json
import os
import subprocess

import pytest

NODE_OF_REGION = {"region0": 2, "region1": 3}


def _json(host, command):
    data = json.loads(host.check_output(command) or "[]")
    return data if isinstance(data, list) else [data]


@pytest.fixture(scope="module")
def namespaces(host):
    return _json(host, "ndctl list -N")


def test_each_region_has_one_namespace_of_the_collection_in_its_free_space(namespaces):
    ours = sorted((ns["dev"].split(".")[0], ns.get("name"), ns["mode"]) for ns in namespaces
                  if ns.get("name") == "tiering-pmem")
    assert ours == [("namespace0", "tiering-pmem", "devdax"), ("namespace1", "tiering-pmem", "devdax")]


def test_the_applications_namespaces_are_as_they_were(host, namespaces):
    before = json.loads(host.file("/root/namespaces-before.json").content_string)
    before = before if isinstance(before, list) else [before]
    keys = ("dev", "mode", "size", "uuid", "name", "chardev", "blockdev")
    theirs = [dict((k, ns.get(k)) for k in keys) for ns in namespaces if ns.get("name") in ("appdata", "appfs")]
    assert sorted(theirs, key=str) == sorted([dict((k, ns.get(k)) for k in keys) for ns in before], key=str)


def test_devdax_data_unchanged(host):
    dev = host.file("/root/appdata.dev").content_string.strip()
    now = host.check_output("python3 /root/prepare_data.py sum /dev/%s 64" % dev).strip()
    assert now == host.file("/root/appdata.sha256").content_string.strip()


def test_filesystem_and_file_unchanged(host):
    blk = host.file("/root/appfs.dev").content_string.strip()
    assert host.run("blkid -p -o value -s TYPE /dev/%s" % blk).stdout.strip() == "ext4"
    check = host.run("mkdir -p /mnt/appfs && mount -o ro /dev/%s /mnt/appfs && sha256sum -c /root/appfs.sha256; "
                     "rc=$?; umount /mnt/appfs; exit $rc" % blk)
    assert check.rc == 0, check.stdout + check.stderr


def test_every_block_of_both_devices_online_movable_on_its_node_after_the_reboot(host, namespaces):
    devices = dict((d["chardev"], d) for d in _json(host, "daxctl list"))
    ours = [ns for ns in namespaces if ns.get("name") == "tiering-pmem"]
    assert len(ours) == 2
    for ns in ours:
        device = devices[ns["chardev"]]
        node = NODE_OF_REGION["region" + ns["dev"][len("namespace"):].split(".")[0]]
        assert (device["mode"], device["target_node"]) == ("system-ram", node)
        blocks = host.check_output("ls /sys/devices/system/node/node%d | grep -c '^memory[0-9]'" % node)
        zones = host.check_output("cat /sys/devices/system/node/node%d/memory*/valid_zones | sort | uniq -c" % node)
        assert int(blocks) == device["total_memblocks"] == device["online_memblocks"] > 0
        assert zones.split() == [blocks.strip(), "Movable"], zones


def test_pmem_nodes_in_a_tier_below_dram(host):
    tiers = host.check_output("for t in /sys/devices/virtual/memory_tiering/memory_tier*; do "
                              "echo $(basename $t) $(cat $t/nodelist); done").splitlines()
    by_tier = sorted((int(line.split()[0][len("memory_tier"):]), line.split()[1]) for line in tiers)
    assert [nodes for _tier, nodes in by_tier] == ["0-1", "2-3"]


def test_hmat_puts_each_pmem_node_near_its_socket(host):
    distances = [line.split() for line in host.file("/sys/devices/system/node/node2/distance").content_string.splitlines()]
    assert distances == [["17", "28", "10", "28"]]


def test_record_lists_only_the_collections_namespaces(host):
    owned = json.loads(host.file("/etc/tiering-pmem/owned.json").content_string)["namespaces"]
    assert sorted((e["region"], e["name"], e["how"]) for e in owned) == \
        [("region0", "tiering-pmem", "created"), ("region1", "tiering-pmem", "created")]


def _playbook(name, *extra):
    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    run = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], *extra,
                          os.path.join(root, "playbooks", name)], capture_output=True, text=True, timeout=1500,
                         check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    recap = [line for line in run.stdout.splitlines() if " : ok=" in line]
    return run.stdout, int(recap[-1].split("changed=")[1].split()[0])


def test_status_lists_every_node_and_whose_namespaces(host):
    out, changed = _playbook("status.yml")
    assert changed == 0
    for node in range(4):
        assert "node %d:" % node in out
    assert "the collection's (created)" in out and "not the collection's: left alone" in out


def test_zz_teardown_undoes_only_the_collections_and_a_rerun_changes_nothing(host):
    """Runs last (file order): gives back only what provisioning made; the data stays."""
    _out, changed = _playbook("teardown.yml", "-e", "teardown_to=raw")
    assert changed > 0
    namespaces = _json(host, "ndctl list -N")
    assert sorted(ns.get("name") for ns in namespaces) == ["appdata", "appfs"]
    assert all(d.get("mode") != "system-ram" for d in _json(host, "daxctl list"))
    assert not host.file("/etc/systemd/system/tiering-pmem-dax-kmem@.service").exists
    assert not host.file("/usr/local/sbin/tiering-pmem-dax-kmem").exists
    assert json.loads(host.file("/etc/tiering-pmem/owned.json").content_string)["namespaces"] == []
    assert not host.file("/etc/sysctl.d/90-tiering-pmem.conf").exists
    assert not host.file("/etc/tmpfiles.d/tiering-pmem.conf").exists
    assert host.file("/sys/kernel/mm/numa/demotion_enabled").content_string.strip() == "false"
    test_devdax_data_unchanged(host)
    test_filesystem_and_file_unchanged(host)
    regions = dict((r["dev"], r) for r in _json(host, "ndctl list -R"))
    assert regions["region1"]["available_size"] == regions["region1"]["size"]
    _out, again = _playbook("teardown.yml", "-e", "teardown_to=raw")
    assert again == 0
