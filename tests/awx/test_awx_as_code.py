"""playbooks/awx/configure.yml checked against what awx.awx and the collection really accept.

No AWX server runs here, so the awx.awx tasks are not executed; instead every task argument is
checked against the module's documented options and choices (ansible-doc of awx.awx, put in
.cache/collections by tests/awx/get-awx-collection.sh), the surveys against AWX's survey rules,
and every playbook and survey variable against the collection.
"""
import json
import os
import re
import subprocess

import pytest
import yaml

from tarball_helpers import REPO, BIN, ansible_env, run

CONFIGURE = REPO / "playbooks/awx/configure.yml"
COLLECTIONS = REPO / ".cache/collections"
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


@pytest.fixture(scope="module")
def play():
    (play,) = yaml.safe_load(CONFIGURE.read_text())
    return play


@pytest.fixture(scope="module")
def awx_docs():
    subprocess.run([str(REPO / "tests/awx/get-awx-collection.sh"), str(COLLECTIONS)], check=True,
                   env=dict(os.environ, VENV=str(BIN.parent)))
    proc = run([BIN / "ansible-doc", "--json", "awx.awx.project", "awx.awx.job_template", "awx.awx.schedule"],
               cwd=REPO / "playbooks", env=ansible_env(COLLECTIONS))
    return json.loads(proc.stdout)


def awx_tasks(play):
    return [(task["name"], module, args) for task in play["tasks"]
            for module, args in task.items() if module.startswith("awx.awx.")]


def test_configure_has_the_promised_objects(play):
    modules = [(module, args.get("job_type"), args.get("survey_enabled")) for _name, module, args in awx_tasks(play)]
    assert ("awx.awx.job_template", "run", True) in modules, "no job template with a survey"
    # The drift check asks nothing: each host is checked against its own inventory.
    assert ("awx.awx.job_template", "check", None) in modules, "no check-mode job template without a survey"
    assert sum(1 for module, _type, _survey in modules if module == "awx.awx.schedule") >= 2


def test_every_awx_argument_is_an_option_of_the_module(play, awx_docs):
    problems = []
    for name, module, args in awx_tasks(play):
        options = awx_docs[module]["doc"]["options"]
        known = set(options)
        for opt in options.values():
            known.update(opt.get("aliases", []))
        for key, value in args.items():
            if key not in known:
                problems.append("%s: %s has no option %r" % (name, module, key))
                continue
            choices = options.get(key, {}).get("choices")
            if choices and isinstance(value, str) and "{{" not in value and value not in choices:
                problems.append("%s: %s=%r is not one of %s" % (name, key, value, choices))
    assert not problems, "\n".join(problems)


def test_job_templates_name_playbooks_that_exist(play):
    for name, module, args in awx_tasks(play):
        if module == "awx.awx.job_template":
            assert (REPO / args["playbook"]).is_file(), "%s: %s does not exist" % (name, args["playbook"])


def test_schedules_point_at_templates_defined_here(play):
    templates = {args["name"] for _name, module, args in awx_tasks(play) if module == "awx.awx.job_template"}
    template_names = dict(play["vars"]["awx_templates"])
    for name, module, args in awx_tasks(play):
        if module == "awx.awx.schedule":
            target = args["unified_job_template"]
            key = re.fullmatch(r"\{\{ awx_templates\.(\w+) \}\}", target).group(1)
            assert "{{ awx_templates.%s }}" % key in templates, "%s schedules an undefined template" % name
            assert template_names[key]


@pytest.mark.parametrize("var", ["awx_status_rrule", "awx_drift_rrule"])
def test_rrules_have_the_form_awx_stores(play, var):
    rule = play["vars"][var]
    assert re.fullmatch(r"DTSTART:\d{8}T\d{6}Z RRULE:FREQ=(HOURLY|DAILY|WEEKLY);INTERVAL=\d+(;[A-Z]+=[\w,]+)*", rule), rule


def load_yaml(path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AssertionError("%s is not valid YAML: %s" % (path.relative_to(REPO), exc)) from exc


def provision_play():
    (play,) = load_yaml(REPO / "playbooks/provision.yml")
    return play


def known_variables():
    """Variables the collection's playbooks and roles read: play switches, survey answers, role argument specs."""
    names = set(provision_play()["vars"]["__provision_survey_choices"])
    for playbook in (REPO / "playbooks").glob("*.yml"):
        # Public switches are read as `name | default(...)` (play vars would override the inventory).
        names.update(re.findall(r"\b([a-z]\w*) \| default\(", playbook.read_text()))
        for p in load_yaml(playbook) or []:
            names.update(k for k in (p.get("vars") or {}) if not k.startswith("_"))
            names.update(re.findall(r"(\w+_hosts) \| default", str(p.get("hosts", ""))))
    for spec in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        for entry in load_yaml(spec)["argument_specs"].values():
            names.update((entry.get("options") or {}).keys())
    return names


def test_survey_follows_awx_rules_and_drives_real_variables(play):
    survey = play["vars"]["awx_provision_survey"]
    assert survey["name"] and survey["description"]
    known = known_variables()
    seen = set()
    for q in survey["spec"]:
        where = q["variable"]
        assert q["type"] in SURVEY_TYPES, "%s: type %r" % (where, q["type"])
        assert q["question_name"], where
        assert where not in seen, "%s asked twice" % where
        seen.add(where)
        assert where in known, "%s is no variable of the collection's playbooks or roles" % where
        if q["type"] == "multiplechoice":
            assert all(isinstance(c, str) for c in q["choices"]), "%s: AWX choices are strings" % where
            assert q["default"] in q["choices"] or (q["default"] == "" and not q["required"]), where
        if q["type"] == "integer":
            assert q["min"] <= q["default"] <= q["max"], where
        # Scalar answers only: AWX cannot ask for lists or mappings.
        assert q["type"] != "multiselect", where
    for forbidden in ("system_ram_safe_mode", "teardown_force", "emulated_pmem_reboot_ok"):
        assert forbidden not in seen, "%s is a safety switch and must not be on a launch form" % forbidden


def inventory_variables():
    """What the inventory may set per host or group: the role options and the playbooks' host switches."""
    names = {"provision_emulated_pmem", "provision_migration_agent"}
    for spec in (REPO / "roles").glob("*/meta/argument_specs.yml"):
        for entry in load_yaml(spec)["argument_specs"].values():
            names.update((entry.get("options") or {}).keys())
    return names


def test_survey_never_sets_what_the_inventory_decides(play):
    # An answer arrives as an extra var, which beats host and group vars: a question about anything the
    # inventory may set must go through a survey_* variable that provision.yml applies only when answered.
    survey = play["vars"]["awx_provision_survey"]
    choices = provision_play()["vars"]["__provision_survey_choices"]
    for q in survey["spec"]:
        where = q["variable"]
        assert where not in inventory_variables(), "%s is set by the survey as an extra var: ask for survey_%s" % (where, where)
        if where.startswith("survey_"):
            assert where[len("survey_"):] in inventory_variables(), where
            assert q["required"] is False and q["default"] == "", "%s: an empty answer must leave the inventory's value" % where
            assert sorted(q["choices"]) == sorted(choices[where]), "%s: the survey and provision.yml disagree" % where
    assert {q["variable"] for q in survey["spec"] if q["variable"].startswith("survey_")} == set(choices)


def test_drift_check_takes_the_inventory_and_fails_on_change(play):
    (schedule,) = [args for _name, module, args in awx_tasks(play)
                   if module == "awx.awx.schedule" and "drift" in args["unified_job_template"]]
    assert not set(schedule.get("extra_data") or {}) & (inventory_variables() | set(provision_play()["vars"]["__provision_survey_choices"]))
    (template,) = [args for _name, module, args in awx_tasks(play)
                   if module == "awx.awx.job_template" and args.get("job_type") == "check"]
    assert not template.get("survey_enabled"), "the drift check must not ask (its answers would override the inventory)"
    assert template["extra_vars"] == "{{ awx_drift_extra_vars }}"
    extra = play["vars"]["awx_drift_extra_vars"]
    assert extra["provision_fail_on_change"] is True
    assert not set(extra) & inventory_variables(), extra
