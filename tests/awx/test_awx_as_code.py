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
    assert ("awx.awx.job_template", "check", True) in modules, "no check-mode job template"
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


def known_variables():
    """Variables the collection's playbooks and roles read: play switches and role argument specs."""
    names = set()
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
            assert q["default"] in q["choices"], where
        if q["type"] == "integer":
            assert q["min"] <= q["default"] <= q["max"], where
        # Scalar answers only: AWX cannot ask for lists or mappings.
        assert q["type"] != "multiselect", where
    for forbidden in ("system_ram_safe_mode", "teardown_force", "emulated_pmem_reboot_ok"):
        assert forbidden not in seen, "%s is a safety switch and must not be on a launch form" % forbidden


def test_scheduled_drift_check_answers_every_required_question(play):
    survey = play["vars"]["awx_provision_survey"]
    (drift,) = [args for _name, module, args in awx_tasks(play)
                if module == "awx.awx.schedule" and "drift" in args["unified_job_template"]]
    required = {q["variable"] for q in survey["spec"] if q.get("required")}
    assert required <= set(drift["extra_data"]), required - set(drift["extra_data"])
