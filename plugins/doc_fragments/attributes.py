# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The standard module attributes, described once.

    State-changing modules: ``extends_documentation_fragment: [tiering.pmem.attributes]`` (all five
    support check mode and diff mode in full). Read-only ``*_info`` modules:
    ``extends_documentation_fragment: [tiering.pmem.attributes.info_module]``.
    antsibull-docs (make docs) requires every attribute to carry a description.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
    support: full
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return the same facts as a normal run.
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    description: Returns no diff.
    support: N/A
    details:
      - This action does not modify state.
"""
