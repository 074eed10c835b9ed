# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fail_percentage
author: tiering.pmem developers (@tiering)
version_added: 0.1.0
short_description: Check a play's max_fail_percentage and say what is wrong with a bad one
description:
  - Returns a whole number from 0 to 100 for a play's C(max_fail_percentage); V(20) and V(20%) are the same.
  - Ansible stops the play when more than this percentage of a batch's hosts failed.
options:
  _input:
    description: The value to check, usually a variable such as C(provision_max_fail_percentage).
    type: raw
    required: true
  name:
    description: The variable's name, for the message.
    type: str
    default: max_fail_percentage
  default:
    description: What an empty value (V(""), null; an empty survey answer) stands for.
    type: raw
    default: 100
"""

EXAMPLES = r"""
- name: Provision in batches, stop after a bad batch
  hosts: all
  max_fail_percentage: "{{ provision_max_fail_percentage | default('') | tiering.pmem.fail_percentage('provision_max_fail_percentage', default=20) }}"
  tasks: []
"""

RETURN = r"""
_value:
  description: The percentage as an integer from 0 to 100.
  type: int
"""

import re

from ansible.errors import AnsibleFilterError


def fail_percentage(value, name="max_fail_percentage", default=100):
    if value is None or (isinstance(value, str) and not value.strip()):
        value = default
    text = "" if isinstance(value, bool) else str(value).strip()
    match = re.fullmatch(r"([0-9]{1,3})%?", text)
    if isinstance(value, (list, dict)) or not match or int(match.group(1)) > 100:
        shown = repr(value) if not isinstance(value, str) else "'%s'" % value
        raise AnsibleFilterError(
            "%s %s is not a percentage from 0 to 100: give the share of a batch's hosts that may fail before the "
            "run stops, e.g. 20 (0 stops at the first failed host, 100 never stops early)"
            % (name, shown if len(shown) <= 60 else shown[:57] + "..."))
    return int(match.group(1))


class FilterModule:
    """tiering.pmem filters."""

    def filters(self):
        return {"fail_percentage": fail_percentage}
