# -*- coding: utf-8 -*-
# Copyright: tiering.pmem developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Descriptions of the standard module attributes, so modules only state their support.

    Use ``extends_documentation_fragment: [tiering.pmem.attributes]`` and keep
    ``attributes: {check_mode: {support: full}, diff_mode: {support: full}}`` in the module.
    antsibull-docs (make docs) requires every attribute to carry a description.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
"""

    # For read-only *_info modules: use tiering.pmem.attributes.info_module (no support values needed).
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""
