"""provision_summary over results shaped as the roles and modules register them."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tiering.pmem.plugins.filter.provision_summary import provision_summary

SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def test_nothing_ran_nothing_changed():
    summary = provision_summary({})
    assert summary == {"changed": [], "refused": [], "reboot_required": False, "left_alone": [],
                       "uncertain": [], "lines": ["changed: nothing"]}


def test_skipped_steps_are_not_changes():
    summary = provision_summary({"preflight": {"result": {"uncertain": []}, "packages": SKIPPED},
                                 "emulated_pmem": {"result": SKIPPED, "reboot_required": False},
                                 "kernel_tiering": SKIPPED, "migration_agent": {"changes": []},
                                 "system_ram": {"changed": False, "devices": ["dax0.0"], "left_alone": []},
                                 "failed": None})
    assert summary["changed"] == [] and summary["lines"] == ["changed: nothing"]


def test_every_step_that_changed_is_listed_in_check_mode_words():
    results = {
        "preflight": {"result": {"packages": ["numactl"], "uncertain": ["could not tell whether the kernel has DAMON"]},
                      "packages": {"changed": True}},
        "emulated_pmem": {"result": {"changed": True, "actions": ["set memmap=512M!0x40000000 in GRUB"],
                                     "reboot_required": True}, "reboot_required": True},
        "system_ram": {"changed": True, "devices": ["dax0.0"],
                       "left_alone": ["region1 has no free space and its namespaces (namespace1.0) are not the collection's"]},
        "kernel_tiering": {"changed": True, "actions": ["demotion_enabled: false -> true", "numa_balancing: 0 -> 2"]},
        "migration_agent": {"changes": ["config", "service state"]},
    }
    summary = provision_summary(results, check_mode=True)
    assert summary["changed"] == [
        "preflight: would install numactl",
        "emulated_pmem: memmap= reservation (set memmap=512M!0x40000000 in GRUB)",
        "system_ram: dax0.0",
        "kernel_tiering: knobs (demotion_enabled: false -> true; numa_balancing: 0 -> 2)",
        "migration_agent: config, service state",
    ]
    assert summary["reboot_required"] is True
    assert summary["lines"][0].startswith("would change: preflight: would install numactl; emulated_pmem")
    assert any(line.startswith("needs a reboot") for line in summary["lines"])
    assert "left alone: region1 has no free space" in summary["lines"][-2]
    assert summary["lines"][-1] == "could not tell: could not tell whether the kernel has DAMON"


def test_refusal_is_reported_with_the_task():
    summary = provision_summary({"failed": {"task": "Refuse in safe mode region0",
                                            "msg": "namespace0.0 holds an ext4 filesystem"}})
    assert summary["refused"] == ["Refuse in safe mode region0: namespace0.0 holds an ext4 filesystem"]
    assert summary["lines"] == ["changed: nothing",
                                "refused or failed at Refuse in safe mode region0: namespace0.0 holds an ext4 filesystem"]


def test_long_action_lists_are_cut():
    summary = provision_summary({"kernel_tiering": {"changed": True, "actions": ["a%d" % i for i in range(9)]}})
    assert summary["changed"] == ["kernel_tiering: knobs (a0; a1; a2; a3; 5 more)"]


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError, match="takes a dict of the host's results, got list"):
        provision_summary([])


def test_cxl_regions_made_count_as_a_change():
    # In check mode the region is predicted but its dax device cannot be: the role records no device.
    summary = provision_summary({"system_ram": {"changed": False, "devices": [], "cxl_changed": True}}, check_mode=True)
    assert summary["changed"] == ["system_ram: CXL RAM regions would be made (their kmem step is predicted, not checked)"]
    summary = provision_summary({"system_ram": {"changed": True, "devices": ["dax1.0"], "cxl_changed": True}})
    assert summary["changed"] == ["system_ram: CXL RAM regions made", "system_ram: dax1.0"]
