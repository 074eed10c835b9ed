"""The provision survey against an inventory whose groups disagree, run as AWX runs it (ansible-runner).

No lab guest: the hosts are this machine under three names (ansible_connection=local), and the runs
use what needs no pmem - `--tags plan` (the survey tasks, the "provisioned with" report and the
summary, no module), and check mode with preflight forced to refuse (it only reads). The playbook,
the inventory's group vars, the survey answers as extra vars and set_fact are the real ones.
"""
import json
import os
import shutil
import sys

import pytest

from tarball_helpers import BIN

ansible_runner = pytest.importorskip("ansible_runner", reason="ansible-runner is not installed (requirements-docs.txt)")

LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
INVENTORY = {
    "all": {"children": {
        "zone_movable": {"hosts": {"a1": LOCAL, "a2": LOCAL}, "vars": {"system_ram_zone": "movable"}},
        "zone_normal": {"hosts": {"b1": LOCAL},
                        "vars": {"system_ram_zone": "normal", "kernel_tiering_numa_balancing": 2,
                                 "provision_migration_agent": True}},
    }},
}
PLAN_TASK = "Show what this host is provisioned with"
SUMMARY_TASK = "Show the summary"


@pytest.fixture(scope="module")
def data_dir(installed_collection, tmp_path_factory):
    installed = installed_collection / "ansible_collections/tiering/pmem"
    data = tmp_path_factory.mktemp("awx-survey")
    shutil.copytree(installed / "playbooks", data / "project" / "playbooks")
    (data / "inventory").mkdir()
    (data / "inventory" / "hosts.json").write_text(json.dumps(INVENTORY))
    (data / "env").mkdir()
    (data / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(installed_collection),
        "PATH": "%s:%s" % (BIN, os.environ.get("PATH", "")),
        "ANSIBLE_NOCOLOR": "1",
    }))
    (data / "env" / "settings").write_text(json.dumps({"idle_timeout": 300, "job_timeout": 600}))
    return data


def launch(data, extravars, cmdline):
    (data / "env" / "extravars").write_text(json.dumps(extravars))
    result = ansible_runner.run(private_data_dir=str(data), playbook="playbooks/provision.yml", quiet=True,
                                cmdline=cmdline)
    return result, result.stdout.read()


def task_results(result, task):
    return {e["event_data"]["host"]: e["event_data"]["res"] for e in result.events
            if e.get("event") in ("runner_on_ok", "runner_on_failed") and e["event_data"].get("task") == task}


def plan(data, extravars):
    result, stdout = launch(data, extravars, "--tags plan --check")
    assert result.status == "successful" and result.rc == 0, stdout[-4000:]
    return {host: res["msg"] for host, res in task_results(result, PLAN_TASK).items()}


@pytest.mark.parametrize("answers", [
    {"provision_hosts": "all"},                               # unanswered questions are not sent
    {"provision_hosts": "all", "survey_provision_emulated_pmem": "", "survey_system_ram_zone": "",
     "survey_kernel_tiering_numa_balancing": "", "survey_provision_migration_agent": ""},   # or sent empty
], ids=["omitted", "empty"])
def test_empty_survey_keeps_each_groups_values(data_dir, answers):
    seen = plan(data_dir, answers)
    assert seen["a1"] == seen["a2"] == {
        "provision_emulated_pmem": False, "system_ram_zone": "movable",
        "kernel_tiering_numa_balancing": "(matching the tiering mode: 0 for tierd, else 2)",
        "provision_migration_agent": False, "migration_agent_tiering_mode": "none"}
    assert seen["b1"] == {
        "provision_emulated_pmem": False, "system_ram_zone": "normal",
        "kernel_tiering_numa_balancing": 2, "provision_migration_agent": True, "migration_agent_tiering_mode": "auto"}


def test_an_answer_overrides_every_host_and_only_that_answer(data_dir):
    seen = plan(data_dir, {"provision_hosts": "all", "survey_system_ram_zone": "normal",
                           "survey_kernel_tiering_numa_balancing": "3", "survey_provision_migration_agent": ""})
    for host in ("a1", "a2", "b1"):
        assert seen[host]["system_ram_zone"] == "normal", seen
        assert seen[host]["kernel_tiering_numa_balancing"] == 3, seen     # an int, as the role's spec wants
    # Not answered: each host keeps its own.
    assert [seen[h]["provision_migration_agent"] for h in ("a1", "a2", "b1")] == [False, False, True]


def test_an_answer_that_contradicts_tierds_mode_fails_that_host_alone(data_dir):
    """numa_balancing 0 where tierd runs in mode auto (the kernel promotes): nobody would promote.
    The host with the agent is refused before anything changes, naming both values; the others go on."""
    result, stdout = launch(data_dir, {"provision_hosts": "all", "survey_kernel_tiering_numa_balancing": "0"},
                            "--tags plan --check")
    assert result.status == "failed", stdout[-4000:]
    failed = {e["event_data"]["host"]: e["event_data"]["res"].get("msg", "") for e in result.events
              if e.get("event") == "runner_on_failed"}
    assert set(failed) == {"b1"}, failed
    assert "kernel_tiering_numa_balancing=0 contradicts migration_agent_tiering_mode=auto" in failed["b1"], failed
    assert set(task_results(result, PLAN_TASK)) == {"a1", "a2", "b1"}


def test_answers_apply_only_to_the_hosts_asked_for(data_dir):
    seen = plan(data_dir, {"provision_hosts": "zone_normal", "survey_system_ram_zone": "movable"})
    assert list(seen) == ["b1"] and seen["b1"]["system_ram_zone"] == "movable"


def test_bad_answer_is_named(data_dir):
    result, stdout = launch(data_dir, {"provision_hosts": "all", "survey_system_ram_zone": "fast"}, "--tags plan --check")
    assert result.status == "failed"
    assert 'survey_system_ram_zone \\"fast\\" is not one of movable, normal (or empty: the inventory decides)' in stdout \
        or 'survey_system_ram_zone "fast" is not one of movable, normal (or empty: the inventory decides)' in stdout, stdout[-3000:]
    assert not task_results(result, PLAN_TASK)


def test_bad_serial_stops_before_any_host(data_dir):
    result, stdout = launch(data_dir, {"provision_hosts": "all", "provision_serial": "abc"}, "--tags plan --check")
    assert result.rc != 0
    assert "provision_serial 'abc' is not a number or a percentage like 25%" in stdout, stdout[-3000:]
    assert not [e for e in result.events if e.get("event") == "runner_on_ok"]


def plays(result):
    return [e for e in result.events if e.get("event") == "playbook_on_play_start"]


def test_serial_runs_one_batch_per_host(data_dir):
    result, stdout = launch(data_dir, {"provision_hosts": "all", "provision_serial": 1}, "--tags plan --check")
    assert result.status == "successful", stdout[-3000:]
    assert len(plays(result)) == 3
    assert sorted(task_results(result, PLAN_TASK)) == ["a1", "a2", "b1"]


REFUSE = {"preflight_install_packages": False, "preflight_min_available_mb": 10 ** 9}


def test_a_refused_batch_stops_the_run(data_dir):
    # Check mode, nothing installed: preflight only reads, and refuses for want of memory.
    result, stdout = launch(data_dir, dict(REFUSE, provision_hosts="all", provision_serial=1,
                                           provision_max_fail_percentage=0), "--check")
    assert result.status == "failed"
    assert len(plays(result)) == 1, "the run went on after a failed batch:\n" + stdout[-3000:]
    summaries = task_results(result, SUMMARY_TASK)
    assert list(summaries) == ["a1"], summaries
    (line,) = [m for m in summaries["a1"]["msg"] if m.startswith("refused or failed at ")]
    assert "Stop this host when it cannot be provisioned: a1 cannot be provisioned:" in line
    assert "less than the 1000000000 MiB preflight_min_available_mb asks for" in line
    assert result.stats["failures"] == {"a1": 1}


def test_each_host_of_a_batch_gets_its_summary(data_dir):
    result, stdout = launch(data_dir, dict(REFUSE, provision_hosts="all", provision_serial="100%"), "--check")
    assert len(plays(result)) == 1
    summaries = task_results(result, SUMMARY_TASK)
    assert sorted(summaries) == ["a1", "a2", "b1"], stdout[-3000:]
    for host, res in summaries.items():
        assert res["msg"][0] == "would change: nothing", res
        assert any(host + " cannot be provisioned" in m for m in res["msg"]), res
    assert sorted(result.stats["failures"]) == ["a1", "a2", "b1"]


def test_drift_check_fails_the_host_that_would_change_and_names_what(data_dir):
    # No step can change anything here, so b1 is given the fact migration_agent_result as the role
    # sets it when tierd's config and service state differ (a host var: in --tags plan the role does not run to set it):
    # this checks the summary and the drift failure wired to it, not the role.
    drifted = json.loads(json.dumps(INVENTORY))
    drifted["all"]["children"]["zone_normal"]["hosts"]["b1"]["migration_agent_result"] = {"changes": ["config", "service state"]}
    (data_dir / "inventory" / "hosts.json").write_text(json.dumps(drifted))
    try:
        drift = {"provision_fail_on_change": True, "provision_serial": "100%", "provision_max_fail_percentage": 100}
        result, stdout = launch(data_dir, dict(drift, provision_hosts="all"), "--tags plan --check")
        assert result.status == "failed"
        assert sorted(result.stats["failures"]) == ["b1"], result.stats
        assert "b1 drifted: migration_agent: config, service state" in stdout, stdout[-3000:]
        assert task_results(result, SUMMARY_TASK)["b1"]["msg"] == ["would change: migration_agent: config, service state"]
        # The same run without the drift switch only reports it.
        result, stdout = launch(data_dir, {"provision_hosts": "all"}, "--tags plan --check")
        assert result.status == "successful", stdout[-3000:]
    finally:
        (data_dir / "inventory" / "hosts.json").write_text(json.dumps(INVENTORY))


def test_hooks_run_around_the_steps_per_host_and_a_failed_pre_hook_skips_the_post_hook(data_dir, tmp_path):
    # --tags hooks, not check mode (hooks do not run in check mode): only the hook files' tasks and the
    # always-tagged survey and summary tasks run; the roles' includes are untagged and skipped.
    log = tmp_path / "hooks.log"
    pre = tmp_path / "drain.yml"
    post = tmp_path / "undrain.yml"
    pre.write_text(
        "- name: Drain\n  ansible.builtin.shell: echo drain {{ inventory_hostname }} >> %s\n  changed_when: true\n"
        "- name: Refuse to drain b1\n  ansible.builtin.fail:\n    msg: the load balancer refuses to drain b1\n"
        "  when: inventory_hostname == 'b1'\n" % log)
    post.write_text("- name: Undrain\n  ansible.builtin.shell: echo undrain {{ inventory_hostname }} >> %s\n"
                    "  changed_when: true\n" % log)
    result, stdout = launch(data_dir, {"provision_hosts": "all", "provision_serial": "100%",
                                       "provision_max_fail_percentage": 100,
                                       "provision_pre_tasks_file": str(pre), "provision_post_tasks_file": str(post)},
                            "--tags hooks")
    lines = sorted(log.read_text().split("\n")[:-1])
    assert lines == ["drain a1", "drain a2", "drain b1", "undrain a1", "undrain a2"], stdout[-3000:]
    assert result.stats["failures"] == {"b1": 1}
    summaries = task_results(result, SUMMARY_TASK)
    assert "b1" in summaries, stdout[-5000:]
    assert summaries["b1"]["msg"][-1] == "refused or failed at Refuse to drain b1: the load balancer refuses to drain b1"
    assert summaries["a1"]["msg"] == ["changed: nothing"]    # the hooks' own changes are theirs, not provisioning's
