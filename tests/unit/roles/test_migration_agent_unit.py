"""migration_agent's systemd unit starts after the collection's dax-kmem boot units, and the role's
names for them agree with the module that writes them (plugins/module_utils/_pmem_persist.py).

The unit template is rendered by ansible-playbook on localhost with the role's own defaults and
vars, into tmp_path; the dax-kmem config directory is a directory under tmp_path.
"""
import os
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "migration_agent"
BIN = pathlib.Path(sys.executable).parent
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))


def _pmem_persist_names():
    text = (REPO / "plugins" / "module_utils" / "_pmem_persist.py").read_text()
    found = {}
    for line in text.splitlines():
        for name in ("UNIT_NAME", "CONFIG_DIR"):
            if line.startswith(name + " = "):
                found[name] = line.split(" = ", 1)[1].strip().strip('"')
    return found


def test_role_names_the_dax_kmem_units_as_the_module_writes_them():
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    names = _pmem_persist_names()
    assert names["UNIT_NAME"] == role_vars["__migration_agent_dax_kmem_unit_prefix"] + ".service"
    assert names["CONFIG_DIR"] == role_vars["__migration_agent_dax_kmem_config_dir"]
    assert "Before=tierd.service" in (REPO / "plugins" / "module_utils" / "_pmem_persist.py").read_text()


def _render_unit(tmp_path, devices):
    configs = tmp_path / "dax-kmem"
    configs.mkdir()
    for device in devices:
        (configs / ("%s.conf" % device)).write_text("ONLINE=1\n")
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
             "tasks": [
                 {"name": "Find", "ansible.builtin.find": {"paths": str(configs), "patterns": "*.conf",
                                                           "file_type": "file"},
                  "register": "__migration_agent_dax_kmem_configs"},
                 {"name": "Render", "ansible.builtin.template": {"src": str(ROLE / "templates" / "tierd.service.j2"),
                                                                 "dest": str(tmp_path / "tierd.service")}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    env.pop("ANSIBLE_CONFIG", None)
    (tmp_path / "inventory").write_text("localhost ansible_python_interpreter=%s\n" % sys.executable)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory"),
                           "-e", "role_path=%s" % ROLE, str(tmp_path / "play.yml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (tmp_path / "tierd.service").read_text()


def test_unit_waits_for_each_configured_dax_device(tmp_path):
    unit = _render_unit(tmp_path, ["dax1.0", "dax0.0"])
    units = "tiering-pmem-dax-kmem@dax0.0.service tiering-pmem-dax-kmem@dax1.0.service"
    assert "\nWants=%s\n" % units in unit
    assert "\nAfter=%s\n" % units in unit
    assert "Requires=" not in unit  # a failed or missing dax unit must not keep tierd from starting


def test_unit_without_dax_devices_has_no_dax_ordering(tmp_path):
    unit = _render_unit(tmp_path, [])
    assert "dax-kmem" not in unit and "Wants=" not in unit
    assert "\nAfter=local-fs.target\n" in unit
