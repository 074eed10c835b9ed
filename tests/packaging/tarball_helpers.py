"""Helpers for the tests that use the collection as Galaxy users get it: built, then installed from its tarball.

Shared by tests/packaging and tests/awx (whose conftest puts this directory on sys.path)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# The venv that runs pytest also holds ansible-core; its bin is where ansible-galaxy & co. live.
BIN = pathlib.Path(sys.executable).parent


def ansible_env(collections_path):
    """Environment in which only the installed copy of tiering.pmem can be found."""
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path)
    env["PATH"] = "%s:%s" % (BIN, env.get("PATH", ""))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    # Commands run in a temporary directory, so no ansible.cfg of the source tree applies.
    env.pop("ANSIBLE_CONFIG", None)
    return env


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d)\n--- stdout ---\n%s\n--- stderr ---\n%s"
                             % (" ".join(map(str, argv)), proc.returncode, proc.stdout, proc.stderr))
    return proc


def build_tarball(out):
    """Builds the collection from the working tree into OUT; returns the tarball."""
    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(out), str(REPO)],
        cwd=out, env=ansible_env(out / "none"))
    tarballs = sorted(out.glob("tiering-pmem-*.tar.gz"))
    assert len(tarballs) == 1, "expected one tarball in %s, got %s" % (out, tarballs)
    return tarballs[0]


def install_tarball(built_tarball, collections):
    """Installs the tarball (not the source tree) into a fresh collections path; returns that path."""
    run([BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(built_tarball)],
        cwd=collections, env=ansible_env(collections))
    root = collections / "ansible_collections" / "tiering" / "pmem"
    assert (root / "MANIFEST.json").is_file(), "install left no MANIFEST.json in %s" % root
    return collections


def lab_guest():
    """The guest described by LAB_GUEST_JSON (the line `labctl.py up` prints), or None."""
    raw = os.environ.get("LAB_GUEST_JSON", "").strip()
    if not raw:
        return None
    guest = json.loads(raw)
    missing = [k for k in ("name", "address", "port", "user", "identity_file") if k not in guest]
    if missing:
        raise ValueError("LAB_GUEST_JSON lacks %s: %r" % (", ".join(missing), raw))
    return guest


def lab_inventory(guest):
    """Inventory (the shape `labctl.py inventory` prints) for the one guest."""
    return {"lab": {"hosts": {guest["name"]: {
        "ansible_host": guest["address"],
        "ansible_port": guest["port"],
        "ansible_user": guest["user"],
        "ansible_ssh_private_key_file": guest["identity_file"],
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    }}}}


def needs_lab_guest():
    return pytest.mark.skipif(
        not os.environ.get("LAB_GUEST_JSON"),
        reason="needs a lab guest: set LAB_GUEST_JSON to the JSON line "
               "`python3 lab/labctl.py up NAME --flavour nvdimm` prints")
