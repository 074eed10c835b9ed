"""reserved_memory over trees captured from the trixie grub guest (tests/unit/fixtures/README-kernel.md).

trixie-grub-fresh: booted through its own GRUB, no reservation. trixie-grub-reserved: the same
guest after this module configured memmap=512M!0x80000000, update-grub and a reboot.
"""

import os
import shutil

import pytest

from ansible_collections.tiering.pmem.plugins.modules import reserved_memory

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")
DROPIN = "etc/default/grub.d/90-tiering-pmem.cfg"
GRUB_DEFAULTS = "etc/default/grub"
WANTED = "512M!0x80000000"


def real_update_grub_output(host, argv):
    """What update-grub produced in the guest for 512M!0x80000000 (captured grub.cfg)."""
    shutil.copy(os.path.join(FIXTURES, "trixie-grub-reserved", "root", "boot", "grub", "grub.cfg"),
                host.path("/boot/grub/grub.cfg"))
    return 0, "", "Generating grub configuration file ...\ndone\n"


@pytest.fixture
def fresh(fake_host):
    host = fake_host("trixie-grub-fresh")
    host.binaries = {"update-grub"}
    host.responses["update-grub"] = real_update_grub_output
    return host


@pytest.fixture
def reserved(fake_host):
    host = fake_host("trixie-grub-reserved")
    host.binaries = {"update-grub"}
    host.responses["update-grub"] = (0, "", "")
    return host


def read_raw(host, path):
    with open(host.path("/" + path)) as handle:
        return handle.read()


def set_grub_cmdline(host, value):
    text = host.read("/" + GRUB_DEFAULTS).replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="%s"' % value)
    host.write("/" + GRUB_DEFAULTS, text + "\n")
    host.mark_clean()


# ---------------------------------------------------------------- present on a fresh host

def test_present_writes_dropin_and_runs_update_grub(fresh, run_module):
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert not result.failed, result.msg
    data = result.data
    assert data["changed"] is True
    assert data["actions"] == ["write /" + DROPIN, "run /usr/bin/update-grub"]
    assert data["reboot_required"] is True
    assert data["bootloader"] == "grub_dropin"
    assert data["ram_source"] == "/sys/firmware/memmap"
    assert data["reservations"] == [WANTED]
    assert data["reservations_running"] == []
    assert data["cmdline_configured"] == "memmap=512M!0x80000000 console=ttyS0,115200 net.ifnames=0"
    assert fresh.commands() == ["update-grub"]
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX memmap=512M!0x80000000"\n' in read_raw(fresh, DROPIN)
    assert sorted(fresh.changed_files()) == ["boot/grub/grub.cfg", DROPIN]


def test_check_mode_changes_nothing_and_reports_what_a_real_run_does(fresh, fake_host, run_module):
    checked = run_module(reserved_memory, {"reservations": [WANTED]}, fresh, check_mode=True, diff=True)
    assert fresh.calls == []
    assert fresh.changed_files() == {}
    real_host = fake_host("trixie-grub-fresh")
    real_host.binaries = {"update-grub"}
    real_host.responses["update-grub"] = real_update_grub_output
    real = run_module(reserved_memory, {"reservations": [WANTED]}, real_host, diff=True)
    assert checked.data == real.data


def test_diff_shows_the_new_dropin(fresh, run_module):
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh, check_mode=True, diff=True)
    (entry,) = result.data["diff"]
    assert entry["before_header"] == entry["after_header"] == "/" + DROPIN
    assert entry["before"] == ""
    assert entry["after"].endswith('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX memmap=512M!0x80000000"\n')


def test_second_run_before_reboot_changes_nothing_but_still_needs_reboot(fresh, run_module):
    run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    fresh.calls = []
    again = run_module(reserved_memory, {"reservations": ["512M!2G"]}, fresh)
    assert again.data["changed"] is False and again.data["actions"] == []
    assert again.data["reboot_required"] is True
    assert fresh.calls == []


def test_interrupted_run_regenerates_grub_cfg_only(fresh, run_module):
    run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    shutil.copy(os.path.join(FIXTURES, "trixie-grub-fresh", "root", "boot", "grub", "grub.cfg"),
                fresh.path("/boot/grub/grub.cfg"))
    fresh.calls = []
    again = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert again.data["actions"] == ["run /usr/bin/update-grub"]
    assert fresh.commands() == ["update-grub"]


def test_two_ranges_in_order(fresh, run_module):
    fresh.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": ["256M!0x80000000", "256M!0xa0000000"]}, fresh)
    assert result.data["reservations"] == ["256M!0x80000000", "256M!0xa0000000"]
    assert "memmap=256M!0x80000000 memmap=256M!0xa0000000" in fresh.read("/" + DROPIN)


# ---------------------------------------------------------------- after the reboot

def test_rerun_after_reboot_is_a_no_op(reserved, run_module):
    # 0x80000000 is "Persistent Memory (legacy)" in this boot's /proc/iomem, still RAM in the firmware map.
    result = run_module(reserved_memory, {"reservations": [WANTED]}, reserved)
    assert not result.failed, result.msg
    assert result.data["changed"] is False
    assert result.data["reboot_required"] is False
    assert result.data["reservations_running"] == [WANTED]
    assert reserved.calls == [] and reserved.changed_files() == {}


def test_absent_removes_dropin_and_needs_reboot(reserved, run_module):
    checked = run_module(reserved_memory, {"state": "absent"}, reserved, check_mode=True, diff=True)
    assert reserved.calls == [] and reserved.changed_files() == {}
    result = run_module(reserved_memory, {"state": "absent"}, reserved, diff=True)
    assert checked.data == result.data
    assert result.data["actions"] == ["remove /" + DROPIN, "run /usr/bin/update-grub"]
    assert result.data["reboot_required"] is True
    assert result.data["reservations"] == []
    assert result.data["diff"][0]["after"] == ""
    assert not os.path.exists(reserved.path("/" + DROPIN))


def test_absent_of_a_range_not_configured_is_a_no_op(fresh, run_module):
    result = run_module(reserved_memory, {"state": "absent", "reservations": [WANTED]}, fresh)
    assert result.data["changed"] is False and fresh.calls == []


def test_backup_keeps_a_copy_of_the_removed_dropin(reserved, run_module):
    before = reserved.read("/" + DROPIN)
    result = run_module(reserved_memory, {"state": "absent", "backup": True}, reserved)
    (backup,) = result.data["backup_files"]
    assert os.path.dirname(backup) == os.path.dirname(reserved.path("/" + DROPIN))
    with open(backup) as handle:
        assert handle.read().strip() == before


def test_lab_legacy_default_of_1g_at_2g_runs_into_firmware_reserved_memory(fake_host, run_module):
    # Captured on bookworm booted with memmap=1024M!0x80000000 on a 3 GiB pc machine: RAM ends at
    # 0xbffdcfff, the kernel split the range into two misaligned namespaces and made no /dev/pmem0.
    host = fake_host("bookworm-legacy-reserved")
    result = run_module(reserved_memory, {"reservations": ["1G!0x80000000"]}, host)
    assert result.failed
    assert ("1G!0x80000000 (0x80000000-0xbfffffff) is not inside usable RAM per /sys/firmware/memmap"
            in result.msg)
    assert host.calls == [] and host.changed_files() == {}


def test_bookworm_running_reservation_differs_from_the_configured_one(fake_host, run_module):
    host = fake_host("bookworm-legacy-reserved")
    host.binaries = {"update-grub"}
    host.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, host, check_mode=True)
    assert result.data["reservations_running"] == ["1G!0x80000000"]
    assert result.data["reservations"] == [WANTED]
    assert result.data["reboot_required"] is True
    assert result.data["actions"] == ["write /" + DROPIN, "run /usr/bin/update-grub"]


# ---------------------------------------------------------------- exclusive

def test_exclusive_removes_a_reservation_configured_elsewhere(fresh, run_module):
    set_grub_cmdline(fresh, "quiet memmap=256M!0xa0000000")
    fresh.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": ["256M!0x80000000"]}, fresh, diff=True)
    assert result.data["actions"] == ["edit /" + GRUB_DEFAULTS, "write /" + DROPIN, "run /usr/bin/update-grub"]
    assert 'GRUB_CMDLINE_LINUX="quiet"' in fresh.read("/" + GRUB_DEFAULTS)
    assert result.data["reservations"] == ["256M!0x80000000"]
    assert [d["before_header"] for d in result.data["diff"]] == ["/" + GRUB_DEFAULTS, "/" + DROPIN]


def test_a_wanted_reservation_already_configured_elsewhere_stays_there(fresh, run_module):
    set_grub_cmdline(fresh, "memmap=512M!2G")
    fresh.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    # Only grub.cfg lacks it: no file is edited, no duplicate in our drop-in.
    assert result.data["actions"] == ["run /usr/bin/update-grub"]
    assert not os.path.exists(fresh.path("/" + DROPIN))


def test_not_exclusive_keeps_the_other_reservation(fresh, run_module):
    set_grub_cmdline(fresh, "memmap=256M!0xa0000000")
    fresh.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": ["256M!0x80000000"], "exclusive": False}, fresh)
    assert result.data["actions"] == ["write /" + DROPIN, "run /usr/bin/update-grub"]
    assert result.data["reservations"] == ["256M!0xa0000000", "256M!0x80000000"]
    assert 'memmap=256M!0xa0000000' in fresh.read("/" + GRUB_DEFAULTS)


# ---------------------------------------------------------------- other boot loaders

def test_without_grub_d_edits_etc_default_grub(fresh, run_module):
    shutil.rmtree(fresh.path("/etc/default/grub.d"))
    fresh.mark_clean()
    fresh.responses["update-grub"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.data["bootloader"] == "grub_defaults"
    assert result.data["actions"] == ["edit /" + GRUB_DEFAULTS, "run /usr/bin/update-grub"]
    assert 'GRUB_CMDLINE_LINUX="memmap=512M!0x80000000"' in fresh.read("/" + GRUB_DEFAULTS)
    assert list(fresh.changed_files()) == [GRUB_DEFAULTS]


def test_grub2_mkconfig_when_there_is_no_update_grub(fresh, run_module):
    shutil.rmtree(fresh.path("/etc/default/grub.d"))
    fresh.binaries = {"grub2-mkconfig"}
    fresh.responses["grub2-mkconfig -o /boot/grub/grub.cfg"] = (0, "", "")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.data["actions"][-1] == "run /usr/bin/grub2-mkconfig -o /boot/grub/grub.cfg"
    assert fresh.commands() == ["grub2-mkconfig -o /boot/grub/grub.cfg"]


GRUBBY_INFO = ('index=0\nkernel="/boot/vmlinuz-6.12.0-55.el10.x86_64"\n'
               'args="ro crashkernel=2G-64G:256M resume=UUID=1 memmap=1G!4G,256M$8G"\n'
               'root="UUID=2"\ninitrd="/boot/initramfs-6.12.0-55.el10.x86_64.img"\ntitle="Linux"\n')


def test_grubby_removes_and_adds_arguments(fresh, run_module):
    shutil.rmtree(fresh.path("/etc/default/grub.d"))
    fresh.mark_clean()
    fresh.binaries = {"grubby"}
    fresh.responses["grubby --info DEFAULT"] = (0, GRUBBY_INFO, "")
    fresh.responses["grubby --update-kernel=ALL --remove-args=memmap=1G!4G,256M$8G"] = (0, "", "")
    fresh.responses["grubby --update-kernel=ALL --args=memmap=256M$8G memmap=512M!0x80000000"] = (0, "", "")
    checked = run_module(reserved_memory, {"reservations": [WANTED]}, fresh, check_mode=True)
    assert fresh.state_changing_calls() == []
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.data == checked.data
    assert result.data["bootloader"] == "grubby"
    assert fresh.state_changing_calls() == [
        "grubby --update-kernel=ALL --remove-args=memmap=1G!4G,256M$8G",
        "grubby --update-kernel=ALL --args=memmap=256M$8G memmap=512M!0x80000000"]
    assert result.data["cmdline_configured"] == (
        "ro crashkernel=2G-64G:256M resume=UUID=1 memmap=256M$8G memmap=512M!0x80000000")
    assert fresh.changed_files() == {}


def test_update_grub_failure_is_reported_with_its_stderr(fresh, run_module):
    fresh.responses["update-grub"] = (1, "", "/usr/sbin/grub-probe: error: failed to get canonical path of `/dev/vda'.")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.failed
    assert "update-grub failed (rc=1)" in result.msg and "grub-probe" in result.msg
    assert result.data["stderr"].startswith("/usr/sbin/grub-probe")
    # The drop-in was written before update-grub ran: the host changed, and the result says so.
    assert list(fresh.changed_files()) and result.data["changed"] is True
    assert result.data["reboot_required"] is False


def test_a_first_grubby_command_failing_reports_no_change(fresh, run_module):
    fresh.binaries = {"grubby"}
    fresh.responses["grubby --info DEFAULT"] = (0, GRUBBY_INFO, "")
    fresh.responses["grubby --update-kernel=ALL --remove-args=memmap=1G!4G,256M$8G"] = (1, "", "grubby: no kernel")
    result = run_module(reserved_memory, {"reservations": [WANTED], "bootloader": "grubby"}, fresh)
    assert result.failed and "grubby: no kernel" in result.msg
    assert result.data["changed"] is False
    assert fresh.state_changing_calls() == ["grubby --update-kernel=ALL --remove-args=memmap=1G!4G,256M$8G"]


def test_a_second_grubby_command_failing_reports_the_first_ones_change(fresh, run_module):
    fresh.binaries = {"grubby"}
    fresh.responses["grubby --info DEFAULT"] = (0, GRUBBY_INFO, "")
    fresh.responses["grubby --update-kernel=ALL --remove-args=memmap=1G!4G,256M$8G"] = (0, "", "")
    fresh.responses["grubby --update-kernel=ALL --args=memmap=256M$8G memmap=512M!0x80000000"] = (1, "", "grubby: bad")
    result = run_module(reserved_memory, {"reservations": [WANTED], "bootloader": "grubby"}, fresh)
    assert result.failed and result.data["changed"] is True


# ---------------------------------------------------------------- bad input: nothing written, nothing run

BAD = [
    (["abc!0x80000000"], "'abc' is not a valid size: use a whole number"),
    (["512X!0x80000000"], "'512X' is not a valid size: use a whole number"),
    (["512M!0x8000000Q"], "'0x8000000Q' is not a valid size"),
    (["512M"], "reservation '512M' is not SIZE!OFFSET: use SIZE!OFFSET, e.g. 512M!0x80000000"),
    (["0!0x80000000"], "reservation '0!0x80000000' has size 0"),
    (["512M!0x80100000"], "offset 0x80100000 is not a multiple of the memory block size 0x8000000 (128M)"),
    (["100M!0x80000000"], "size 0x6400000 is not a multiple of the memory block size 0x8000000 (128M): use a size that is, e.g. 128M"),
    (["512M!0xc0000000"], "512M!0xc0000000 (0xc0000000-0xdfffffff) is not inside usable RAM per /sys/firmware/memmap: "
                          "valid ranges are 0x0-0x9fbff, 0x100000-0xbffdcfff"),
    (["8G!0x80000000"], "is not inside usable RAM per /sys/firmware/memmap"),
    (["512M!0x80000000", "256M!0x90000000"], "reservations 512M!0x80000000 (0x80000000-0x9fffffff) and "
                                             "256M!0x90000000 (0x90000000-0x9fffffff) overlap"),
    ([], "reservations is empty: with state=present give at least one SIZE!OFFSET"),
    (["-512M!0x80000000"], "'-512M' is not a valid size: use a whole number"),
    (["512M!0x80000000 init=/bin/sh"], "'0x80000000 init=/bin/sh' is not a valid size"),
    (["512M!0x80000000\ninit=/bin/sh"], "is not a valid size"),
    (["99999999999999999999999T!0x80000000"], "'99999999999999999999999T' is too large: sizes and addresses are "
                                              "below 2^64 bytes (16 EiB)"),
    (["16777216T!0"], "'16777216T' is too large"),
    (["1G!0xffffffffffffffff"], "reservation '1G!0xffffffffffffffff' ends beyond 2^64 bytes"),
    (["128M!%dG" % i for i in range(4, 80)],
     "76 reservations take 1839 bytes of the kernel command line as memmap= arguments: at most 1024 are allowed"),
]


@pytest.mark.parametrize("reservations, message", BAD)
def test_bad_reservations_are_refused_before_anything_changes(fresh, run_module, reservations, message):
    result = run_module(reserved_memory, {"reservations": reservations}, fresh)
    assert result.failed
    assert message in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_a_huge_reservation_is_not_echoed_back(fresh, run_module):
    result = run_module(reserved_memory, {"reservations": ["9" * 100000 + "!0x80000000"]}, fresh, check_mode=True)
    assert result.failed
    assert "(100011 characters)" in result.msg and "is too large" in result.msg
    assert len(result.msg) < 600
    result = run_module(reserved_memory, {"reservations": ["x" * 100000]}, fresh)
    assert result.failed and "(100000 characters) is not SIZE!OFFSET" in result.msg and len(result.msg) < 400
    assert fresh.calls == [] and fresh.changed_files() == {}


# ---------------------------------------------------------------- RAM left to the host

# trixie-grub-fresh: 3071 MiB of firmware System RAM (0x0-0x9fbff, 0x100000-0xbffdcfff), 128 MiB blocks.
# The floor is max(1 GiB, 25 % of 3071 MiB) = 1024 MiB, so at most 15 blocks (1920 MiB) can be reserved.

@pytest.mark.parametrize("check_mode", [False, True])
def test_a_reservation_leaving_less_than_1g_is_refused(fresh, run_module, check_mode):
    result = run_module(reserved_memory, {"reservations": ["2G!0x10000000"]}, fresh, check_mode=check_mode)
    assert result.failed
    assert result.msg == (
        "reservations 2G!0x10000000 take 2048 MiB and would leave the host 1023 MiB of its 3071 MiB of usable RAM "
        "(per /sys/firmware/memmap): it needs at least 1024 MiB, the larger of 1024 MiB and 25 % of its RAM, to "
        "boot and run; reserve at most 1920M (1920 MiB) in total")
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_the_most_the_message_allows_is_accepted(fresh, run_module):
    result = run_module(reserved_memory, {"reservations": ["1920M!0x10000000"]}, fresh, check_mode=True)
    assert not result.failed, result.msg
    assert result.data["reservations"] == ["1920M!0x10000000"]


def test_kept_reservations_count_against_the_floor(fresh, run_module):
    set_grub_cmdline(fresh, "memmap=1G!0x80000000")
    result = run_module(reserved_memory, {"reservations": ["1G!0x10000000"], "exclusive": False}, fresh)
    assert result.failed
    assert "reservations 1G!0x80000000, 1G!0x10000000 take 2048 MiB and would leave the host 1023 MiB" in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}
    # exclusive=true removes the other one: 1 GiB reserved in all, which fits.
    fresh.responses["update-grub"] = (0, "", "")
    assert not run_module(reserved_memory, {"reservations": ["1G!0x10000000"]}, fresh, check_mode=True).failed


def shrink_ram(host, end):
    """The host's firmware map and iomem with System RAM 0x100000-END only."""
    host.write("/sys/firmware/memmap/3/end", "0x%x\n" % end)
    host.mark_clean()


def test_768m_of_a_1g_guest_is_refused(fresh, run_module):
    # The case of issue 10: 1 GiB of RAM (QEMU -m 1G: RAM ends at 0x3ffdffff), 768 MiB reserved.
    shrink_ram(fresh, 0x3ffdffff)
    result = run_module(reserved_memory, {"reservations": ["768M!0x8000000"]}, fresh, check_mode=True)
    assert result.failed
    assert result.msg == (
        "reservations 768M!0x8000000 take 768 MiB and would leave the host 255 MiB of its 1023 MiB of usable RAM "
        "(per /sys/firmware/memmap): it needs at least 1024 MiB, the larger of 1024 MiB and 25 % of its RAM, to "
        "boot and run; this host has too little RAM for any reservation")
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_the_floor_is_25_percent_on_a_large_host(fresh, run_module):
    # 64 GiB of RAM (less 1 MiB): the floor is 25 % (16383 MiB), not 1 GiB.
    shrink_ram(fresh, (64 << 30) - 1)
    result = run_module(reserved_memory, {"reservations": ["48G!0x10000000"]}, fresh, check_mode=True)
    assert result.failed
    assert "it needs at least 16383 MiB, the larger of 1024 MiB and 25 % of its RAM" in result.msg
    assert "reserve at most 49024M (49024 MiB) in total" in result.msg
    assert not run_module(reserved_memory, {"reservations": ["47G!0x10000000"]}, fresh, check_mode=True).failed


def test_grubby_missing_names_the_other_boot_loaders(fresh, run_module):
    fresh.binaries = {"update-grub"}
    result = run_module(reserved_memory, {"reservations": [WANTED], "bootloader": "grubby"}, fresh)
    assert result.failed
    assert result.msg == ("bootloader=grubby but grubby is not installed: install it, or use bootloader=auto, "
                          "grub_dropin or grub_defaults")


def test_overlap_with_a_kept_reservation_is_refused(fresh, run_module):
    set_grub_cmdline(fresh, "memmap=256M!0x88000000")
    result = run_module(reserved_memory, {"reservations": ["256M!0x80000000"], "exclusive": False}, fresh)
    assert result.failed
    assert ("reservation 256M!0x80000000 (0x80000000-0x8fffffff) overlaps the existing reservation "
            "memmap=256M!0x88000000") in result.msg
    assert "exclusive=true" in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_overlap_with_a_memmap_reserved_range_is_refused(fresh, run_module):
    set_grub_cmdline(fresh, "memmap=64M$0x90000000")
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.failed
    assert "overlaps memmap=64M$0x90000000 (0x90000000-0x93ffffff), configured as reserved" in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_missing_regeneration_tool_is_refused_before_writing(fresh, run_module):
    fresh.binaries = set()
    result = run_module(reserved_memory, {"reservations": [WANTED]}, fresh)
    assert result.failed and "no update-grub, grub-mkconfig or grub2-mkconfig" in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_unknown_state_names_the_choices(fresh, run_module):
    result = run_module(reserved_memory, {"reservations": [WANTED], "state": "reserved"}, fresh)
    assert result.failed
    assert "state" in result.msg and "present, absent" in result.msg and "reserved" in result.msg
    assert fresh.calls == [] and fresh.changed_files() == {}


def test_documentation_examples_and_return_are_yaml():
    import yaml

    doc = yaml.safe_load(reserved_memory.DOCUMENTATION)
    assert doc["module"] == "reserved_memory"
    assert yaml.safe_load(reserved_memory.EXAMPLES)[0]["tiering.pmem.reserved_memory"]
    returned = yaml.safe_load(reserved_memory.RETURN)
    assert all("sample" in spec for spec in returned.values())
