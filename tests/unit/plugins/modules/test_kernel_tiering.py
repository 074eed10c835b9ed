"""kernel_tiering over knob values captured from trixie (6.12) and bookworm (6.1) guests."""

import os

import pytest

from ansible_collections.tiering.pmem.plugins.modules import kernel_tiering

SYSCTL = "etc/sysctl.d/90-tiering-pmem.conf"
TMPFILES = "etc/tmpfiles.d/tiering-pmem.conf"
NUMA_BALANCING = "/proc/sys/kernel/numa_balancing"
RATE_LIMIT = "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"
DEMOTION = "/sys/kernel/mm/numa/demotion_enabled"
ALL_THREE = {"demotion_enabled": True, "numa_balancing": 2, "promote_rate_limit_mbps": 1024}


def read_raw(host, path):
    with open(host.path("/" + path)) as handle:
        return handle.read()


@pytest.fixture(params=["trixie-grub-fresh", "bookworm-legacy-reserved"])
def host(request, fake_host):
    return fake_host(request.param)


def test_sets_live_values_and_persists_them(host, run_module):
    result = run_module(kernel_tiering, dict(ALL_THREE), host)
    assert not result.failed, result.msg
    assert result.data["actions"] == [
        "set demotion_enabled false -> true",
        "set kernel.numa_balancing 0 -> 2",
        "set kernel.numa_balancing_promote_rate_limit_MBps 65536 -> 1024",
        "write /" + SYSCTL,
        "write /" + TMPFILES,
        "write /etc/tiering-pmem/kernel-tiering-before.json",
    ]
    assert result.data["before"] == {"demotion_enabled": False, "numa_balancing": 0, "promote_rate_limit_mbps": 65536}
    assert result.data["after"] == ALL_THREE
    assert result.data["kernel_release"] == host.read("/proc/sys/kernel/osrelease")
    assert (host.read(DEMOTION), host.read(NUMA_BALANCING), host.read(RATE_LIMIT)) == ("true", "2", "1024")
    sysctl = read_raw(host, SYSCTL)
    assert "kernel.numa_balancing = 2\n" in sysctl
    assert "kernel.numa_balancing_promote_rate_limit_MBps = 1024\n" in sysctl
    assert "w /sys/kernel/mm/numa/demotion_enabled - - - - true\n" in read_raw(host, TMPFILES)
    assert host.calls == []


def test_second_run_changes_nothing(host, run_module):
    run_module(kernel_tiering, dict(ALL_THREE), host)
    host.mark_clean()
    again = run_module(kernel_tiering, dict(ALL_THREE), host)
    assert again.data["changed"] is False and again.data["actions"] == []
    assert host.changed_files() == {}


def test_check_mode_changes_nothing_and_matches_a_real_run(host, fake_host, run_module):
    checked = run_module(kernel_tiering, dict(ALL_THREE), host, check_mode=True, diff=True)
    assert host.changed_files() == {}
    other = fake_host(host.fixture)
    real = run_module(kernel_tiering, dict(ALL_THREE), other, diff=True)
    assert checked.data == real.data


def test_diff_shows_live_values_and_files(host, run_module):
    result = run_module(kernel_tiering, {"numa_balancing": 2}, host, check_mode=True, diff=True)
    live, sysctl = result.data["diff"]
    assert live["before"] == "kernel.numa_balancing = 0\n"
    assert live["after"] == "kernel.numa_balancing = 2\n"
    assert sysctl["before_header"] == "/" + SYSCTL and sysctl["before"] == ""
    assert sysctl["after"].endswith("kernel.numa_balancing = 2\n")


def test_persist_false_touches_only_the_live_value(host, run_module):
    result = run_module(kernel_tiering, {"demotion_enabled": True, "persist": False}, host)
    assert result.data["actions"] == ["set demotion_enabled false -> true"]
    assert list(host.changed_files()) == [DEMOTION.lstrip("/")]


def test_live_value_already_right_but_not_persisted(host, run_module):
    result = run_module(kernel_tiering, {"numa_balancing": 0}, host)
    assert result.data["actions"] == ["write /" + SYSCTL]
    assert list(host.changed_files()) == [SYSCTL]


def test_other_entries_of_our_files_are_kept(host, run_module):
    host.write("/" + SYSCTL, "kernel.numa_balancing_promote_rate_limit_MBps = 512\n")
    host.mark_clean()
    run_module(kernel_tiering, {"numa_balancing": 1}, host)
    sysctl = read_raw(host, SYSCTL)
    assert "kernel.numa_balancing_promote_rate_limit_MBps = 512\n" in sysctl
    assert "kernel.numa_balancing = 1\n" in sysctl


def test_backup_of_a_changed_file(host, run_module):
    host.write("/" + SYSCTL, "kernel.numa_balancing = 1\n")
    result = run_module(kernel_tiering, {"numa_balancing": 2, "backup": True}, host)
    (backup,) = result.data["backup_files"]
    with open(backup) as handle:
        assert handle.read() == "kernel.numa_balancing = 1\n"


def test_numa_balancing_3_is_accepted_as_both_bits(host, run_module):
    result = run_module(kernel_tiering, {"numa_balancing": 3, "persist": False}, host)
    assert result.data["actions"] == ["set kernel.numa_balancing 0 -> 3"]
    assert host.read(NUMA_BALANCING) == "3"


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, message", [
    ({"numa_balancing": 7}, "value of numa_balancing must be one of: 0, 1, 2, 3, got: 7"),
    ({"numa_balancing": 4}, "value of numa_balancing must be one of: 0, 1, 2, 3, got: 4"),
    ({"promote_rate_limit_mbps": -1}, "promote_rate_limit_mbps=-1 is out of range: use a whole number of MB/s "
                                      "from 0 to 2147483647"),
    ({"promote_rate_limit_mbps": 2147483648}, "promote_rate_limit_mbps=2147483648 is out of range"),
    ({"promote_rate_limit_mbps": "fast"}, "promote_rate_limit_mbps"),
    ({"demotion_enabled": "maybe"}, "demotion_enabled"),
    ({"persist": True}, "one of the following is required: demotion_enabled, numa_balancing, promote_rate_limit_mbps"),
])
def test_bad_values_are_refused_before_anything_changes(host, run_module, args, message):
    result = run_module(kernel_tiering, args, host)
    assert result.failed
    assert message in result.msg
    assert host.changed_files() == {}


def test_a_huge_number_is_not_echoed_back(host, run_module):
    result = run_module(kernel_tiering, {"promote_rate_limit_mbps": "9" * 4000}, host, check_mode=True)
    assert result.failed
    assert result.msg.startswith("promote_rate_limit_mbps=" + "9" * 64 + "... (4000 characters) is out of range: "
                                 "use a whole number of MB/s from 0 to 2147483647")
    assert len(result.msg) < 300
    assert host.changed_files() == {}


def test_bad_type_messages_name_the_value(host, run_module):
    result = run_module(kernel_tiering, {"promote_rate_limit_mbps": "fast"}, host)
    assert "fast" in result.msg and "int" in result.msg
    result = run_module(kernel_tiering, {"demotion_enabled": "maybe"}, host)
    assert "maybe" in result.msg and "bool" in result.msg


def test_a_knob_the_running_kernel_lacks_is_named_with_the_release(host, run_module):
    # What a kernel older than 6.1 looks like: the rate-limit sysctl does not exist.
    os.remove(host.path(RATE_LIMIT))
    host.mark_clean()
    result = run_module(kernel_tiering, dict(ALL_THREE), host)
    assert result.failed
    release = host.read("/proc/sys/kernel/osrelease")
    assert ("the running kernel %s has no kernel.numa_balancing_promote_rate_limit_MBps "
            "(/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps): it exists in Linux 6.1 and later"
            % release) == result.msg
    # Nothing else was applied either: the check comes before any write.
    assert host.changed_files() == {}


def test_documentation_examples_and_return_are_yaml():
    import yaml

    doc = yaml.safe_load(kernel_tiering.DOCUMENTATION)
    assert doc["module"] == "kernel_tiering"
    assert yaml.safe_load(kernel_tiering.EXAMPLES)[0]["tiering.pmem.kernel_tiering"]
    returned = yaml.safe_load(kernel_tiering.RETURN)
    assert all("sample" in spec for spec in returned.values())


def test_absent_puts_back_what_the_kernel_had_and_removes_the_files(host, fake_host, run_module):
    run_module(kernel_tiering, dict(ALL_THREE), host)
    host.mark_clean()
    checked = run_module(kernel_tiering, {"state": "absent"}, host, check_mode=True)
    assert host.changed_files() == {}
    reverted = run_module(kernel_tiering, {"state": "absent"}, host)
    assert checked.data["actions"] == reverted.data["actions"] == [
        "set demotion_enabled true -> false (as before tiering.pmem)",
        "set kernel.numa_balancing 2 -> 0 (as before tiering.pmem)",
        "set kernel.numa_balancing_promote_rate_limit_MBps 1024 -> 65536 (as before tiering.pmem)",
        "remove /" + SYSCTL, "remove /" + TMPFILES, "remove /etc/tiering-pmem/kernel-tiering-before.json"]
    assert (host.read(DEMOTION), host.read(NUMA_BALANCING), host.read(RATE_LIMIT)) == ("false", "0", "65536")
    assert not os.path.exists(host.path("/" + SYSCTL)) and not os.path.exists(host.path("/" + TMPFILES))
    again = run_module(kernel_tiering, {"state": "absent"}, host)
    assert again.data["changed"] is False


def test_absent_takes_no_knobs(host, run_module):
    result = run_module(kernel_tiering, {"state": "absent", "numa_balancing": 2}, host)
    assert result.failed and "state=absent reverts every knob the collection set and takes none: drop numa_balancing" \
        in result.msg
