import pytest

from ansible_collections.tiering.pmem.plugins.modules import pmem_info


def test_system_ram_movable_inventory(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    result = run_module(pmem_info, {}, host)
    assert not result.failed, result.msg
    data = result.data
    assert data["changed"] is False
    assert host.commands() == ["ndctl list -RNDi", "daxctl list"]
    assert [r["dev"] for r in data["regions"]] == ["region0"]
    assert data["regions"][0]["namespaces"] == ["namespace0.0"]
    (namespace,) = data["namespaces"]
    assert namespace["mode"] == "devdax" and namespace["chardev"] == "dax0.0" and namespace["uuid"]
    (dax,) = data["dax_devices"]
    assert dax["mode"] == "system-ram" and dax["target_node"] == 1
    assert dax["namespace"] == "namespace0.0" and dax["driver"] == "kmem"
    assert dax["zones"] == {"Movable": 7} and dax["memory_nodes"] == [1]
    node1 = [n for n in data["numa_nodes"] if n["node"] == 1][0]
    assert node1["cpus"] == [] and node1["has_cpu"] is False and node1["has_memory"] is True
    assert node1["mem_total"] == 7 * 128 * 1024 * 1024
    assert node1["distances"] == {"0": 20, "1": 10}
    assert node1["tier"] == data["memory_tiers"][-1]["tier"] and node1["tier"] > 4
    assert data["memory_block_size"] == 128 * 1024 * 1024
    assert data["memory_blocks"]["zones"]["Movable"] == 7
    assert data["demotion_enabled"] is False
    assert data["numa_balancing"] in (0, 1, 2)
    assert data["memmap"] == {"cmdline": [], "iomem": []}


def test_raw_namespace_has_no_dax_device(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    data = run_module(pmem_info, {}, host).data
    assert data["dax_devices"] == []
    assert [(n["dev"], n["mode"], n["blockdev"]) for n in data["namespaces"]] == [("namespace0.0", "raw", "pmem0")]
    assert [n["node"] for n in data["numa_nodes"]] == [0]
    assert data["auto_online_blocks"] == "online"


def test_offline_system_ram_counts(fake_host, run_module):
    data = run_module(pmem_info, {}, fake_host("trixie-nvdimm-system-ram-offline")).data
    (dax,) = data["dax_devices"]
    assert dax["online_memblocks"] == 0 and dax["total_memblocks"] == 7 and dax["zones"] == {}
    assert data["memory_blocks"]["offline"] == 7


def test_check_mode_reads_the_same(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    normal = run_module(pmem_info, {}, host).data
    checked = run_module(pmem_info, {}, host, check_mode=True).data
    assert normal == checked
    assert host.changed_files() == {}


def test_ndctl_failure_is_reported_with_stderr(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    host.responses["ndctl list -RNDi"] = (1, "", "libndctl: ndctl_new: cannot open /dev/ndctl")
    result = run_module(pmem_info, {}, host)
    assert result.failed
    assert "ndctl list -RNDi" in result.msg and "cannot open" in result.msg
    assert result.data["rc"] == 1


def test_unknown_option_is_refused(fake_host, run_module):
    host = fake_host("trixie-nvdimm-raw")
    result = run_module(pmem_info, {"device": "dax0.0"}, host)
    assert result.failed and "device" in result.msg
    assert host.calls == []


def test_unknown_options_message_says_there_are_none(fake_host, run_module):
    # Ansible's own message would end in "Supported parameters include: ." (nothing after it).
    host = fake_host("trixie-nvdimm-raw")
    result = run_module(pmem_info, {"region": "region0", "x" * 5000: 1}, host, check_mode=True)
    assert result.failed
    assert result.msg.startswith("tiering.pmem.pmem_info takes no options (it only reads the host), but got: region, ")
    assert "remove them" in result.msg and len(result.msg) < 300
    assert host.calls == []


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2"])
def test_unparsable_tool_output(fake_host, run_module, garbage):
    host = fake_host("trixie-nvdimm-raw")
    host.responses["daxctl list"] = (0, garbage, "")
    result = run_module(pmem_info, {}, host)
    assert result.failed and "cannot parse the output of" in result.msg and "daxctl list'" in result.msg


# ---------------------------------------------------------------- CXL (fixtures from a cxl lab guest)

def test_cxl_device_without_a_region(fake_host, run_module):
    host = fake_host("trixie-cxl-no-region")
    result = run_module(pmem_info, {}, host)
    assert not result.failed, result.msg
    assert host.commands() == ["ndctl list -RNDi", "daxctl list", "cxl list -vvv"]
    cxl = result.data["cxl"]
    (memdev,) = cxl["memdevs"]
    assert memdev["memdev"] == "mem0" and memdev["ram_size"] == 512 << 20 and memdev["pmem_size"] == 0
    assert memdev["endpoint"] == "endpoint2" and memdev["port"] == "port1"
    assert [p["port"] for p in cxl["ports"]] == ["port1"] and cxl["ports"][0]["parent"] == "root0"
    (window,) = [d for d in cxl["decoders"] if d["level"] == "root"]
    assert window["decoder"] == "decoder0.0" and window["volatile_capable"] and window["size"] == 4 << 30
    assert window["max_available_extent"] == 4 << 30
    assert [d["decoder"] for d in cxl["decoders"] if d["level"] == "endpoint"] == \
        ["decoder2.0", "decoder2.1", "decoder2.2", "decoder2.3"]
    assert cxl["regions"] == [] and result.data["dax_devices"] == []
    assert result.data["regions"] == []  # no NVDIMM: ndctl's regions are pmem ones


def test_cxl_ram_region_the_kernel_onlined(fake_host, run_module):
    host = fake_host("trixie-cxl-region-online-normal")
    data = run_module(pmem_info, {}, host).data
    (region,) = data["cxl"]["regions"]
    assert region["region"] == "region0" and region["type"] == "ram" and region["size"] == 512 << 20
    assert region["decode_state"] == "commit" and region["decoder"] == "decoder0.0"
    assert region["memdevs"] == ["mem0"] and region["dax_devices"] == ["dax0.0"]
    assert region["numa_nodes"] == [1]
    dram_tier = [t["tier"] for t in data["memory_tiers"] if 0 in t["nodes"]]
    assert region["tiers"] and region["tiers"][0] > dram_tier[0]  # a tier below DRAM
    (window,) = [d for d in data["cxl"]["decoders"] if d["level"] == "root"]
    assert window["max_available_extent"] == (4 << 30) - (512 << 20)
    (dax,) = data["dax_devices"]
    assert dax["source"] == "cxl" and dax["cxl_region"] == "region0" and dax["namespace"] is None
    assert dax["mode"] == "system-ram" and dax["target_node"] == 1 and dax["zones"] == {"Normal": 4}
    node1 = [n for n in data["numa_nodes"] if n["node"] == 1][0]
    assert node1["has_cpu"] is False and node1["tier"] == region["tiers"][0]


def test_cxl_region_online_movable(fake_host, run_module):
    data = run_module(pmem_info, {}, fake_host("trixie-cxl-region-movable")).data
    (dax,) = data["dax_devices"]
    assert dax["source"] == "cxl" and dax["zones"] == {"Movable": 4} and dax["online_memblocks"] == 4


def test_nvdimm_hosts_report_no_cxl_and_run_no_cxl_tool(fake_host, run_module):
    host = fake_host("trixie-nvdimm-system-ram-movable")
    data = run_module(pmem_info, {}, host).data
    assert data["cxl"] == {"memdevs": [], "ports": [], "decoders": [], "regions": []}
    assert data["dax_devices"][0]["source"] == "ndctl" and data["dax_devices"][0]["cxl_region"] is None
    assert "cxl list -vvv" not in host.commands()
