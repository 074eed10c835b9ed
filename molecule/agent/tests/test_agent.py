"""Verify of molecule/agent: the unit as the role rendered it, and tierd doing its job."""

import json
import re
import shlex
import time


def test_service_running_and_enabled(host):
    service = host.service("tierd.service")
    assert service.is_running
    assert service.is_enabled


def test_unit_is_hardened_with_only_the_capability_damon_needs(host):
    props = host.check_output(
        "systemctl show tierd.service -p CapabilityBoundingSet -p NoNewPrivileges -p ProtectSystem "
        "-p MemoryMax -p Restart -p PrivateNetwork")
    assert "CapabilityBoundingSet=cap_sys_ptrace" in props
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "MemoryMax=268435456" in props
    assert "Restart=on-failure" in props
    assert "PrivateNetwork=yes" in props
    unit = host.file("/etc/systemd/system/tierd.service").content_string
    assert unit.startswith("#")  # ansible_managed header


def test_config_is_valid_and_names_the_workloads(host):
    out = host.check_output("/usr/local/sbin/tierd check-config /etc/tierd/config.json")
    assert "ok (2 workloads, 1 with a policy, backend damon)" in out
    config = json.loads(host.file("/etc/tierd/config.json").content_string)
    assert config["workloads"][0]["policy"]["pmem_max_percent"] == 30


PYCS_OF_EVERY_MODULE = r"""
import importlib.util, json, os, sys
package = sys.argv[1]
report = {}
for name in sorted(os.listdir(package)):
    if not name.endswith(".py"):
        continue
    source = os.path.join(package, name)
    pyc = importlib.util.cache_from_source(source)
    if not os.path.exists(pyc):
        report[name] = "missing"
        continue
    with open(pyc, "rb") as handle:
        header = handle.read(16)
    with open(source, "rb") as handle:
        source_hash = importlib.util.source_hash(handle.read())
    flags = int.from_bytes(header[4:8], "little")
    report[name] = {"magic_ok": header[:4] == importlib.util.MAGIC_NUMBER, "checked_hash": flags == 0b11,
                    "hash_ok": header[8:16] == source_hash, "mtime_ns": os.stat(pyc).st_mtime_ns}
print(json.dumps(report))
"""


def _tierd_pycs(host):
    command = "python3 -c %s /usr/local/lib/tierd/tierd" % shlex.quote(PYCS_OF_EVERY_MODULE)
    return json.loads(host.check_output(command))


def test_package_is_byte_compiled_so_the_hardened_unit_does_not_compile_at_every_start(host):
    """The unit cannot write bytecode (ProtectSystem=strict): the role compiles it, hash-checked,
    for the host's own Python, and Python takes those pycs (a run as root does not rewrite them)."""
    before = _tierd_pycs(host)
    assert len(before) > 10, before
    for name, pyc in before.items():
        assert pyc != "missing", name
        assert pyc["magic_ok"] and pyc["checked_hash"] and pyc["hash_ok"], (name, pyc)
    host.check_output("/usr/local/sbin/tierd check-config /etc/tierd/config.json")
    after = _tierd_pycs(host)
    assert {n: p["mtime_ns"] for n, p in after.items()} == {n: p["mtime_ns"] for n, p in before.items()}


def test_quota_is_enforced_and_reported(host):
    deadline = time.time() + 240
    while True:
        placement = json.loads(host.check_output("python3 /usr/local/lib/placement.py /run/quota.json 0 1"))
        if placement["on_pmem"] <= int(placement["pages"] * 0.30) + 1024 or time.time() > deadline:
            break
        time.sleep(5)
    assert placement["on_pmem"] <= int(placement["pages"] * 0.30) + 1024, placement
    status = host.check_output("/usr/local/sbin/tierd status -c /etc/tierd/config.json")
    assert "backend damon" in status and "quota" in status and "sshd: no policy, left alone" in status
    metrics = host.file("/var/lib/prometheus/node-exporter/tierd.prom").content_string
    assert 'tierd_workload_pmem_limit_pages{workload="quota"}' in metrics


def test_kill_9_is_restarted_by_systemd(host):
    before = host.check_output("systemctl show -p MainPID --value tierd.service")
    host.check_output("kill -9 %s" % before)
    deadline = time.time() + 60
    after = before
    while time.time() < deadline and after in (before, "0"):
        time.sleep(2)
        after = host.check_output("systemctl show -p MainPID --value tierd.service")
    assert after not in (before, "0")
    assert int(host.check_output("systemctl show -p NRestarts --value tierd.service")) >= 1


def test_systemd_analyze_security_exposure(host):
    """Record systemd's exposure score of the unit (the role README quotes it)."""
    result = host.run("systemd-analyze security --no-pager tierd.service")
    if result.rc != 0:  # no D-Bus in the lab image: analyse the unit file offline
        result = host.run("systemd-analyze security --offline=true --no-pager /etc/systemd/system/tierd.service")
    out = result.stdout
    with open("/tmp/tierd-systemd-analyze-security.txt", "w") as handle:
        handle.write(out + result.stderr)
    assert "Overall exposure level for tierd.service" in out
    score = float(out.split("Overall exposure level for tierd.service:")[1].split()[0])
    assert score < 5.0, out[-400:]


def _now(host):
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


def _journal_since(host, since):
    """tierd's journal since ``since`` (None: since this boot)."""
    window = "-b" if since is None else "--since '%s'" % since
    return host.check_output("journalctl -u tierd.service %s --no-pager -o cat" % window)


def _wait_for_line(host, since, event, seconds=120):
    """tierd's journal since ``since`` (None: this boot) once it holds ``event=EVENT`` (the journal so
    far when it never does)."""
    deadline = time.time() + seconds
    logged = _journal_since(host, since)
    while time.time() < deadline and not re.search(r"event=%s(\s|$)" % event, logged, re.M):
        time.sleep(3)
        logged = _journal_since(host, since)
    return logged


def _fields(logged, event):
    """key=value fields of tierd's last ``event`` line (unquoted values only: numbers and names)."""
    lines = [line for line in logged.splitlines() if "event=%s" % event in line.split()]
    return dict(word.split("=", 1) for word in lines[-1].split() if "=" in word) if lines else {}


def _settled_pid(host):
    """tierd's MainPID once systemd's (re)start has settled: active, the same MainPID twice 3 s apart."""
    deadline, pid, previous = time.time() + 90, "", None
    while time.time() < deadline:
        state = host.run("systemctl is-active tierd.service").stdout.strip()
        pid = host.check_output("systemctl show -p MainPID --value tierd.service")
        if state == "active" and pid not in ("", "0") and pid == previous:
            break
        previous = pid
        time.sleep(3)
    journal = host.run("journalctl -u tierd.service -n 30 --no-pager -o cat").stdout
    assert host.service("tierd.service").is_running, "tierd is not running:\n" + journal
    return pid


def _reload_with(host, writer, reason):
    """Replace the config with a bad one, reload: tierd must log the rejection and keep running."""
    config = "/etc/tierd/config.json"
    # The test before kills tierd with -9: the reload must meet a running tierd, not one still starting.
    pid = _settled_pid(host)
    since = _now(host)
    host.check_output("cp -p %s /root/config.good && %s" % (config, writer))
    try:
        host.check_output("systemctl reload tierd.service")
        logged = _wait_for_line(host, since, "reload_rejected")
        assert "reload_rejected" in logged and reason in logged, logged[-2000:]
        assert "Traceback" not in logged
        assert host.check_output("systemctl show -p MainPID --value tierd.service") == pid
        assert host.service("tierd.service").is_running
    finally:
        host.check_output("cp -p /root/config.good %s && chmod 0644 %s" % (config, config))


def test_reload_with_deeply_nested_json_keeps_the_running_config(host):
    _reload_with(host, "python3 -c \"print('[' * 100000 + ']' * 100000)\" > /etc/tierd/config.json",
                 "nest")


def test_reload_with_a_config_others_can_write_keeps_the_running_config(host):
    _reload_with(host, "chmod 0666 /etc/tierd/config.json", "0666")


def test_check_config_on_a_50_mb_file_says_so_in_one_line(host):
    host.check_output("python3 -c \"print('[' + ','.join(['1'] * 25000000) + ']')\" > /root/huge.json")
    result = host.run("/usr/local/sbin/tierd check-config /root/huge.json")
    host.check_output("rm -f /root/huge.json")
    assert result.rc == 2
    assert len(result.stderr) < 500 and "Traceback" not in result.stderr and result.stdout == ""
    assert "MiB" in result.stderr or "bytes" in result.stderr, result.stderr


def _pmem_boot_units(host):
    """The collection's dax-kmem boot units tierd's unit is ordered after."""
    after = host.check_output("systemctl show -p After --value tierd.service").split()
    return [unit for unit in after if unit.startswith("tiering-pmem-dax-kmem@")]


def test_unit_is_ordered_after_the_collections_pmem_boot_unit(host):
    wants = host.check_output("systemctl show -p Wants --value tierd.service").split()
    pmem_units = _pmem_boot_units(host)
    assert pmem_units, host.check_output("systemctl show -p After --value tierd.service")
    assert set(pmem_units) <= set(wants)
    for unit in pmem_units:
        assert host.service(unit).is_enabled


def test_restart_restores_the_heat_of_the_running_workload(host):
    _settled_pid(host)
    since = _now(host)
    host.check_output("systemctl restart tierd.service")
    logged = _wait_for_line(host, since, "heat_restored")
    restored = _fields(logged, "heat_restored")
    assert "event=stop" in logged and "heat_not_restored" not in logged, logged[-2000:]
    # sshd's PIDs come and go with each test's connection; the workload's stays and gets its heat back.
    assert int(restored.get("pids", 0)) >= 1, logged[-2000:]
    placement = json.loads(host.check_output("python3 /usr/local/lib/placement.py /run/quota.json 0 1"))
    assert placement["on_pmem"] <= int(placement["pages"] * 0.30) + 1024, placement


def _pmem_node_memory(host):
    return int(host.check_output("awk '/MemTotal/ {print $4}' /sys/devices/system/node/node1/meminfo"))


def test_pmem_node_that_comes_late_is_waited_for(host):
    """tierd started while the pmem is offline keeps running, says it waits, and uses the node once
    it is online (a dax device onlined late in boot, a CXL region created later)."""
    host.check_output("systemctl stop tierd.service")
    host.run("pkill -f '[w]orkload\\.py'")
    deadline = time.time() + 120
    while _pmem_node_memory(host) > 0 and time.time() < deadline:
        host.run("daxctl offline-memory dax0.0")
        time.sleep(3)
    assert _pmem_node_memory(host) == 0, host.run("daxctl list -M").stdout
    try:
        since = _now(host)
        host.check_output("systemctl start tierd.service")
        logged = _wait_for_line(host, since, "nodes_missing", 60)
        assert "event=nodes_missing" in logged, logged[-2000:]
        pid = _settled_pid(host)
        time.sleep(8)  # a few intervals of 3 s: still waiting, not failed
        assert host.check_output("systemctl show -p MainPID --value tierd.service") == pid
        assert "waiting for the PMEM node" in host.check_output("/usr/local/sbin/tierd status -c /etc/tierd/config.json")
    finally:
        host.check_output("daxctl online-memory dax0.0 --movable")
    logged = _wait_for_line(host, since, "nodes_found", 60)
    assert _fields(logged, "nodes_found").get("pmem_nodes") == "1", logged[-2000:]
    assert host.check_output("systemctl show -p MainPID --value tierd.service") == pid
    assert "Traceback" not in logged


def _boot_id(host):
    return host.check_output("cat /proc/sys/kernel/random/boot_id")


def _monotonic(host, unit, prop):
    return int(host.check_output("systemctl show -p %s --value %s" % (prop, unit)))


def test_after_a_reboot_tierd_starts_once_the_pmem_is_online(host):
    before = _boot_id(host)
    host.run("systemd-run --on-active=2 systemctl reboot")
    deadline, after = time.time() + 600, before
    while after == before and time.time() < deadline:
        time.sleep(10)
        try:
            after = _boot_id(host)
        except Exception:  # noqa: BLE001 - ssh refuses while the guest reboots
            continue
    assert after != before, "the guest did not come back within 10 min"
    host.run("systemctl is-system-running --wait")
    pmem_units = _pmem_boot_units(host)
    assert _pmem_node_memory(host) > 0
    assert host.service("tierd.service").is_running
    started = _monotonic(host, "tierd.service", "ExecMainStartTimestampMonotonic")
    for unit in pmem_units:
        assert 0 < _monotonic(host, unit, "ActiveEnterTimestampMonotonic") <= started, unit
    # systemd says "Started" before tierd's own start line is out (Python starting under TCG): wait for it.
    logged = _wait_for_line(host, None, "start")
    start = _fields(logged, "start")
    assert start.get("pmem_nodes") == "1" and start.get("nodes_from") != "waiting", logged[-2000:]
    assert "event=nodes_missing" not in logged, logged[-2000:]
