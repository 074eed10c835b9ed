"""Hostile inputs against a lab guest: every case of cases.py must be refused, cleanly, changing nothing.

    hostile.py list                      the cases (id, target, input)
    hostile.py tierd-spec                the tierd config files, as JSON for make_tierd_files.py
    hostile.py run --inventory INV --work DIR [--table FILE] [--only ID,ID|make-test]
    hostile.py report --work DIR [--table FILE]   judge a run's results.json again (no guest)

``run`` writes one playbook (DIR/hostile.yml) with, per case, the module or role task in a
block/rescue, in check mode and then for real, and for tierd configs ``tierd check-config FILE``;
snapshot.sh runs in the guest before the first group and after every group. It runs the playbook
with ansible-playbook (log: DIR/ansible.log) and then checks each case:

- it failed (a module or role task failed; tierd check-config exited 2 with one line on stderr),
- the message matches the case's ``bad`` (names the bad value) and ``valid`` (what is valid) patterns,
- no "Traceback" anywhere in the result, and the message is shorter than MAX_MESSAGE characters,
- in check mode it failed with the same message,

and that the snapshots before and after each group are identical. Exit status 0 only when all hold.
"""

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases as case_list  # noqa: E402

MAX_MESSAGE = 2000
GUEST_DIR = "/opt/hostile"
TIERD_CASES_DIR = GUEST_DIR + "/tierd-cases"
TIERD = GUEST_DIR + "/tierd/bin/tierd"
SNAPSHOT = GUEST_DIR + "/tests/lab/hostile/snapshot.sh"
# The result keys kept per case (the rest, e.g. the invocation with a 100 kB argument, is dropped).
KEEP = ["failed", "changed", "msg", "rc", "stdout", "stderr", "module_stdout", "module_stderr", "exception",
        "exception_type", "argument_errors", "failed_when_result"]
RESULTS = "__hostile_results"


def short(value, limit=70):
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else "%s... (%d characters)" % (text[:limit], len(text))


# ---------------------------------------------------------------- playbook

def record(key, source, extra=None):
    """A set_fact task adding ``source`` (a Jinja expression of a result) under ``key``.

    ``extra``: a Jinja dict expression merged into it.
    """
    picked = "(%s | dict2items | selectattr('key', 'in', %s) | items2dict)" % (source, json.dumps(KEEP))
    if extra:
        picked = "(%s | combine(%s))" % (picked, extra)
    return {"name": "record %s" % key, "ansible.builtin.set_fact": {
        RESULTS: "{{ %s | combine({%s: %s}) }}" % (RESULTS, json.dumps(key), picked)}}


def case_tasks(case, check_mode):
    key = case["id"] + ("@check" if check_mode else "")
    title = "%s (%s)" % (case["id"], "check mode" if check_mode else "real run")
    if case["kind"] == "module":
        task = {"name": title, case["target"]: case["args"], "register": "__hostile_r"}
        ok_record = record(key, "__hostile_r")
    else:
        task = {"name": title, "ansible.builtin.import_role": {"name": case["target"]}, "vars": case["args"]}
        ok_record = record(key, "{}", "{'failed': false, 'msg': '(the role succeeded)'}")
    return {"name": "case " + title, "check_mode": check_mode, "block": [task, ok_record],
            "rescue": [record(key, "ansible_failed_result", "{'failed': true, 'task': ansible_failed_task.name}")]}


def tierd_task(case):
    return [{"name": "case %s (tierd check-config)" % case["id"],
             "ansible.builtin.command": {"argv": [TIERD, "check-config", "%s/%s.json" % (TIERD_CASES_DIR, case["id"])]},
             "register": "__hostile_r", "failed_when": False, "changed_when": False, "check_mode": False},
            record(case["id"], "__hostile_r")]


def snapshot_tasks(name):
    return [{"name": "flush handlers before snapshot %s" % name, "ansible.builtin.meta": "flush_handlers"},
            {"name": "snapshot %s" % name, "ansible.builtin.command": {"argv": ["sh", SNAPSHOT]},
             "register": "__hostile_snap", "changed_when": False, "check_mode": False},
            {"name": "record snapshot %s" % name, "ansible.builtin.set_fact": {
                RESULTS: "{{ %s | combine({%s: __hostile_snap.stdout}) }}" % (RESULTS, json.dumps("snapshot:" + name))}}]


def save_task(path):
    return {"name": "save the results", "ansible.builtin.copy": {
        "content": "{{ %s | to_json }}" % RESULTS, "dest": path, "mode": "0644"},
        "delegate_to": "localhost", "check_mode": False}


def playbook(groups, results_path):
    tasks = snapshot_tasks("0-start")
    for number, (name, cases) in enumerate(groups, 1):
        for case in cases:
            if case["kind"] == "tierd":
                tasks += tierd_task(case)
            else:
                tasks += [case_tasks(case, True), case_tasks(case, False)]
        tasks += snapshot_tasks("%d-after-%s" % (number, name))
        tasks.append(save_task(results_path))
    return [{"name": "hostile inputs", "hosts": "lab", "gather_facts": False,
             "vars": {RESULTS: {}}, "tasks": tasks}]


# ---------------------------------------------------------------- evaluation

def judge(case, result, check_result):
    """(passed, [problems], message) of one case."""
    problems = []
    if result is None:
        return False, ["no result recorded (the playbook stopped before this case)"], ""
    text = json.dumps(result)
    if case["kind"] == "tierd":
        message = (result.get("stderr") or "").strip()
        if result.get("rc") != 2:
            problems.append("exit status %r, not 2 (stdout %s)" % (result.get("rc"), short(result.get("stdout", ""))))
        if "\n" in message:
            problems.append("stderr has %d lines, not one" % (message.count("\n") + 1))
    else:
        message = result.get("msg") or ""
        if not result.get("failed"):
            problems.append("accepted: changed=%r" % result.get("changed"))
        # Ansible 2.19 puts "exception": "(traceback unavailable)" in every failed result; a crash has
        # module_stderr, MODULE FAILURE, or a real traceback (caught below).
        if result.get("module_stderr") or message.startswith("MODULE FAILURE"):
            problems.append("module crashed")
    if "Traceback" in text:
        problems.append("a Traceback in the result")
    if len(message) >= MAX_MESSAGE:
        problems.append("message of %d characters (bound %d)" % (len(message), MAX_MESSAGE))
    for what in ("bad", "valid"):
        if not re.search(case[what], message):
            problems.append("message does not match %s=%r" % (what, case[what]))
    if case["kind"] != "tierd":
        if check_result is None:
            problems.append("check mode: no result recorded")
        else:
            # The same way: failed, and the same checks hold. The text itself may differ where Ansible
            # lists a set (the valid booleans come in a different order in every process).
            check_message = check_result.get("msg") or ""
            if not check_result.get("failed"):
                problems.append("check mode: accepted (changed=%r)" % check_result.get("changed"))
            else:
                if "Traceback" in json.dumps(check_result):
                    problems.append("check mode: a Traceback in the result")
                if len(check_message) >= MAX_MESSAGE:
                    problems.append("check mode: message of %d characters" % len(check_message))
                for what in ("bad", "valid"):
                    if not re.search(case[what], check_message):
                        problems.append("check mode: message does not match %s: %s"
                                        % (what, short(check_message, 200)))
    return not problems, problems, message


def snapshot_diffs(results, groups):
    names = ["0-start"] + ["%d-after-%s" % (n, name) for n, (name, _c) in enumerate(groups, 1)]
    diffs = {}
    for before, after in zip(names, names[1:]):
        old, new = results.get("snapshot:" + before), results.get("snapshot:" + after)
        if old is None or new is None:
            diffs[after] = "(snapshot missing)"
        elif old != new:
            diffs[after] = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                        "before", after, n=1))
    return diffs


def table(rows):
    lines = ["| case | target | bad input | result | message (shortened) |", "|---|---|---|---|---|"]
    for case, passed, problems, message in rows:
        if case["kind"] == "tierd":
            shown_input = short(case["args"].get("json", case["args"].get("text", case["args"])), 90)
            if case["args"].get("mode"):
                shown_input += " (mode %s)" % case["args"]["mode"]
        else:
            shown_input = short(case["args"], 90)
        msg = short(message.replace("\n", " "), 220).replace("|", "\\|")
        target = case["target"].replace("tiering.pmem.", "")
        shown_input = shown_input.replace("|", "\\|").replace("`", "'")
        verdict = "pass" if passed else "**FAIL**: %s" % short("; ".join(problems), 160).replace("|", "\\|")
        lines.append("| %s | %s | `%s` | %s | %s |" % (case["id"], target, shown_input, verdict, msg))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- commands

def selected_groups(only):
    if not only:
        return case_list.GROUPS
    wanted = set(case_list.MAKE_TEST) if only == "make-test" else set(only.split(","))
    groups = [(name, [c for c in cases if c["id"] in wanted]) for name, cases in case_list.GROUPS]
    return [(name, cases) for name, cases in groups if cases]


def cmd_run(args):
    groups = selected_groups(args.only)
    os.makedirs(args.work, exist_ok=True)
    results_path = os.path.join(os.path.abspath(args.work), "results.json")
    if os.path.exists(results_path):
        os.remove(results_path)
    book = os.path.join(args.work, "hostile.yml")
    with open(book, "w") as handle:
        json.dump(playbook(groups, results_path), handle, indent=1)
    with open(args.inventory) as handle:
        inventory = json.load(handle)
    for host in inventory["lab"]["hosts"].values():
        host.setdefault("ansible_python_interpreter", "/usr/bin/python3")
    inventory_path = os.path.join(args.work, "inventory.json")
    with open(inventory_path, "w") as handle:
        json.dump(inventory, handle, indent=1)
    env = dict(os.environ, ANSIBLE_PIPELINING="1", ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_DISPLAY_SKIPPED_HOSTS="False")
    count = sum(len(c) for _n, c in groups)
    print("hostile: %d cases in %d groups, playbook %s" % (count, len(groups), book), flush=True)
    started = time.monotonic()
    with open(os.path.join(args.work, "ansible.log"), "w") as log:
        rc = subprocess.call([args.ansible_playbook, "-i", inventory_path, book], stdout=log, stderr=subprocess.STDOUT,
                             env=env)
    print("hostile: ansible-playbook exited %d after %.0f s (log %s/ansible.log)"
          % (rc, time.monotonic() - started, args.work), flush=True)
    return evaluate(groups, results_path, args.work, args.table, rc)


def evaluate(groups, results_path, work, table_path, rc):
    """Judge every case from results.json, print the verdicts, write verdicts.json (and the table)."""
    try:
        with open(results_path) as handle:
            results = json.load(handle)
    except (OSError, ValueError):
        results = {}
    rows = []
    for _name, cases in groups:
        for case in cases:
            passed, problems, message = judge(case, results.get(case["id"]), results.get(case["id"] + "@check"))
            rows.append((case, passed, problems, message))
            print("%-4s %-22s %s" % ("ok" if passed else "FAIL", case["id"], short(message.replace("\n", " "), 150)))
            for problem in problems:
                print("       - %s" % problem)
    diffs = snapshot_diffs(results, groups)
    for name, diff in sorted(diffs.items()):
        lines = diff.splitlines()
        print("SNAPSHOT CHANGED by group %s (%d diff lines%s):\n%s" % (
            name, len(lines), ", first 200" if len(lines) > 200 else "", "\n".join(lines[:200])))
    failed = [row[0]["id"] for row in rows if not row[1]]
    if table_path:
        with open(table_path, "w") as handle:
            handle.write(table(rows))
    with open(os.path.join(work, "verdicts.json"), "w") as handle:
        json.dump({"failed": failed, "snapshot_changed": sorted(diffs), "ansible_rc": rc,
                   "cases": [{"id": c["id"], "passed": p, "problems": pr, "message": m[:MAX_MESSAGE]}
                             for c, p, pr, m in rows]}, handle, indent=1)
    print("hostile: %d of %d cases passed; snapshots %s; ansible-playbook rc %s"
          % (len(rows) - len(failed), len(rows), "changed by %s" % ", ".join(sorted(diffs)) if diffs else "identical",
             rc))
    # rc 2 is "some host failed", which a case's rescue prevents; anything else means the run broke.
    return 0 if not failed and not diffs and rc == 0 else 1


def cmd_report(args):
    """The verdicts and table again from a run's results.json (no guest needed)."""
    return evaluate(selected_groups(args.only), os.path.join(args.work, "results.json"), args.work, args.table,
                    "not run")


def cmd_list(_args):
    for name, cases in case_list.GROUPS:
        for case in cases:
            print("%-22s %-16s %-34s %s" % (case["id"], name, case["target"], short(case["args"], 80)))
    print("%d cases" % case_list.check())
    return 0


def cmd_tierd_spec(_args):
    spec = dict((c["id"], c["args"]) for c in case_list.all_cases() if c["kind"] == "tierd")
    print(json.dumps(spec))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="judge a run's results.json again, write the table")
    p.add_argument("--work", required=True)
    p.add_argument("--table")
    p.add_argument("--only")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("run")
    p.add_argument("--inventory", required=True, help="labctl.py inventory NAME output")
    p.add_argument("--work", required=True, help="directory for the playbook, log and results")
    p.add_argument("--table", help="write the Markdown table of the cases here")
    p.add_argument("--only", help="comma-separated case ids")
    p.add_argument("--ansible-playbook", default="ansible-playbook")
    p.set_defaults(func=cmd_run)
    sub.add_parser("list").set_defaults(func=cmd_list)
    sub.add_parser("tierd-spec").set_defaults(func=cmd_tierd_spec)
    args = parser.parse_args(argv)
    case_list.check()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
