"""The collection as Galaxy users get it: built, installed from the tarball, documented, runnable by FQCN.

Nothing here reads the source tree through a collections path: ANSIBLE_COLLECTIONS_PATH points only
at the temporary path the tarball was installed into.
"""
import json
import tarfile
import xml.etree.ElementTree as ET

import pytest

from tarball_helpers import REPO, BIN, ansible_env, run, lab_guest, lab_inventory, needs_lab_guest

# Plugin directories whose content ansible-doc documents, and the ansible-doc type of each.
DOCUMENTED_PLUGIN_DIRS = {"modules": "module", "filter": "filter", "lookup": "lookup",
                          "callback": "callback", "inventory": "inventory", "test": "test"}


def source_plugins():
    """(ansible-doc type, name) of every plugin in the source tree; discovered, so new ones are covered."""
    found = []
    for dirname, doc_type in DOCUMENTED_PLUGIN_DIRS.items():
        for path in sorted((REPO / "plugins" / dirname).glob("*.py")):
            if path.name != "__init__.py":
                found.append((doc_type, path.stem))
    return found


def source_roles():
    return sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


def tarball_names(tarball):
    with tarfile.open(tarball) as tar:
        return [m.name[2:] if m.name.startswith("./") else m.name for m in tar.getmembers()]


def test_source_tree_has_modules_and_roles():
    # Guards the parametrized tests below against discovering nothing and passing vacuously.
    assert any(doc_type == "module" for doc_type, _name in source_plugins()), "no modules found under plugins/modules"
    assert source_roles(), "no roles found under roles/"


@pytest.mark.parametrize("top", ["molecule", "tests", "bench", "lab", ".cache", ".venv", ".git", ".ci", "build"])
def test_tarball_leaves_out_development_trees(built_tarball, top):
    names = tarball_names(built_tarball)
    leaked = [n for n in names if n == top or n.startswith(top + "/")]
    assert not leaked, "%s holds %s/: %s" % (built_tarball.name, top, leaked[:5])


def test_tarball_leaves_out_caches(built_tarball):
    names = tarball_names(built_tarball)
    caches = [n for n in names
              if "__pycache__" in n.split("/") or n.endswith(".pyc") or ".pytest_cache" in n.split("/")
              or n.endswith(".tar.gz")]
    assert not caches, "%s holds caches or build artifacts: %s" % (built_tarball.name, caches[:10])


@pytest.mark.parametrize("required", ["MANIFEST.json", "FILES.json", "meta/runtime.yml",
                                      "meta/execution-environment.yml", "playbooks/status.yml",
                                      "changelogs/changelog.yaml", "README.md"])
def test_tarball_has_metadata_and_playbooks(built_tarball, required):
    assert required in tarball_names(built_tarball), "%s lacks %s" % (built_tarball.name, required)


def test_tarball_has_every_plugin_and_role(built_tarball):
    names = set(tarball_names(built_tarball))
    missing = ["plugins/%s/%s.py" % (directory, name) for directory, doc_type in DOCUMENTED_PLUGIN_DIRS.items()
               for plugin_type, name in source_plugins() if plugin_type == doc_type
               and "plugins/%s/%s.py" % (directory, name) not in names]
    missing += ["roles/%s/tasks/main.yml" % r for r in source_roles() if "roles/%s/tasks/main.yml" % r not in names]
    assert not missing, "left out of the tarball: %s" % missing


@pytest.fixture(scope="module")
def installed_docs(installed_collection):
    """ansible-doc --json of every plugin, per type, read from the installed copy."""
    docs = {}
    by_type = {}
    for doc_type, name in source_plugins():
        by_type.setdefault(doc_type, []).append("tiering.pmem." + name)
    for doc_type, names in by_type.items():
        proc = run([BIN / "ansible-doc", "-t", doc_type, "--json"] + names,
                   cwd=installed_collection, env=ansible_env(installed_collection))
        docs[doc_type] = (json.loads(proc.stdout), proc.stderr)
    return docs


@pytest.mark.parametrize("doc_type,name", source_plugins())
def test_ansible_doc_renders_installed_plugin(installed_docs, installed_collection, doc_type, name):
    fqcn = "tiering.pmem." + name
    docs, stderr = installed_docs[doc_type]
    assert fqcn in docs, "ansible-doc -t %s gave nothing for %s; stderr:\n%s" % (doc_type, fqcn, stderr)
    doc = docs[fqcn]["doc"]
    assert doc.get("short_description"), "%s has no short_description" % fqcn
    # The documentation was read from the installed copy, not from the source tree.
    assert doc["filename"].startswith(str(installed_collection)), doc["filename"]
    if doc_type == "module":
        assert docs[fqcn].get("examples"), "%s has no EXAMPLES" % fqcn
        assert docs[fqcn].get("return") is not None, "%s has no RETURN" % fqcn


@pytest.mark.parametrize("role", source_roles())
def test_ansible_doc_renders_installed_role(installed_collection, role):
    fqcn = "tiering.pmem." + role
    proc = run([BIN / "ansible-doc", "-t", "role", "--json", fqcn],
               cwd=installed_collection, env=ansible_env(installed_collection))
    docs = json.loads(proc.stdout)
    assert fqcn in docs, "ansible-doc -t role gave nothing for %s (meta/argument_specs.yml?)" % fqcn
    entry_points = docs[fqcn]["entry_points"]
    assert "main" in entry_points, "%s documents no main entry point" % fqcn
    assert entry_points["main"].get("short_description"), "%s main has no short_description" % fqcn
    assert docs[fqcn]["path"].startswith(str(installed_collection)), docs[fqcn]["path"]


@needs_lab_guest()
def test_installed_status_playbook_runs_by_fqcn(installed_collection, tmp_path):
    installed = installed_collection / "ansible_collections/tiering/pmem"
    assert (installed / "playbooks/status.yml").is_file(), \
        "playbooks/status.yml is not in the installed collection (not written yet, or left out by build_ignore)"
    guest = lab_guest()
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(lab_inventory(guest)))
    out = tmp_path / "status"
    out.mkdir()
    env = ansible_env(installed_collection)
    proc = run([BIN / "ansible-playbook", "-i", str(inventory), "tiering.pmem.status",
                "-e", "status_output_dir=%s" % out], cwd=tmp_path, env=env)
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    assert "failed=0" in recap and "unreachable=0" in recap, proc.stdout
    # Read only: safe to schedule hourly.
    assert "changed=0" in recap, recap
    report = json.loads((out / ("%s.json" % guest["name"])).read_text())
    assert report["numa_nodes"], "status report has no NUMA nodes: %s" % report
    assert report["mem_total"] > 0
    # The per-host picture (issue 6, item 5): status.yml writes it next to the JSON report.
    picture = out / ("%s.svg" % guest["name"])
    assert picture.is_file(), "status.yml wrote no %s (memory_layout_svg task missing?)" % picture.name
    svg = ET.fromstring(picture.read_bytes())
    words = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "%s: memory layout" % guest["name"] in words, words
    if guest.get("flavour") == "nvdimm" and any(d["mode"] == "system-ram" for d in report["dax_devices"]):
        assert "node 1 · PMEM" in words, words
