"""The preflight decision (module_utils/_preflight): package names per OS family, kernel features, what stops a host."""
import gzip

import pytest

from ansible_collections.tiering.pmem.plugins.module_utils import _preflight

ALL_FEATURES = {"memory_hotplug": "yes", "dax": "yes", "kmem": "yes", "damon": "yes", "page_idle": "yes"}
ALL_TOOLS = {"ndctl": True, "daxctl": True, "numactl": True, "cxl": True}


def observed(**changes):
    base = {"os_family": "Debian", "tools": dict(ALL_TOOLS), "cxl_devices": False,
            "features": dict(ALL_FEATURES), "cgroup_v2": True, "mem_available_mb": 4096}
    base.update(changes)
    return base


@pytest.mark.parametrize("text, family", [
    ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n', "Debian"),
    ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n', "Debian"),
    ('NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\n', "RedHat"),
    ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n', "RedHat"),
    ('NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\n', "RedHat"),
    ('NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\n', "RedHat"),
    ('NAME="Fedora Linux"\nID=fedora\n', "RedHat"),
    ('NAME="openSUSE Leap"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n', None),
    ("", None),
])
def test_os_family_from_os_release(text, family):
    assert _preflight.os_family(_preflight.parse_os_release(text)) == family


def test_debian_package_names():
    # Debian's ndctl package ships /usr/bin/ndctl and /usr/bin/cxl; daxctl and numactl are their own.
    names = _preflight.PACKAGES["Debian"]
    assert names == {"ndctl": "ndctl", "daxctl": "daxctl", "cxl": "ndctl", "numactl": "numactl"}


def test_rhel_package_names():
    # Fedora and the RHEL family build cxl-cli, daxctl and ndctl from the one ndctl source package.
    names = _preflight.PACKAGES["RedHat"]
    assert names == {"ndctl": "ndctl", "daxctl": "daxctl", "cxl": "cxl-cli", "numactl": "numactl"}


def test_nothing_missing_nothing_to_do():
    decision = _preflight.decide(observed(), migration_agent=True, min_available_mb=256)
    assert decision == {"needed_tools": ["ndctl", "daxctl", "numactl"], "missing_tools": [], "packages": [],
                        "uninstallable": [], "problems": [], "uncertain": []}


@pytest.mark.parametrize("family, packages", [
    ("Debian", ["ndctl", "numactl"]),          # cxl comes with ndctl: asked for once
    ("RedHat", ["ndctl", "numactl", "cxl-cli"]),
])
def test_missing_tools_become_packages_of_the_family(family, packages):
    tools = {"ndctl": False, "daxctl": True, "numactl": False, "cxl": False}
    decision = _preflight.decide(observed(os_family=family, tools=tools, cxl_devices=True))
    assert decision["missing_tools"] == ["ndctl", "numactl", "cxl"]
    assert decision["packages"] == packages
    assert decision["uninstallable"] == [] and decision["problems"] == []


def test_cxl_tool_needed_only_with_cxl_devices():
    tools = dict(ALL_TOOLS, cxl=False)
    assert _preflight.decide(observed(tools=tools))["missing_tools"] == []
    assert _preflight.decide(observed(tools=tools, cxl_devices=True))["missing_tools"] == ["cxl"]


def test_unknown_family_cannot_install():
    decision = _preflight.decide(observed(os_family=None, tools=dict(ALL_TOOLS, daxctl=False)))
    assert decision["packages"] == [] and decision["uninstallable"] == ["daxctl"]


def test_kernel_without_kmem_is_a_problem_unknown_is_not():
    decision = _preflight.decide(observed(features=dict(ALL_FEATURES, kmem="no", dax="unknown")))
    assert decision["problems"] == ["the kernel lacks the dax kmem driver (CONFIG_DEV_DAX_KMEM, /sys/bus/dax/drivers/kmem)"]
    assert len(decision["uncertain"]) == 1 and "device DAX" in decision["uncertain"][0]


def test_agent_needs_are_checked_only_for_the_agent():
    host = observed(features=dict(ALL_FEATURES, damon="no", page_idle="no"), cgroup_v2=False)
    assert _preflight.decide(host, migration_agent=False)["problems"] == []
    problems = _preflight.decide(host, migration_agent=True)["problems"]
    assert len(problems) == 2
    assert "DAMON" in problems[0] and "idle page tracking" in problems[0]
    assert "cgroup v2" in problems[1]


def test_agent_backend_auto_takes_either_but_damon_needs_damon():
    host = observed(features=dict(ALL_FEATURES, damon="no", page_idle="yes"))
    assert _preflight.decide(host, migration_agent=True, agent_backend="auto")["problems"] == []
    (problem,) = _preflight.decide(host, migration_agent=True, agent_backend="damon")["problems"]
    assert "migration_agent_backend damon" in problem and "DAMON" in problem
    with pytest.raises(ValueError, match="'hot' is not one of auto, damon, page_idle"):
        _preflight.decide(host, migration_agent=True, agent_backend="hot")


def test_too_little_memory():
    (problem,) = _preflight.decide(observed(mem_available_mb=100), min_available_mb=256)["problems"]
    assert problem.startswith("100 MiB of memory available") and "256 MiB" in problem


def test_kernel_config_parsing():
    config = _preflight.parse_kernel_config(
        "# comment\nCONFIG_MEMORY_HOTPLUG=y\nCONFIG_DEV_DAX=m\n# CONFIG_DEV_DAX_KMEM is not set\nCONFIG_LOCALVERSION=\"\"\n")
    assert config == {"CONFIG_MEMORY_HOTPLUG": "y", "CONFIG_DEV_DAX": "m", "CONFIG_DEV_DAX_KMEM": "n",
                      "CONFIG_LOCALVERSION": ""}
    assert _preflight.read_config_gz(gzip.compress(b"CONFIG_DAMON_SYSFS=y\n")) == "CONFIG_DAMON_SYSFS=y\n"
    assert _preflight.read_config_gz(b"not gzip") is None


def test_feature_state_sources():
    config = {"CONFIG_DEV_DAX_KMEM": "n", "CONFIG_DEV_DAX": "m"}
    # Live in sysfs wins; then a module on disk; then the config; nothing at all is unknown.
    assert _preflight.feature_state("kmem", {"/sys/bus/dax/drivers/kmem"}, config, set()) == "yes"
    assert _preflight.feature_state("kmem", set(), config, {"kernel/drivers/dax/kmem.ko"}) == "yes"
    assert _preflight.feature_state("kmem", set(), config, set()) == "no"
    assert _preflight.feature_state("dax", set(), config, set()) == "yes"
    assert _preflight.feature_state("kmem", set(), None, set()) == "unknown"
    assert _preflight.feature_state("damon", set(), {}, set()) == "no"
