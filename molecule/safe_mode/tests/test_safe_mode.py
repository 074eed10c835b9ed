"""After the refusals: the last layout (a process holding 256 MiB on the pmem node) is intact."""
import json


def test_holder_process_alive_and_its_memory_intact(host):
    assert host.run("kill -0 $(cat /root/holder.pid)").rc == 0
    assert host.file("/root/holder.status").content_string.strip() == "ok"


def test_pmem_node_still_online(host):
    devices = json.loads(host.check_output("daxctl list -d dax0.0"))
    device = devices[0] if isinstance(devices, list) else devices
    assert device["mode"] == "system-ram"
    assert device["online_memblocks"] == device["total_memblocks"] > 0


def test_namespace_recorded_as_converted_by_dax_kmem(host):
    owned = json.loads(host.file("/etc/tiering-pmem/owned.json").content_string)["namespaces"]
    assert [(e["dev"], e["how"]) for e in owned] == [("namespace0.0", "converted")]
