import os
import re

import pytest

from ansible_collections.tiering.pmem.plugins.modules import dax_kmem

RECONFIGURE = "daxctl reconfigure-device --mode=system-ram --no-online dax0.0"
ENABLE = "systemctl enable tiering-pmem-dax-kmem@dax0.0.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/tiering-pmem-dax-kmem@dax0.0.service"
PMEM_BLOCKS = range(33, 40)


def enable_unit(host, argv):
    os.makedirs(os.path.dirname(host.path(WANTS)), exist_ok=True)
    os.symlink("/etc/systemd/system/tiering-pmem-dax-kmem@.service", host.path(WANTS))
    return 0, "", "Created symlink ..."


@pytest.fixture
def devdax_host(fake_host, monkeypatch):
    """trixie devdax: auto_online_blocks=online; the reconfigure brings the captured offline state."""
    host = fake_host("trixie-nvdimm-devdax")
    host.emulate_memory_blocks(monkeypatch)
    host.transitions[RECONFIGURE] = "trixie-nvdimm-system-ram-offline"
    host.responses["systemctl daemon-reload"] = (0, "", "")
    host.responses[ENABLE] = enable_unit
    return host


def refuse_while_auto_online(host, argv):
    """What daxctl does on trixie (captured in the devdax-autoonline-refused fixture)."""
    if host.read("/sys/devices/system/memory/auto_online_blocks") != "offline":
        return 240, "", "dax0.0: error: kernel policy will auto-online memory, aborting\n"
    policy = host.read("/sys/devices/system/memory/auto_online_blocks")
    host.load("trixie-nvdimm-system-ram-offline")
    host.write("/sys/devices/system/memory/auto_online_blocks", policy + "\n")
    return 0, "", "reconfigured 1 device\n"


def test_devdax_to_movable_system_ram_on_an_auto_onlining_kernel(devdax_host, run_module):
    host = devdax_host
    del host.transitions[RECONFIGURE]
    host.responses[RECONFIGURE] = refuse_while_auto_online
    result = run_module(dax_kmem, {"device": "dax0.0"}, host)
    assert not result.failed, result.msg
    data = result.data
    assert data["actions"] == [
        "auto_online_blocks: online -> offline (daxctl refuses while the kernel auto-onlines)",
        RECONFIGURE,
        "auto_online_blocks: offline -> online (restored)",
        "online_movable 7 blocks: memory33-39",
        "record dax0.0 (namespace0.0, region0) in /etc/tiering-pmem/owned.json",
        "write /etc/systemd/system/tiering-pmem-dax-kmem@.service",
        "write /etc/tiering-pmem/dax-kmem/dax0.0.conf",
        "write /usr/local/sbin/tiering-pmem-dax-kmem",
        "systemctl daemon-reload",
        ENABLE,
    ]
    assert (data["mode"], data["zones"], data["online_blocks"], data["total_blocks"]) == \
        ("system-ram", {"Movable": 7}, 7, 7)
    assert data["numa_nodes"] == [1] and data["target_node"] == 1 and data["persistent"] is True
    assert data["auto_online_blocks"] == "online"
    assert host.read("/sys/devices/system/memory/auto_online_blocks") == "online"
    assert host.read("/etc/tiering-pmem/dax-kmem/dax0.0.conf").endswith("ONLINE=1\nMOVABLE=1")
    assert host.state_changing_calls() == [RECONFIGURE, "systemctl daemon-reload", ENABLE]
    assert os.stat(host.path("/usr/local/sbin/tiering-pmem-dax-kmem")).st_mode & 0o777 == 0o755
    assert os.stat(host.path("/etc/systemd/system/tiering-pmem-dax-kmem@.service")).st_mode & 0o777 == 0o644


def test_boot_script_is_valid_sh():
    import subprocess
    from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_persist
    check = subprocess.run(["sh", "-n"], input=_pmem_persist.SCRIPT_TEXT, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_wrong_file_mode_is_repaired(devdax_host, run_module):
    run_module(dax_kmem, {"device": "dax0.0"}, devdax_host)
    os.chmod(devdax_host.path("/usr/local/sbin/tiering-pmem-dax-kmem"), 0o600)
    again = run_module(dax_kmem, {"device": "dax0.0"}, devdax_host)
    assert again.data["actions"] == ["write /usr/local/sbin/tiering-pmem-dax-kmem"]
    assert os.stat(devdax_host.path("/usr/local/sbin/tiering-pmem-dax-kmem")).st_mode & 0o777 == 0o755


def test_second_run_is_a_no_op(devdax_host, run_module):
    run_module(dax_kmem, {"device": "dax0.0"}, devdax_host)
    devdax_host.mark_clean()
    devdax_host.calls[:] = []
    again = run_module(dax_kmem, {"device": "dax0.0"}, devdax_host)
    assert again.data["changed"] is False and again.data["actions"] == []
    assert devdax_host.state_changing_calls() == [] and devdax_host.changed_files() == {}
    assert again.data["zones"] == {"Movable": 7}


def test_check_mode_predicts_the_real_run(fake_host, devdax_host, run_module):
    checked_host = fake_host("trixie-nvdimm-devdax")
    checked = run_module(dax_kmem, {"device": "dax0.0"}, checked_host, check_mode=True, diff=True)
    assert checked_host.state_changing_calls() == [] and checked_host.changed_files() == {}
    real = run_module(dax_kmem, {"device": "dax0.0"}, devdax_host, diff=True)
    for key in ("changed", "actions", "mode", "zones", "online_blocks", "total_blocks", "numa_nodes",
                "target_node", "persistent", "auto_online_blocks", "diff"):
        assert checked.data[key] == real.data[key], key
    assert checked.data["diff"]["before"].startswith("mode: devdax\nonline_blocks: 0\ntotal_blocks: 0\n")
    assert "zones: Movable=7\n" in checked.data["diff"]["after"]


def test_normal_zone_and_no_persistence(devdax_host, run_module):
    result = run_module(dax_kmem, {"namespace": "namespace0.0", "movable": False, "persistent": False}, devdax_host)
    assert not result.failed, result.msg
    assert result.data["zones"] == {"Normal": 7}
    assert "online_kernel 7 blocks: memory33-39" in result.data["actions"]
    assert not any("systemctl" in call for call in devdax_host.state_changing_calls())
    assert result.data["persistent"] is False


def test_auto_onlined_normal_memory_is_moved_to_the_zone_asked_for(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-normal")
    host.emulate_memory_blocks(monkeypatch)
    result = run_module(dax_kmem, {"device": "dax0.0", "persistent": False}, host)
    assert result.data["actions"] == ["offline 7 blocks in the wrong zone: memory33-39",
                                      "online_movable 7 blocks: memory33-39"]
    assert result.data["zones"] == {"Movable": 7} and host.calls[-1][0].endswith("daxctl")


def test_offline_then_back_to_devdax(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    host.emulate_memory_blocks(monkeypatch)
    host.transitions["daxctl reconfigure-device --mode=devdax dax0.0"] = "trixie-nvdimm-devdax"
    result = run_module(dax_kmem, {"device": "dax0.0", "mode": "devdax"}, host)
    assert not result.failed, result.msg
    assert result.data["actions"] == ["offline 7 blocks: memory33-39", "daxctl reconfigure-device --mode=devdax dax0.0"]
    assert result.data["mode"] == "devdax" and result.data["online_blocks"] == 0


def test_refused_offline_is_reported_and_devdax_not_attempted(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    host.emulate_memory_blocks(monkeypatch)
    host.refuse_offline[36] = 16  # EBUSY
    result = run_module(dax_kmem, {"device": "dax0.0", "mode": "devdax"}, host)
    assert result.failed
    assert result.msg.startswith("the kernel refused 1 memory blocks of dax0.0 (left as they were): memory36: "
                                 "Device or resource busy")
    assert [r["block"] for r in result.data["refused"]] == [36]
    assert result.data["online_blocks"] == 1 and result.data["mode"] == "system-ram"
    assert host.state_changing_calls() == []  # the devdax reconfigure was not attempted


def test_movable_ratio_is_enforced(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    result = run_module(dax_kmem, {"device": "dax0.0", "movable_ratio": 0.25}, host)
    assert result.failed
    assert "refusing to make dax0.0 movable: movable memory would be 896 MiB against 2048 MiB normal" in result.msg
    assert "movable_ratio 0.2" in result.msg and "force=true" in result.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    forced = run_module(dax_kmem, {"device": "dax0.0", "movable_ratio": 0.25, "force": True}, host, check_mode=True)
    assert not forced.failed and forced.data["changed"]


def test_bookworm_needs_no_policy_dance(fake_host, run_module, monkeypatch):
    host = fake_host("bookworm-nvdimm-devdax")
    host.emulate_memory_blocks(monkeypatch)
    host.transitions[RECONFIGURE] = "bookworm-nvdimm-system-ram-offline"
    result = run_module(dax_kmem, {"device": "dax0.0", "persistent": False}, host)
    assert not result.failed, result.msg
    assert result.data["actions"][0] == RECONFIGURE
    assert not any("auto_online_blocks" in action for action in result.data["actions"])
    assert result.data["zones"] == {"Movable": result.data["total_blocks"]}


BAD_INPUTS = [
    ({"device": "pmem0"}, "device='pmem0' is not a dax device name: use the form daxX.Y"),
    ({"device": "dax3.0"}, "dax device 'dax3.0' does not exist; dax devices: dax0.0"),
    ({"namespace": "namespace7.0"}, "namespace 'namespace7.0' does not exist; namespaces: namespace0.0"),
    ({"region": "region4"}, "region 'region4' does not exist; regions: region0"),
    ({"device": "dax0.0", "mode": "system-ram"}, "value of mode must be one of: system_ram, devdax, got: system-ram"),
    ({"device": "dax0.0", "movable_ratio": 0}, "movable_ratio=0.0 must be a positive number"),
    ({"device": "dax0.0", "namespace": "namespace0.0"}, "parameters are mutually exclusive: device|namespace|region"),
    ({"mode": "devdax"}, "one of the following is required: device, namespace, region"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m[:40] for _a, m in BAD_INPUTS])
def test_bad_input_fails_and_changes_nothing(fake_host, run_module, args, message):
    host = fake_host("trixie-nvdimm-devdax")
    result = run_module(dax_kmem, args, host)
    assert result.failed
    assert message in result.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}


def test_namespace_without_dax_device(fake_host, run_module):
    host = fake_host("trixie-nvdimm-fsdax")
    result = run_module(dax_kmem, {"namespace": "namespace0.0"}, host)
    assert result.failed and "namespace namespace0.0 is in fsdax mode and has no dax device" in result.msg
    assert host.state_changing_calls() == []


def test_legacy_pmem_below_4g_is_predicted_and_onlined_as_dma32(fake_host, run_module, monkeypatch):
    """memmap=512M!0x80000000 pmem lies below 4 GiB: kernel memory there is DMA32, not Normal."""
    args = {"device": "dax0.0", "movable": False, "persistent": False}
    checked_host = fake_host("trixie-legacy-devdax")
    checked = run_module(dax_kmem, args, checked_host, check_mode=True)
    real_host = fake_host("trixie-legacy-devdax")
    real_host.emulate_memory_blocks(monkeypatch)
    # daxctl as captured on the legacy guest: refused under auto-online, else the offline state
    real_host.responses[RECONFIGURE] = lambda host, argv: (
        (240, "", "dax0.0: error: kernel policy will auto-online memory, aborting\n")
        if host.read("/sys/devices/system/memory/auto_online_blocks") != "offline"
        else (host.load("trixie-legacy-system-ram-offline"), (0, "", ""))[1])
    real = run_module(dax_kmem, args, real_host)
    assert not real.failed, real.msg
    assert real.data["zones"] == {"DMA32": 3} and real.data["numa_nodes"] == [0]
    for key in ("actions", "zones", "online_blocks", "total_blocks", "numa_nodes"):
        assert checked.data[key] == real.data[key], key


def test_a_devdax_device_holding_data_is_refused(devdax_host, run_module):
    host = devdax_host
    host.write_dax("dax0.0", 0, b"PMDK pool header")
    for check_mode in (True, False):
        result = run_module(dax_kmem, {"device": "dax0.0"}, host, check_mode=check_mode)
        assert result.failed
        assert result.msg.startswith("refusing to make dax0.0 (namespace0.0) system RAM without force=true: "
                                     "/dev/dax0.0 holds data (non-zero bytes from offset 0x0")
    assert host.state_changing_calls() == [] and host.changed_files() == {}


def test_a_devdax_device_mapped_by_a_process_is_refused(devdax_host, run_module):
    import os
    host = devdax_host
    os.makedirs(host.path("/proc/777/fd"))
    host.write("/proc/777/comm", "qemu-system-x86")
    host.write("/proc/777/maps", "7f0000000000-7f0040000000 rw-s 00000000 00:06 123    /dev/dax0.0\n")
    host.mark_clean()
    result = run_module(dax_kmem, {"device": "dax0.0"}, host, check_mode=True)
    assert result.failed
    assert "/dev/dax0.0 is open or mapped by process 777 (qemu-system-x86)" in result.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}


def test_a_recorded_device_is_converted_whatever_it_holds(devdax_host, run_module):
    import json
    host = devdax_host
    host.write_dax("dax0.0", 0, b"old system RAM contents")
    namespace = next(ns for ns in json.loads(host.responses["ndctl list -RNDi"][1])["regions"][0]["namespaces"]
                     if ns["dev"] == "namespace0.0")
    host.write("/etc/tiering-pmem/owned.json", json.dumps({"namespaces": [
        {"dev": "namespace0.0", "region": "region0", "uuid": namespace["uuid"]}]}))
    result = run_module(dax_kmem, {"device": "dax0.0", "persistent": False}, host)
    assert not result.failed, result.msg
    assert not any(action.startswith("record") for action in result.data["actions"])


def test_offlining_memory_that_holds_pages_is_refused(fake_host, run_module, monkeypatch):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    host.emulate_memory_blocks(monkeypatch)
    host.use_pages(35, 25600)  # 100 MiB
    host.use_pages(39, 1)
    for check_mode in (True, False):
        refused = run_module(dax_kmem, {"device": "dax0.0", "mode": "devdax"}, host, check_mode=check_mode)
        assert refused.failed
        assert refused.msg.startswith("refusing to offline the memory of dax0.0: its 7 online memory blocks hold "
                                      "100 MiB (pages in use (/proc/kpageflags))")
        assert "force=true" in refused.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    # 896 MiB of node 1, 100 MiB used: 796 MiB of the 900 MiB free are node 1's, leaving 104 MiB elsewhere.
    meminfo = host.read("/proc/meminfo")
    host.write("/proc/meminfo", re.sub(r"MemFree: +\d+ kB", "MemFree: %d kB" % (900 * 1024), meminfo))
    no_room = run_module(dax_kmem, {"device": "dax0.0", "mode": "devdax", "force": True}, host)
    assert no_room.failed
    assert no_room.msg == ("refusing to offline the memory of dax0.0 even with force=true: its blocks hold 100 MiB "
                           "(pages in use (/proc/kpageflags)) and the memory left online elsewhere has 104 MiB free, "
                           "less than that plus a 128 MiB reserve; free memory first")
    assert host.state_changing_calls() == []
