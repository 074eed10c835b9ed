"""The playbooks run the way AWX runs them: through ansible-runner with a private data dir.

AWX lays out a private data dir per job (project/ with the synced playbooks, inventory/,
env/extravars with the survey answers, env/envvars, env/cmdline for check mode) and calls
ansible_runner.run() on it. This does the same against a lab guest named by LAB_GUEST_JSON,
with the collection installed from its built tarball, as in an execution environment.
Order: provision (survey defaults) -> status (changed=0) -> provision in check mode (no drift).
"""
import json
import os
import shutil

import pytest

from tarball_helpers import BIN, lab_guest, lab_inventory, needs_lab_guest

ansible_runner = pytest.importorskip("ansible_runner", reason="ansible-runner is not installed (requirements-docs.txt)")

pytestmark = needs_lab_guest()

# What the provision survey of playbooks/awx/configure.yml sends when left at its defaults: the
# hosts, and (depending on the AWX version) empty strings for the optional questions, which leave
# the inventory's values. tests/awx/test_survey_inventory.py checks that resolution without a guest.
SURVEY_DEFAULTS = {
    "provision_hosts": "all",
    "provision_serial": "",
    "provision_max_fail_percentage": "",
    "survey_provision_emulated_pmem": "",
    "survey_system_ram_zone": "",
    "survey_kernel_tiering_numa_balancing": "",
    "survey_provision_migration_agent": "",
}
# The drift template's extra vars (awx_drift_extra_vars): a host that would change fails.
DRIFT_EXTRA_VARS = {"provision_fail_on_change": True, "provision_serial": "100%", "provision_max_fail_percentage": 100}


@pytest.fixture(scope="module")
def private_data_dir(installed_collection, tmp_path_factory):
    installed = installed_collection / "ansible_collections/tiering/pmem"
    for playbook in ("provision.yml", "status.yml"):
        assert (installed / "playbooks" / playbook).is_file(), \
            "playbooks/%s is not in the installed collection (not written yet, or left out of the tarball)" % playbook
    data = tmp_path_factory.mktemp("awx-job")
    # The project is what AWX syncs from git; here the installed copy's playbooks (with templates/).
    shutil.copytree(installed / "playbooks", data / "project" / "playbooks")
    (data / "inventory").mkdir()
    (data / "inventory" / "hosts.json").write_text(json.dumps(lab_inventory(lab_guest())))
    (data / "env").mkdir()
    (data / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(installed_collection),
        "PATH": "%s:%s" % (BIN, os.environ.get("PATH", "")),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }))
    (data / "env" / "settings").write_text(json.dumps({"idle_timeout": 900, "job_timeout": 1800}))
    return data


def run_job(data, playbook, extravars, check=False):
    (data / "env" / "extravars").write_text(json.dumps(extravars))
    result = ansible_runner.run(private_data_dir=str(data), playbook=playbook, quiet=True,
                                cmdline="--check --diff" if check else None)
    stdout = result.stdout.read()
    assert result.status == "successful" and result.rc == 0, \
        "%s: status=%s rc=%s\n%s" % (playbook, result.status, result.rc, stdout[-6000:])
    host = lab_guest()["name"]
    stats = result.stats
    assert host in stats["ok"], "%s did not run on %s: %s" % (playbook, host, stats)
    assert not stats["failures"] and not stats["dark"], stats
    return result, stdout, stats.get("changed", {}).get(host, 0)


def module_results(result, action):
    return [e["event_data"]["res"] for e in result.events
            if e.get("event") == "runner_on_ok" and e["event_data"].get("task_action") == action]


def test_provision_then_status_then_check_mode_drift(private_data_dir):
    run_job(private_data_dir, "playbooks/provision.yml", SURVEY_DEFAULTS)

    result, stdout, changed = run_job(private_data_dir, "playbooks/status.yml", {})
    assert changed == 0, "status changed something:\n%s" % stdout[-4000:]
    (info,) = module_results(result, "tiering.pmem.pmem_info")
    pmem_nodes = [n for n in info["numa_nodes"] if not n["has_cpu"] and n["has_memory"]]
    assert pmem_nodes, "no CPU-less node with memory after provisioning: %s" % info["numa_nodes"]
    ram = [d for d in info["dax_devices"] if d["mode"] == "system-ram"]
    assert ram and all(d["online_memblocks"] == d["total_memblocks"] > 0 for d in ram), ram

    # The scheduled drift check: the check-mode job template over an already provisioned host.
    _result, stdout, changed = run_job(private_data_dir, "playbooks/provision.yml", DRIFT_EXTRA_VARS, check=True)
    assert changed == 0, "check mode predicts changes on a provisioned host (drift?):\n%s" % stdout[-4000:]
