# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: serial_batches
author: tiering.pmem developers (@tiering)
version_added: 0.1.0
short_description: Check a play's serial value (hosts per batch) and say what is wrong with a bad one
description:
  - Returns the value for a play's C(serial) keyword - a whole number of hosts (1 or more), a percentage of
    the play's hosts (V(1%) to V(100%)), or a list of them for growing batches.
  - Ansible itself stops with a traceback on a bad C(serial); this names the variable, the value and what is
    valid instead.
options:
  _input:
    description: The value to check, usually a variable such as C(provision_serial).
    type: raw
    required: true
  name:
    description: The variable's name, for the message.
    type: str
    default: serial
  default:
    description: What an empty value (V(""), null; an empty survey answer) stands for.
    type: raw
    default: 10
"""

EXAMPLES = r"""
- name: Provision in batches
  hosts: all
  serial: "{{ provision_serial | default('') | tiering.pmem.serial_batches('provision_serial', default=10) }}"
  tasks: []
"""

RETURN = r"""
_value:
  description: The same value with numbers as integers, percentages as strings like V(25%), lists kept.
  type: raw
"""

import re

from ansible.errors import AnsibleFilterError

VALID = ("give a whole number of hosts per batch (1 or more), a percentage of the play's hosts from 1% to 100%, "
         "or a list of them for growing batches, e.g. [1, 5, '25%']")


def _one(value, name, shown):
    if isinstance(value, bool):
        raise AnsibleFilterError("%s %s is not a number or a percentage like 25%%: %s" % (name, shown, VALID))
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        percent = re.fullmatch(r"([0-9]{1,3})%", text)
        if percent:
            if not 1 <= int(percent.group(1)) <= 100:
                raise AnsibleFilterError("%s %s is not a percentage from 1%% to 100%%: %s" % (name, shown, VALID))
            return "%d%%" % int(percent.group(1))
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise AnsibleFilterError("%s %s is not a number or a percentage like 25%%: %s" % (name, shown, VALID))
        number = int(text)
    if number < 1:
        raise AnsibleFilterError("%s %s is less than one host per batch: %s" % (name, shown, VALID))
    return number


def _shown(value):
    text = repr(value) if not isinstance(value, str) else "'%s'" % value
    return text if len(text) <= 60 else text[:57] + "..."


def serial_batches(value, name="serial", default=10):
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default
    if isinstance(value, (list, tuple)):
        if not value:
            raise AnsibleFilterError("%s [] is empty: %s" % (name, VALID))
        return [_one(item, name, "%s (item %d of %s)" % (_shown(item), index + 1, _shown(list(value))))
                for index, item in enumerate(value)]
    if isinstance(value, dict):
        raise AnsibleFilterError("%s %s is not a number or a percentage like 25%%: %s" % (name, _shown(value), VALID))
    return _one(value, name, _shown(value))


class FilterModule:
    """tiering.pmem filters."""

    def filters(self):
        return {"serial_batches": serial_batches}
