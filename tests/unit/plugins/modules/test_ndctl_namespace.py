import json

import pytest

from ansible_collections.tiering.pmem.plugins.modules import ndctl_namespace

TO_DEVDAX = "ndctl create-namespace --mode=devdax --force --reconfig=namespace0.0"
TO_DEVDAX_2M = TO_DEVDAX + " --align=2M"
RECORD_NS0 = "record namespace0.0 (region0) in /etc/tiering-pmem/owned.json"
RECORD_PATH = "etc/tiering-pmem/owned.json"


def test_reconfigures_the_named_raw_namespace_to_devdax(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    host.transitions[TO_DEVDAX_2M] = "trixie-nvdimm-devdax"
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax", "align": "2M"}, host)
    assert not result.failed, result.msg
    assert result.data["changed"] is True
    assert result.data["actions"] == [TO_DEVDAX_2M, RECORD_NS0]
    assert host.state_changing_calls() == [TO_DEVDAX_2M]
    owned = json.loads(host.read(RECORD_PATH))["namespaces"]
    assert [(e["dev"], e["region"], e["how"], e["original_mode"]) for e in owned] == \
        [("namespace0.0", "region0", "converted", "raw")]
    namespace = result.data["namespace"]
    assert (namespace["dev"], namespace["mode"], namespace["chardev"], namespace["align"]) == \
        ("namespace0.0", "devdax", "dax0.0", 2 * 1024 * 1024)


def test_matching_namespace_is_left_alone(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax", "align": "2M",
                                          "size": "1G"}, host)
    assert result.data["changed"] is False and result.data["actions"] == []
    assert host.commands() == ["ndctl list -RNDi"]


def test_region_alone_matches_nothing_named_and_is_refused(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    result = run_module(ndctl_namespace, {"region": "region0", "mode": "devdax"}, host)
    assert result.failed
    assert result.msg == ("region0 has no free space; its namespace namespace0.0 (raw) is not named by the task: "
                          "set namespace=namespace0.0 to reconfigure it, or force=true")
    assert host.state_changing_calls() == []


def test_region_with_force_reconfigures_its_only_namespace(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    host.transitions[TO_DEVDAX] = "trixie-nvdimm-devdax"
    result = run_module(ndctl_namespace, {"region": "0", "mode": "devdax", "force": True}, host)
    assert not result.failed, result.msg
    assert host.state_changing_calls() == [TO_DEVDAX]


def test_check_mode_runs_only_the_list_and_predicts_the_actions(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    checked = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax", "align": "2M"}, host,
                         check_mode=True, diff=True)
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    assert checked.data["changed"] is True and checked.data["actions"] == [TO_DEVDAX_2M, RECORD_NS0]
    assert checked.data["namespace"]["mode"] == "devdax"
    assert "mode: raw\n" in checked.data["diff"]["before"]
    assert "mode: devdax\n" in checked.data["diff"]["after"]
    assert "blockdev: pmem0\n" in checked.data["diff"]["before"]
    assert "blockdev" not in checked.data["diff"]["after"]


def test_real_run_diff(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    host.transitions[TO_DEVDAX] = "trixie-nvdimm-devdax"
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host, diff=True)
    assert "chardev: dax0.0\n" in result.data["diff"]["after"]
    assert "mode: devdax\n" in result.data["diff"]["after"]


def test_mounted_filesystem_is_refused_without_force(fake_host, run_module):
    host = fake_host("trixie-nvdimm-fsdax-mounted")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host)
    assert result.failed
    assert result.msg == ("refusing to reconfigure namespace0.0 without force=true: /dev/pmem0 is mounted on "
                          "/mnt/pmem (its data would be lost)")
    assert host.state_changing_calls() == []


def test_unmounted_fsdax_named_by_the_task_is_reconfigured(fake_host, run_module):
    host = fake_host("trixie-nvdimm-fsdax")
    host.transitions[TO_DEVDAX] = "trixie-nvdimm-devdax"
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host)
    assert not result.failed and host.state_changing_calls() == [TO_DEVDAX]


def test_online_system_ram_is_refused_even_with_force(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    for args in ({"namespace": "namespace0.0", "mode": "fsdax", "force": True},
                 {"namespace": "namespace0.0", "state": "absent", "force": True}):
        result = run_module(ndctl_namespace, args, host)
        assert result.failed
        assert "dax0.0 has 7 of 7 memory blocks online; offline them first" in result.msg
    assert host.state_changing_calls() == []


def test_offline_system_ram_needs_force_then_goes_back_to_devdax_first(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-offline")
    refused = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "fsdax"}, host)
    assert refused.failed
    assert "without force=true: dax0.0 is system RAM (kmem)" in refused.msg
    assert host.state_changing_calls() == []
    host.responses["daxctl reconfigure-device --mode=devdax dax0.0"] = (0, "", "reconfigured 1 device")
    host.transitions["ndctl create-namespace --mode=fsdax --force --reconfig=namespace0.0"] = "trixie-nvdimm-fsdax"
    done = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "fsdax", "force": True}, host)
    assert not done.failed, done.msg
    assert host.state_changing_calls() == ["daxctl reconfigure-device --mode=devdax dax0.0",
                                           "ndctl create-namespace --mode=fsdax --force --reconfig=namespace0.0"]
    assert done.data["namespace"]["blockdev"] == "pmem0"


def test_absent_destroys_a_named_namespace_and_is_idempotent(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    host.responses["ndctl destroy-namespace --force namespace0.0"] = (0, "", "destroyed 1 namespace")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "state": "absent"}, host)
    assert result.data["changed"] and host.state_changing_calls() == ["ndctl destroy-namespace --force namespace0.0"]
    gone = fake_host("trixie-nvdimm-devdax")
    missing = run_module(ndctl_namespace, {"name": "scratch", "region": "region0", "state": "absent"}, gone)
    assert missing.data["changed"] is False and gone.state_changing_calls() == []


def test_ndctl_failure_reports_stderr(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    host.responses[TO_DEVDAX] = (1, "", "failed to reconfigure namespace: Device or resource busy")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host)
    assert result.failed
    assert "rc 1" in result.msg and "Device or resource busy" in result.msg
    assert result.data["stderr"].startswith("failed to reconfigure")


BAD_INPUTS = [
    ({"namespace": "pmem0", "mode": "devdax"}, "namespace='pmem0' is not a namespace device name: use the form namespaceX.Y"),
    ({"namespace": "namespace0.9", "mode": "devdax"}, "namespace 'namespace0.9' does not exist; namespaces: namespace0.0"),
    ({"region": "region9", "mode": "devdax"}, "region 'region9' does not exist; regions: region0"),
    ({"namespace": "namespace0.0"}, "state is present but all of the following are missing: mode"),
    ({"namespace": "namespace0.0", "state": "absent", "mode": "raw"}, "mode, size and align describe a namespace to keep"),
    ({"namespace": "namespace0.0", "mode": "devdax", "size": "lots"}, "size 'lots' is not a valid size: use"),
    ({"namespace": "namespace0.0", "mode": "devdax", "align": "3M"},
     "align=3M is not a valid alignment: use a power of two of at least 4K"),
    ({"namespace": "namespace0.0", "mode": "devdax", "align": "2K"},
     "align=2K is not a valid alignment: use a power of two of at least 4K"),
    ({"region": "region0", "mode": "devdax", "size": "64G"},
     "size=64G (65536 MiB) does not fit in region0: the region is"),
    ({"namespace": "namespace0.0", "mode": "devdax", "size": "64G"},
     "reconfiguring namespace0.0 can use at most the region's size"),
    ({"namespace": "namespace0.0", "mode": "raw", "align": "2M"}, "align=2M applies to devdax and fsdax namespaces, not mode=raw"),
    ({"namespace": "namespace0.0", "mode": "memory"}, "value of mode must be one of: devdax, fsdax, raw, sector, got: memory"),
    ({"mode": "devdax"}, "one of the following is required: namespace, region, name"),
    ({"name": "scratch", "mode": "devdax"}, "no namespace named 'scratch' exists; give region= to create it"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m[:40] for _a, m in BAD_INPUTS])
def test_bad_input_fails_and_changes_nothing(fake_host, run_module, args, message):
    host = fake_host("trixie-nvdimm-raw")
    result = run_module(ndctl_namespace, args, host)
    assert result.failed
    assert message in result.msg
    assert host.state_changing_calls() == [] and host.changed_files() == {}


def labelled_host_with_free_space(fake_host):
    """The fixtures have no labelled region with free space: the list is the raw capture, edited."""
    host = fake_host("trixie-nvdimm-raw")
    inventory = json.loads(host.responses["ndctl list -RNDi"][1])
    region = inventory["regions"][0]
    region["available_size"] = region["max_available_extent"] = region["size"]
    region["namespaces"] = []
    host.responses["ndctl list -RNDi"] = (0, json.dumps(inventory), "")
    return host


def test_creates_in_the_free_space_of_a_labelled_region(fake_host, run_module):
    host = labelled_host_with_free_space(fake_host)
    create = "ndctl create-namespace --mode=fsdax --region=region0 --size=512M --name=scratch"
    created = {"dev": "namespace0.1", "mode": "fsdax", "size": 528482304, "name": "scratch", "blockdev": "pmem0.1"}
    host.responses[create] = (0, json.dumps(created), "")
    args = {"region": "region0", "name": "scratch", "mode": "fsdax", "size": "512M"}
    checked = run_module(ndctl_namespace, args, host, check_mode=True)
    assert checked.data["actions"] == [create, "record the new namespace in /etc/tiering-pmem/owned.json"]
    assert host.state_changing_calls() == []
    result = run_module(ndctl_namespace, args, host)
    assert not result.failed, result.msg
    assert host.state_changing_calls() == [create]
    assert result.data["namespace"]["dev"] == "namespace0.1" and result.data["namespace"]["name"] == "scratch"
    owned = json.loads(host.read(RECORD_PATH))["namespaces"]
    assert [(e["dev"], e["name"], e["how"]) for e in owned] == [("namespace0.1", "scratch", "created")]


def test_a_new_namespace_without_a_name_is_named_as_the_collections(fake_host, run_module):
    host = labelled_host_with_free_space(fake_host)
    checked = run_module(ndctl_namespace, {"region": "region0", "mode": "devdax"}, host, check_mode=True)
    assert checked.data["actions"][0] == "ndctl create-namespace --mode=devdax --region=region0 --name=tiering-pmem"


def test_region_and_mode_alone_are_satisfied_by_a_namespace_of_the_collection(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    foreign = run_module(ndctl_namespace, {"region": "region0", "mode": "devdax"}, host)
    assert foreign.failed and "namespace0.0 (devdax) is not named by the task" in foreign.msg
    namespace = next(ns for ns in json.loads(host.responses["ndctl list -RNDi"][1])["regions"][0]["namespaces"]
                     if ns["dev"] == "namespace0.0")
    entry = {"dev": "namespace0.0", "region": "region0", "uuid": namespace.get("uuid")}
    host.write(RECORD_PATH, json.dumps({"namespaces": [entry]}))
    result = run_module(ndctl_namespace, {"region": "region0", "mode": "devdax"}, host)
    assert not result.failed, result.msg
    assert result.data["changed"] is False and result.data["namespace"]["dev"] == "namespace0.0"
    assert host.state_changing_calls() == []


def test_a_record_entry_with_another_uuid_is_not_the_collections(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    entry = {"dev": "namespace0.0", "region": "region0", "uuid": "00000000-0000-0000-0000-000000000000"}
    host.write(RECORD_PATH, json.dumps({"namespaces": [entry]}))
    result = run_module(ndctl_namespace, {"region": "region0", "mode": "devdax"}, host)
    assert result.failed and "is not named by the task" in result.msg


def test_a_filesystem_on_a_partition_is_refused(fake_host, run_module):
    host = fake_host("trixie-nvdimm-fsdax")
    host.write("sys/class/block/pmem0/pmem0p1/partition", "1")
    host.signatures["/dev/pmem0"] = "PTTYPE=dos"
    host.signatures["/dev/pmem0p1"] = "TYPE=ext4\nUSAGE=filesystem"
    host.mark_clean()
    for check_mode in (True, False):
        result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host,
                            check_mode=check_mode)
        assert result.failed
        assert result.msg == ("refusing to reconfigure namespace0.0 without force=true: /dev/pmem0 holds signatures: "
                              "dos partition table; /dev/pmem0p1 holds signatures: ext4 filesystem (its data would be "
                              "lost)")
    assert host.state_changing_calls() == [] and host.changed_files() == {}
    assert "blkid -p -o export /dev/pmem0p1" in host.commands()


def test_devdax_contents_are_refused_unless_the_collection_made_them(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    host.write_dax("dax0.0", 0x100000, b"application data")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "raw"}, host)
    assert result.failed
    assert "/dev/dax0.0 holds data (non-zero bytes from offset 0x100000" in result.msg
    assert "force=true" in result.msg and host.state_changing_calls() == []
    namespace = next(ns for ns in json.loads(host.responses["ndctl list -RNDi"][1])["regions"][0]["namespaces"]
                     if ns["dev"] == "namespace0.0")
    entry = {"dev": "namespace0.0", "region": "region0", "uuid": namespace.get("uuid"), "original_mode": "raw"}
    host.write(RECORD_PATH, json.dumps({"namespaces": [entry]}))
    host.responses["ndctl create-namespace --mode=raw --force --reconfig=namespace0.0"] = (0, "{}", "")
    ours = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "raw"}, host)
    assert not ours.failed, ours.msg
    assert ours.data["actions"][-1] == ("drop namespace0.0 (region0) from /etc/tiering-pmem/owned.json "
                                        "(back to its original mode raw)")
    assert json.loads(host.read(RECORD_PATH))["namespaces"] == []


def test_a_process_with_the_device_open_is_refused(fake_host, run_module, tmp_path):
    host = fake_host("trixie-nvdimm-fsdax")
    fd_dir = host.path("/proc/4242/fd")
    import os
    os.makedirs(fd_dir)
    os.symlink("/dev/pmem0", os.path.join(fd_dir, "3"))
    host.write("/proc/4242/comm", "pmemapp")
    host.write("/proc/4242/maps", "")
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host, check_mode=True)
    assert result.failed
    assert "/dev/pmem0 is open or mapped by process 4242 (pmemapp)" in result.msg


def test_ndctl_usage_text_is_not_echoed(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    usage = "\n".join(["Error: unknown option", "", " usage: ndctl create-namespace [<options>]"] +
                      ["    -%s, --option%d    some help text" % (chr(97 + i % 26), i) for i in range(60)])
    host.responses[TO_DEVDAX] = (129, "", usage)
    result = run_module(ndctl_namespace, {"namespace": "namespace0.0", "mode": "devdax"}, host)
    assert result.failed
    assert "rc 129" in result.msg and "Error: unknown option" in result.msg
    assert "usage" not in result.msg and "--option" not in result.msg
