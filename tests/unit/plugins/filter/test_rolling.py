"""serial_batches and fail_percentage: the values a rolling play takes, and the message for a bad one."""
import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.tiering.pmem.plugins.filter.fail_percentage import fail_percentage
from ansible_collections.tiering.pmem.plugins.filter.serial_batches import serial_batches


@pytest.mark.parametrize("value, expected", [
    (10, 10), ("10", 10), (" 3 ", 3), ("25%", "25%"), ("100%", "100%"), ("", 10), (None, 10),
    ([1, "5", "25%"], [1, 5, "25%"]),
])
def test_serial_values(value, expected):
    assert serial_batches(value, "provision_serial", default=10) == expected


@pytest.mark.parametrize("value, words", [
    ("abc", "provision_serial 'abc' is not a number or a percentage like 25%"),
    ("0", "provision_serial '0' is less than one host per batch"),
    (0, "provision_serial 0 is less than one host per batch"),
    (-2, "provision_serial -2 is less than one host per batch"),
    ("0%", "provision_serial '0%' is not a percentage from 1% to 100%"),
    ("150%", "provision_serial '150%' is not a percentage from 1% to 100%"),
    ("2.5", "provision_serial '2.5' is not a number"),
    (True, "provision_serial True is not a number"),
    ([], "provision_serial [] is empty"),
    ([1, "x"], "provision_serial 'x' (item 2 of [1, 'x']) is not a number"),
    ({"a": 1}, "provision_serial {'a': 1} is not a number"),
])
def test_bad_serial_is_named_with_what_is_valid(value, words):
    with pytest.raises(AnsibleFilterError) as caught:
        serial_batches(value, "provision_serial")
    message = str(caught.value)
    assert message.startswith(words), message
    assert "a whole number of hosts per batch (1 or more), a percentage of the play's hosts from 1% to 100%" in message


def test_bad_serial_is_shortened():
    with pytest.raises(AnsibleFilterError) as caught:
        serial_batches("x" * 10000, "teardown_serial")
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("value, expected", [(0, 0), ("20", 20), ("20%", 20), (100, 100), ("", 20), (None, 20)])
def test_fail_percentage_values(value, expected):
    assert fail_percentage(value, "provision_max_fail_percentage", default=20) == expected


@pytest.mark.parametrize("value", ["abc", "101", 150, "-1", "2.5", True, [10]])
def test_bad_fail_percentage(value):
    with pytest.raises(AnsibleFilterError) as caught:
        fail_percentage(value, "provision_max_fail_percentage")
    message = str(caught.value)
    assert message.startswith("provision_max_fail_percentage "), message
    assert "is not a percentage from 0 to 100" in message and "e.g. 20" in message
