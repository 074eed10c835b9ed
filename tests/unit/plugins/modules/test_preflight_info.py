"""preflight_info over a captured guest's /sys and /proc, with the files preflight reads added per case."""
import gzip
import os

from ansible_collections.tiering.pmem.plugins.modules import preflight_info

RELEASE = "6.12.38+deb13-amd64"


def put(host, path, content):
    full = host.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def debian_host(fake_host):
    host = fake_host("trixie-nvdimm-devdax")
    put(host, "/proc/sys/kernel/osrelease", RELEASE + "\n")
    put(host, "/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n')
    return host


def test_debian_guest_without_numactl_and_kmem_module_on_disk(fake_host, run_module):
    host = debian_host(fake_host)
    put(host, "/lib/modules/%s/modules.dep" % RELEASE,
        "kernel/drivers/dax/kmem.ko.xz: kernel/drivers/dax/dax.ko.xz\nkernel/drivers/dax/dax.ko.xz:\n")
    put(host, "/sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")
    put(host, "/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds", "0\n")
    host.binaries.discard("numactl")
    before = host.snapshot()
    result = run_module(preflight_info, {"migration_agent": True, "min_available_mb": 64}, host)
    assert not result.failed, result.msg
    data = result.data
    assert data["changed"] is False
    assert data["os_family"] == "Debian" and data["kernel_release"] == RELEASE
    assert data["kernel_config"] is None
    assert data["features"]["memory_hotplug"] == "yes" and data["features"]["dax"] == "yes"
    assert data["features"]["kmem"] == "yes"      # from modules.dep: the driver is not loaded yet
    assert data["features"]["damon"] == "yes" and data["features"]["page_idle"] == "unknown"
    assert data["cgroup_v2"] is True and data["cxl_devices"] is False
    assert data["missing_tools"] == ["numactl"] and data["packages"] == ["numactl"]
    assert data["problems"] == [] and data["uncertain"] == []
    assert data["mem_available_mb"] > 64
    assert host.commands() == []                    # reads files only
    assert host.snapshot() == before


def test_rhel_host_with_cxl_and_kernel_config_saying_no(fake_host, run_module):
    host = fake_host("trixie-nvdimm-devdax")
    put(host, "/proc/sys/kernel/osrelease", "5.14.0-503.el9.x86_64\n")
    put(host, "/etc/os-release", 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n')
    put(host, "/boot/config-5.14.0-503.el9.x86_64",
        "CONFIG_MEMORY_HOTPLUG=y\nCONFIG_DEV_DAX=m\n# CONFIG_DEV_DAX_KMEM is not set\n")
    put(host, "/sys/bus/cxl/devices/mem0/serial", "0\n")
    host.binaries.discard("cxl")
    result = run_module(preflight_info, {}, host)
    data = result.data
    assert not result.failed, result.msg
    assert data["os_family"] == "RedHat" and data["kernel_config"] == "/boot/config-5.14.0-503.el9.x86_64"
    assert data["features"]["kmem"] == "no"
    assert data["cxl_devices"] is True and data["needed_tools"][-1] == "cxl"
    # numactl is not on the recorded host either.
    assert data["missing_tools"] == ["numactl", "cxl"] and data["packages"] == ["numactl", "cxl-cli"]
    assert data["problems"] == ["the kernel lacks the dax kmem driver (CONFIG_DEV_DAX_KMEM, /sys/bus/dax/drivers/kmem)"]


def test_proc_config_gz_and_no_cgroup_v2_for_the_agent(fake_host, run_module):
    host = debian_host(fake_host)
    put(host, "/proc/config.gz", gzip.compress(b"CONFIG_DEV_DAX_KMEM=m\nCONFIG_DAMON_SYSFS=y\n"))
    result = run_module(preflight_info, {"migration_agent": True, "agent_backend": "damon"}, host)
    data = result.data
    assert data["kernel_config"] == "/proc/config.gz"
    assert data["features"]["kmem"] == "yes" and data["features"]["damon"] == "yes"
    (problem,) = data["problems"]
    assert "cgroup v2" in problem and "systemd.unified_cgroup_hierarchy=1" in problem


def test_memory_floor_and_bad_floor(fake_host, run_module):
    host = debian_host(fake_host)
    data = run_module(preflight_info, {"min_available_mb": 10 ** 9}, host).data
    assert any("preflight_min_available_mb" in p for p in data["problems"]), data["problems"]
    result = run_module(preflight_info, {"min_available_mb": -1}, host)
    assert result.failed and result.msg.startswith("min_available_mb=-1 is negative")
