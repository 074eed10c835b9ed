"""cxl_region against states captured from the cxl lab guest (one volatile CXL type-3 device, mem0,
512 MiB, behind host bridge pci0000:0c in the 4 GiB window decoder0.0; trixie auto-onlines memory)."""

import os
import re

from ansible_collections.tiering.pmem.plugins.modules import cxl_region

CREATE = "cxl create-region -t ram -d decoder0.0 -w 1 -m mem0"
SETTLE = "udevadm settle --timeout=60"
RECORD = "record the region of mem0 in /etc/tiering-pmem/owned.json"
POLICY = "sys/devices/system/memory/auto_online_blocks"


def test_creates_a_region_for_the_free_device_with_its_memory_left_offline(fake_host, run_module):
    host = fake_host("trixie-cxl-no-region")
    checked = run_module(cxl_region, {}, host, check_mode=True, diff=True)
    assert not checked.failed, checked.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    assert checked.data["changed"] is True
    assert checked.data["actions"] == ["auto_online_blocks: online -> offline (the new region's memory stays offline)",
                                       CREATE, RECORD, SETTLE, "auto_online_blocks: offline -> online (restored)"]
    (predicted,) = checked.data["regions"]
    assert predicted["region"] is None and predicted["memdevs"] == ["mem0"] and predicted["size"] == 512 << 20
    assert checked.data["diff"] == {"before": "", "after": "(new): ram region of mem0, 512 MiB in decoder0.0\n"}

    policies = []

    def create(h, argv):
        policies.append(h.read(POLICY))
        h.load("trixie-cxl-region-offline")  # what the guest showed after the region came up offline
        return 0, "", "cxl region: cmd_create_region: created 1 region"
    host.responses[CREATE] = create
    host.responses[SETTLE] = (0, "", "")
    done = run_module(cxl_region, {}, host)
    assert not done.failed, done.msg
    assert done.data["actions"] == checked.data["actions"] and done.data["changed"] is True
    assert policies == ["offline"]  # the kernel did not online the new memory by itself
    assert host.read(POLICY).strip() == "online"  # and the policy is back
    (region,) = done.data["regions"]
    assert region["region"] == "region0" and region["dax_devices"] == ["dax0.0"] and region["numa_nodes"] == [1]
    # The collection's now: pmem_info says so (teardown gives it back), and destroying it drops the record.
    from ansible_collections.tiering.pmem.plugins.modules import pmem_info
    info = run_module(pmem_info, {}, host)
    assert info.data["cxl"]["regions"][0]["owned"] is True
    assert next(d for d in info.data["dax_devices"] if d["name"] == "dax0.0")["owned"] is True
    host.responses["cxl disable-region region0"] = (0, "", "")
    host.transitions["cxl destroy-region region0"] = "trixie-cxl-region-destroyed"
    absent = run_module(cxl_region, {"region": "region0", "state": "absent"}, host)
    assert absent.data["actions"][-1] == "drop the region of mem0 from /etc/tiering-pmem/owned.json"
    assert "cxl_memdevs" not in host.read("/etc/tiering-pmem/owned.json")


def test_leave_offline_false_lets_the_kernel_online_it(fake_host, run_module):
    host = fake_host("trixie-cxl-no-region")
    result = run_module(cxl_region, {"leave_offline": False}, host, check_mode=True)
    assert result.data["actions"] == [CREATE, RECORD, SETTLE]


def test_existing_region_is_left_alone(fake_host, run_module):
    for fixture in ("trixie-cxl-region-online-normal", "trixie-cxl-region-movable"):
        host = fake_host(fixture)
        for args in ({}, {"memdevs": ["mem0"]}):
            result = run_module(cxl_region, args, host)
            assert not result.failed, result.msg
            assert result.data["changed"] is False and result.data["actions"] == []
            assert host.state_changing_calls() == []
            assert [r["region"] for r in result.data["regions"]] == ["region0"]


def test_absent_destroys_an_offline_region_and_is_idempotent(fake_host, run_module):
    host = fake_host("trixie-cxl-region-offline")
    args = {"region": "region0", "state": "absent"}
    checked = run_module(cxl_region, args, host, check_mode=True, diff=True)
    assert checked.data["actions"] == ["cxl disable-region region0", "cxl destroy-region region0"]
    assert checked.data["diff"]["before"].startswith("region0: ram region of mem0, 512 MiB in decoder0.0, dax dax0.0")
    assert host.state_changing_calls() == []
    host.responses["cxl disable-region region0"] = (0, "", "cxl region: cmd_disable_region: disabled 1 region")
    host.transitions["cxl destroy-region region0"] = "trixie-cxl-region-destroyed"
    done = run_module(cxl_region, args, host)
    assert not done.failed, done.msg
    assert host.state_changing_calls() == ["cxl disable-region region0", "cxl destroy-region region0"]
    again = run_module(cxl_region, args, host)
    assert again.data["changed"] is False and again.data["actions"] == []


def test_absent_refuses_online_memory_without_force(fake_host, run_module):
    host = fake_host("trixie-cxl-region-movable")
    for check_mode in (True, False):
        result = run_module(cxl_region, {"region": "region0", "state": "absent"}, host, check_mode=check_mode)
        assert result.failed
        assert result.msg.startswith("refusing to destroy region0: the memory of dax0.0 is online as system RAM "
                                     "(4 of 4 blocks)")
        assert "force=true" in result.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}


def test_absent_with_force_offlines_first(fake_host, run_module):
    host = fake_host("trixie-cxl-region-movable")
    result = run_module(cxl_region, {"region": "region0", "state": "absent", "force": True}, host, check_mode=True)
    assert not result.failed, result.msg
    assert result.data["actions"] == ["daxctl offline-memory dax0.0", "cxl disable-region region0",
                                      "cxl destroy-region region0"]


def test_absent_refuses_pages_in_use_and_with_force_needs_room(fake_host, run_module):
    host = fake_host("trixie-cxl-region-movable")
    host.use_pages(98, 25600)  # 100 MiB in the region's first block (blocks 98-101)
    refused = run_module(cxl_region, {"region": "region0", "state": "absent"}, host)
    assert refused.failed and refused.msg.startswith("refusing to destroy region0: the memory of dax0.0 is online")
    # 512 MiB of the region online, 100 MiB used: 412 MiB of MemFree is the region's; leave 100 MiB elsewhere.
    meminfo = host.read("/proc/meminfo")
    host.write("/proc/meminfo", re.sub(r"MemFree: +\d+ kB", "MemFree: %d kB" % (512 * 1024), meminfo))
    no_room = run_module(cxl_region, {"region": "region0", "state": "absent", "force": True}, host)
    assert no_room.failed
    assert no_room.msg.startswith("refusing to offline dax0.0 (region0) even with force=true: its blocks hold 100 MiB")
    assert host.state_changing_calls() == []


BAD_INPUTS = [
    ({"memdevs": ["mem7"]}, "CXL memory device 'mem7' does not exist; memory devices: mem0"),
    ({"memdevs": ["mem0", "mem0"]}, "memdevs lists a device twice: mem0, mem0"),
    ({"decoder": "decoder2.0"}, "decoder 'decoder2.0' is not a root decoder; root decoders (CXL memory windows): decoder0.0"),
    ({"decoder": "decoder9.9"}, "decoder 'decoder9.9' is not a root decoder"),
    ({"region": "region0"}, "region=region0 names a region to destroy (state=absent)"),
    ({"state": "absent"}, "state=absent needs region= (the region to destroy: this host has no CXL region)"),
    ({"type": "pmem"}, "value of type must be one of: ram, got: pmem"),
    ({"interleave_granularity": 300}, "value of interleave_granularity must be one of: 256, 512"),
]


def test_bad_input_fails_and_changes_nothing(fake_host, run_module):
    for args, message in BAD_INPUTS:
        host = fake_host("trixie-cxl-no-region")
        result = run_module(cxl_region, args, host)
        assert result.failed, args
        assert message in result.msg, (args, result.msg)
        assert host.state_changing_calls() == [] and host.changed_files() == {}


def test_memdev_already_in_a_region_is_refused(fake_host, run_module):
    host = fake_host("trixie-cxl-region-offline")
    result = run_module(cxl_region, {"memdevs": ["mem0"], "decoder": "decoder0.0", "type": "ram"}, host)
    assert not result.failed and result.data["changed"] is False  # the same devices: that region


def test_no_cxl_on_the_host(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    result = run_module(cxl_region, {}, host)
    assert result.failed
    assert result.msg == "no CXL memory device with RAM capacity is free for a region (memory devices: none: " \
                         "this host has no CXL memory)"


def test_dax_kmem_boot_config_of_a_cxl_device_creates_its_region_again(fake_host, run_module, monkeypatch):
    """QEMU (and hosts that do not program CXL decoders at boot) forget a region on reboot: the
    device's boot config names the region's decoder and devices, and the boot script creates it."""
    from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_persist as persist
    from ansible_collections.tiering.pmem.plugins.modules import dax_kmem
    host = fake_host("trixie-cxl-region-offline")
    host.emulate_memory_blocks(monkeypatch)
    host.responses["systemctl daemon-reload"] = (0, "", "")
    host.responses["systemctl enable tiering-pmem-dax-kmem@dax0.0.service"] = (0, "", "")
    result = run_module(dax_kmem, {"device": "dax0.0"}, host)
    assert not result.failed, result.msg
    assert "write /etc/tiering-pmem/dax-kmem/dax0.0.conf" in result.data["actions"]
    config = host.read(persist.config_path("dax0.0"))
    assert "CXL_DECODER=decoder0.0" in config.splitlines() and 'CXL_MEMDEVS="mem0"' in config.splitlines()
    assert "CXL_GRANULARITY" not in config  # one device: no interleave
    assert 'cxl create-region -t ram -d "$CXL_DECODER" -w "$ways"' in host.read(persist.SCRIPT_PATH)
    # ... and cxl_region absent takes that config away, or the region would come back at boot.
    paths = (persist.config_path("dax0.0"), persist.UNIT_PATH, persist.SCRIPT_PATH)
    written = dict((path, host.read(path)) for path in paths)
    host = fake_host("trixie-cxl-region-offline")  # the region's memory offline again, the boot config in place
    for path, text in written.items():
        host.write(path, text)
    host.write("/etc/systemd/system/multi-user.target.wants/tiering-pmem-dax-kmem@dax0.0.service", "")
    args = {"region": "region0", "state": "absent"}
    checked = run_module(cxl_region, args, host, check_mode=True)
    assert checked.data["actions"] == [
        "cxl disable-region region0", "cxl destroy-region region0",
        "systemctl disable tiering-pmem-dax-kmem@dax0.0.service", "remove /etc/tiering-pmem/dax-kmem/dax0.0.conf",
        "remove %s" % persist.UNIT_PATH, "remove %s" % persist.SCRIPT_PATH, "systemctl daemon-reload"]
    host.responses["cxl disable-region region0"] = (0, "", "")
    host.responses["cxl destroy-region region0"] = (0, "", "")
    host.responses["systemctl disable tiering-pmem-dax-kmem@dax0.0.service"] = (0, "", "")
    host.responses["systemctl daemon-reload"] = (0, "", "")
    done = run_module(cxl_region, args, host)
    assert not done.failed, done.msg
    assert done.data["actions"] == checked.data["actions"]
    for path in written:
        assert not os.path.exists(os.path.join(host.root, path.lstrip("/")))
