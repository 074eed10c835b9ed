"""migration_agent checks its config with tierd on the controller before it touches the host.

Each test runs ansible-playbook against localhost in check mode, with every path the role writes
under tmp_path and the service disabled. The invalid configs stop at the check, before any task
that would install something; the valid one runs only the check (tasks_from: check_config). So
nothing on this machine changes, even as root.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "packaging"))

from tarball_helpers import build_tarball, install_tarball  # noqa: E402  (needs the path above)

VALIDATE_TASKS = ["Check the paths the role writes to", "Check migration_agent_memory_max",
                  "Check migration_agent_nice"]
CHECK_TASKS = VALIDATE_TASKS + ["Check the tierd config on the controller",
                                "Stop before installing anything when tierd refuses the config"]


def _playbook(tmp_path, role, config_vars, tasks_from=None, roles_path=None, collections_path=None):
    """(return code, output) of the role against localhost in check mode; the role's paths under tmp_path."""
    include = {"name": role}
    if tasks_from:
        include["tasks_from"] = tasks_from
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "tasks": [{"name": "Run the role", "ansible.builtin.include_role": include}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    extra = {"migration_agent_install_dir": str(tmp_path / "lib"),
             "migration_agent_bin": str(tmp_path / "sbin" / "tierd"),
             "migration_agent_config_path": str(tmp_path / "etc" / "config.json"),
             "__migration_agent_unit_path": str(tmp_path / "tierd.service"),
             "migration_agent_service_enabled": False}
    extra.update(config_vars)
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(extra))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCALHOST_WARNING="0", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    env.pop("ANSIBLE_CONFIG", None)
    if roles_path:
        env["ANSIBLE_ROLES_PATH"] = str(roles_path)
    if collections_path:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    inventory = "localhost ansible_python_interpreter=%s\n" % sys.executable
    (tmp_path / "inventory").write_text(inventory)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory"), "--check",
                           "-e", "@" + str(tmp_path / "vars.yml"), str(tmp_path / "play.yml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _tasks_run(output):
    return [name for name in re.findall(r"^TASK \[[^\]:]+ : (.*)\] \*", output, re.M) if not name.startswith("Validating")]


def _assert_nothing_written(tmp_path):
    for path in ("lib", "sbin", "etc", "tierd.service"):
        assert not (tmp_path / path).exists(), path


INVALID = [
    ({"migration_agent_workloads": [{"name": "vm1", "match": {"cmdline": "qemu(("}, "policy": {"pmem_max_percent": 30}}]},
     "workloads[vm1].match.cmdline: 'qemu((' is not a valid regular expression (missing ), unterminated subpattern"),
    ({"migration_agent_workloads": [{"name": "vm1", "match": {"pid": 1}, "policy": {"pmem_max_percent": 130}}]},
     "workloads[vm1].policy.pmem_max_percent: 130 must be <= 100"),
    ({"migration_agent_heat": {"hot_threshold": 0.1, "cold_threshold": 0.5}},
     "heat.cold_threshold: 0.5 must be below heat.hot_threshold 0.1"),
    ({"migration_agent_dram_budget_per_node": {"socket1": "8G"}},
     "dram_budget_per_node: node 'socket1' is not a NUMA node number; use 0 to 1023"),
]


@pytest.mark.parametrize("config_vars, message", INVALID, ids=["bad-regex", "percent", "thresholds", "node-budget"])
def test_invalid_config_stops_the_role_before_anything_is_installed(tmp_path, config_vars, message):
    rc, output = _playbook(tmp_path, "migration_agent", config_vars, roles_path=REPO / "roles")
    assert rc != 0, output
    assert "tierd refuses the config rendered from the migration_agent_* variables, so nothing was installed" in output
    assert message in output, output
    assert _tasks_run(output) == CHECK_TASKS, output  # not one task that installs something
    assert re.search(r"localhost +: ok=\d+ +changed=0 .*failed=1", output), output
    _assert_nothing_written(tmp_path)


UNUSABLE = [
    ({"migration_agent_config_path": "/etc/tierd/../../tmp/tierd.json"},
     "migration_agent_config_path=/etc/tierd/../../tmp/tierd.json is not a usable path: give an absolute path", 1),
    ({"migration_agent_bin": "/usr/local/sbin/tierd --debug"},
     "migration_agent_bin=/usr/local/sbin/tierd --debug is not a usable path", 1),
    ({"migration_agent_install_dir": "lib/tierd"}, "migration_agent_install_dir=lib/tierd is not a usable path", 1),
    ({"migration_agent_memory_max": "lots"},
     "migration_agent_memory_max=lots is not a systemd MemoryMax= value: use bytes with an optional K, M, G or T "
     "suffix (e.g. 256M), a percentage of RAM (e.g. 10%) or infinity", 2),
    ({"migration_agent_nice": 40}, "migration_agent_nice=40 is out of range: use -20 to 19", 3),
]


@pytest.mark.parametrize("role_vars, message, tasks", UNUSABLE, ids=["dotdot", "space", "relative", "memory-max", "nice"])
def test_unusable_paths_and_unit_values_stop_the_role_first(tmp_path, role_vars, message, tasks):
    rc, output = _playbook(tmp_path, "migration_agent", role_vars, roles_path=REPO / "roles")
    assert rc != 0, output
    assert message in output, output
    assert _tasks_run(output) == VALIDATE_TASKS[:tasks], output
    _assert_nothing_written(tmp_path)


def test_check_that_cannot_run_says_so(tmp_path):
    rc, output = _playbook(tmp_path, "migration_agent", {"migration_agent_source_dir": str(tmp_path / "no-tierd")},
                           roles_path=REPO / "roles")
    assert rc != 0
    assert "could not run tierd check-config on the controller (rc 1, migration_agent_source_dir %s), so nothing " \
        "was installed: " % (tmp_path / "no-tierd") in output, output
    assert "No module named tierd" in output
    assert _tasks_run(output) == CHECK_TASKS, output
    _assert_nothing_written(tmp_path)


def test_valid_config_passes_the_check_without_a_change(tmp_path):
    workloads = [{"name": "vm1", "match": {"cmdline": "qemu-system-x86_64 .*-name vm1"}, "vmas": {"min_size": "1G"},
                  "policy": {"pmem_max_percent": 30, "priority": 10}}]
    rc, output = _playbook(tmp_path, "migration_agent", {"migration_agent_workloads": workloads,
                                                         "migration_agent_dram_budget_per_node": {0: "48G", 1: "48G"}},
                           tasks_from="check_config", roles_path=REPO / "roles")
    assert rc == 0, output
    assert _tasks_run(output) == CHECK_TASKS[len(VALIDATE_TASKS):], output
    assert re.search(r"localhost +: ok=\d+ +changed=0 .*failed=0", output), output
    _assert_nothing_written(tmp_path)


@pytest.fixture(scope="module")
def installed_collection(tmp_path_factory):
    return install_tarball(build_tarball(tmp_path_factory.mktemp("build")), tmp_path_factory.mktemp("collections"))


def test_check_works_from_the_collection_installed_by_ansible_galaxy(tmp_path, installed_collection):
    rc, output = _playbook(tmp_path, "tiering.pmem.migration_agent", INVALID[0][0],
                           collections_path=installed_collection)
    assert rc != 0 and INVALID[0][1] in output, output
    assert _tasks_run(output) == CHECK_TASKS, output
    rc, output = _playbook(tmp_path, "tiering.pmem.migration_agent", {}, tasks_from="check_config",
                           collections_path=installed_collection)
    assert rc == 0, output
    tierd_dir = installed_collection / "ansible_collections" / "tiering" / "pmem" / "tierd"
    assert not list(tierd_dir.rglob("__pycache__")), "the check wrote bytecode into the installed collection"
    _assert_nothing_written(tmp_path)
