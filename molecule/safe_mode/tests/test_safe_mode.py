"""After the refused provisioning, the filesystem on the pmem and its file are untouched."""
import json


def test_namespace_still_fsdax(host):
    namespaces = json.loads(host.check_output("ndctl list -N"))
    namespaces = namespaces if isinstance(namespaces, list) else [namespaces]
    assert [(n["dev"], n["mode"]) for n in namespaces] == [("namespace0.0", "fsdax")]


def test_still_mounted(host):
    assert host.mount_point("/mnt/pmem").exists
    assert host.mount_point("/mnt/pmem").device == "/dev/pmem0"


def test_file_unchanged(host):
    assert host.run("sha256sum -c /root/precious.sha256").rc == 0


def test_no_system_ram_was_added(host):
    assert json.loads(host.check_output("daxctl list") or "[]") == []
