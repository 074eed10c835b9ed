import errno

import pytest

from ansible_collections.tiering.pmem.plugins.modules import memory_blocks

PMEM_BLOCKS = list(range(33, 40))  # dax0.0 of the nvdimm fixtures: 7 x 128 MiB blocks on node 1
BLOCK = "/sys/devices/system/memory/memory%d/%s"


def states(host, indexes):
    return [(host.read(BLOCK % (i, "state")), host.read(BLOCK % (i, "valid_zones"))) for i in indexes]


@pytest.fixture
def offline_host(fake_host, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-offline")
    host.emulate_memory_blocks(monkeypatch)
    return host


def test_onlines_every_block_of_a_node_in_one_call(offline_host, run_module):
    result = run_module(memory_blocks, {"node": 1, "state": "online_movable"}, offline_host)
    assert not result.failed, result.msg
    assert result.data["changed"] is True
    assert result.data["actions"] == ["online_movable 7 blocks: memory33-39"]
    assert result.data["before"] == {"total": 7, "online": 0, "offline": 7, "zones": {}}
    assert result.data["after"] == {"total": 7, "online": 7, "offline": 0, "zones": {"Movable": 7}}
    assert result.data["onlined"] == "33-39" and result.data["refused"] == []
    assert states(offline_host, PMEM_BLOCKS) == [("online", "Movable")] * 7
    assert offline_host.calls == []  # sysfs only, no commands
    assert set(path.split("/")[-2] for path in offline_host.changed_files()) == {"memory%d" % i for i in PMEM_BLOCKS}


def test_second_run_changes_nothing(offline_host, run_module):
    run_module(memory_blocks, {"node": 1, "state": "online_movable"}, offline_host)
    offline_host.mark_clean()
    again = run_module(memory_blocks, {"node": 1, "state": "online_movable"}, offline_host)
    assert again.data["changed"] is False and again.data["actions"] == []
    assert offline_host.changed_files() == {}


def test_already_movable_fixture_is_unchanged(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    result = run_module(memory_blocks, {"device": "dax0.0", "state": "online_movable"}, host)
    assert result.data["changed"] is False and result.data["selected"] == "33-39"
    assert host.changed_files() == {}


def test_check_mode_predicts_the_real_run_and_writes_nothing(fake_host, run_module, monkeypatch):
    checked_host = fake_host("trixie-nvdimm-system-ram-offline")
    checked = run_module(memory_blocks, {"node": 1, "state": "online_movable", "auto_online_blocks": "online"},
                         checked_host, check_mode=True, diff=True)
    assert checked_host.changed_files() == {}
    real_host = fake_host("trixie-nvdimm-system-ram-offline")
    real_host.emulate_memory_blocks(monkeypatch)
    real = run_module(memory_blocks, {"node": 1, "state": "online_movable", "auto_online_blocks": "online"},
                      real_host, diff=True)
    for key in ("changed", "actions", "before", "after", "onlined", "offlined", "auto_online_blocks", "diff"):
        assert checked.data[key] == real.data[key], key
    assert real_host.read("/sys/devices/system/memory/auto_online_blocks") == "online"


def test_diff_shows_block_ranges(offline_host, run_module):
    result = run_module(memory_blocks, {"node": 1, "state": "online_movable"}, offline_host, diff=True)
    assert result.data["diff"] == {"before": "memory33-39: offline\n", "after": "memory33-39: online Movable\n"}


def test_plain_online_predicts_the_kernel_default_zone(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-offline")
    result = run_module(memory_blocks, {"device": "dax0.0", "state": "online"}, host, check_mode=True)
    # valid_zones of the offline blocks reads "Normal Movable": Normal is what the kernel would pick.
    assert result.data["after"]["zones"] == {"Normal": 7}


def test_device_and_range_select_the_same_blocks(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-offline")
    by_device = run_module(memory_blocks, {"device": "dax0.0", "state": "online_kernel"}, host, check_mode=True)
    by_range = run_module(memory_blocks, {"phys_start": "0x108000000", "phys_size": "896M", "state": "online_kernel"},
                          host, check_mode=True)
    by_list = run_module(memory_blocks, {"blocks": PMEM_BLOCKS, "state": "online_kernel"}, host, check_mode=True)
    assert by_device.data["selected"] == by_range.data["selected"] == by_list.data["selected"] == "33-39"


def test_wrong_zone_is_refused_without_force(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-normal")
    result = run_module(memory_blocks, {"node": 1, "state": "online_movable"}, host)
    assert result.failed
    assert "7 blocks of node 1 (memory33-39) are online in zone Normal, not online_movable" in result.msg
    assert "force=true" in result.msg
    assert host.changed_files() == {}


def test_force_reonlines_blocks_in_the_wrong_zone(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-normal")
    host.emulate_memory_blocks(monkeypatch)
    result = run_module(memory_blocks, {"node": 1, "state": "online_movable", "force": True}, host)
    assert not result.failed, result.msg
    assert result.data["actions"] == ["offline 7 blocks in the wrong zone: memory33-39",
                                      "online_movable 7 blocks: memory33-39"]
    assert states(host, PMEM_BLOCKS) == [("online", "Movable")] * 7


def test_offline_refusals_are_reported_per_block_and_the_rest_done(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    host.emulate_memory_blocks(monkeypatch)
    host.refuse_offline[35] = errno.EBUSY
    host.refuse_offline[38] = errno.EBUSY
    result = run_module(memory_blocks, {"node": 1, "state": "offline"}, host)
    assert result.failed
    assert "the kernel refused offline for 2 of 7 blocks" in result.msg
    assert "memory35: Device or resource busy (errno EBUSY" in result.msg
    assert [r["block"] for r in result.data["refused"]] == [35, 38]
    assert result.data["offlined"] == "33-34,36-37,39"
    assert result.data["after"] == {"total": 7, "online": 2, "offline": 5, "zones": {"Movable": 2}}
    assert [s for s, _z in states(host, PMEM_BLOCKS)] == [
        "offline", "offline", "online", "offline", "offline", "online", "offline"]


def test_offlining_memory_of_a_cpu_node_needs_force(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    result = run_module(memory_blocks, {"node": 0, "state": "offline"}, host)
    assert result.failed
    assert "refusing to offline kernel memory (blocks memory0-15, not ZONE_MOVABLE) of node 0, which has CPUs" \
        in result.msg
    assert host.changed_files() == {}


def test_movable_memory_on_a_cpu_node_offlines_without_force(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-legacy-system-ram-movable")  # memmap= pmem sits on node 0 with the CPUs
    host.emulate_memory_blocks(monkeypatch)
    result = run_module(memory_blocks, {"device": "dax0.0", "state": "offline"}, host)
    assert not result.failed, result.msg
    assert result.data["offlined"] == "17-19"


def test_sets_auto_online_policy_only(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    result = run_module(memory_blocks, {"auto_online_blocks": "offline"}, host)
    assert result.data["changed"] is True
    assert result.data["actions"] == ["auto_online_blocks: online -> offline"]
    assert host.read("/sys/devices/system/memory/auto_online_blocks") == "offline"
    again = run_module(memory_blocks, {"auto_online_blocks": "offline"}, host)
    assert again.data["changed"] is False


def test_many_blocks_in_one_pass(fake_host, run_module, monkeypatch):
    """A node of 2000 synthetic blocks: one task, every block handled, no commands."""
    import os
    host = fake_host("trixie-nvdimm-system-ram-offline")
    host.emulate_memory_blocks(monkeypatch)
    for index in range(100, 2100):
        host.write(BLOCK % (index, "state"), "offline\n")
        host.write(BLOCK % (index, "valid_zones"), "Normal Movable\n")
        os.symlink("../../memory/memory%d" % index, host.path("/sys/devices/system/node/node1/memory%d" % index))
    result = run_module(memory_blocks, {"node": 1, "state": "online_movable"}, host)
    assert result.data["after"]["zones"] == {"Movable": 2007}
    assert result.data["selected"] == "33-39,100-2099"


BAD_INPUTS = [
    ({"node": 7, "state": "online_movable"}, "NUMA node 7 does not exist; online nodes: 0, 1"),
    ({"device": "dax9.9", "state": "online_movable"}, "dax device 'dax9.9' does not exist; dax devices: dax0.0"),
    ({"phys_start": "0x108100000", "phys_size": "128M", "state": "offline"},
     "phys_start=0x108100000 and phys_size=128M must be non-zero multiples of the memory block size 0x8000000"),
    ({"phys_start": "12Q", "phys_size": "128M", "state": "offline"}, "phys_start '12Q' is not a valid size: use"),
    ({"phys_start": "9" * 100000, "phys_size": "128M", "state": "offline"},
     "phys_start '%s'... (100000 characters) is too large" % ("9" * 64)),
    ({"phys_start": "0x0", "state": "offline"}, "parameters are required together: phys_start, phys_size"),
    ({"blocks": [33, 999], "state": "online"}, "memory blocks 999 do not exist; present blocks: 0-15,33-39"),
    ({"blocks": [], "state": "online"}, "blocks is an empty list"),
    ({"state": "online_movable"}, "state=online_movable needs the memory to act on"),
    ({"node": 1, "auto_online_blocks": "offline"}, "select memory for state, which is missing"),
    ({"node": 1, "device": "dax0.0", "state": "online"}, "parameters are mutually exclusive: node|device|phys_start|blocks"),
    ({"node": 1, "state": "online_fast"}, "value of state must be one of: online_movable, online_kernel, online, offline, got: online_fast"),
    ({"auto_online_blocks": "sometimes"}, "value of auto_online_blocks must be one of: offline, online, online_kernel, online_movable, got: sometimes"),
    ({}, "one of the following is required: state, auto_online_blocks"),
    ({"node": "one", "state": "online"}, "argument 'node' is of type"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m[:40] for _a, m in BAD_INPUTS])
def test_bad_input_fails_and_changes_nothing(fake_host, run_module, args, message):
    host = fake_host("trixie-nvdimm-system-ram-offline")
    result = run_module(memory_blocks, args, host)
    assert result.failed
    assert message in result.msg and len(result.msg) < 400
    assert host.calls == [] and host.changed_files() == {}


def test_devdax_device_has_no_blocks(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    result = run_module(memory_blocks, {"device": "dax0.0", "state": "online_movable"}, host)
    assert result.failed and "dax device dax0.0 is not in system-ram mode (driver device_dax)" in result.msg
    assert "tiering.pmem.dax_kmem" in result.msg and host.changed_files() == {}


def test_offlining_blocks_that_hold_pages_is_refused_without_force(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    host.emulate_memory_blocks(monkeypatch)
    host.use_pages(36, 384 * 256)  # 384 MiB over blocks 36-38
    for check_mode in (True, False):
        result = run_module(memory_blocks, {"node": 1, "state": "offline"}, host, check_mode=check_mode)
        assert result.failed
        assert result.msg.startswith("refusing to offline node 1 (memory33-39): its 7 online memory blocks hold 384 MiB")
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    forced = run_module(memory_blocks, {"node": 1, "state": "offline", "force": True}, host)
    assert not forced.failed, forced.msg
    assert forced.data["offlined"] == "33-39"
