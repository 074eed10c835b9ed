# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that reads and writes /sys and /proc for the tiering.pmem modules.

Every function takes ``root`` (default ``/``) so unit tests can point it at a tree of files
captured from lab guests (tests/unit/fixtures/<state>/root/...).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

MEMORY_DIR = "sys/devices/system/memory"
NODE_DIR = "sys/devices/system/node"


def host_path(root, path):
    """Join a fixture/host root with an absolute kernel path such as /sys/... ."""
    return os.path.join(root, path.lstrip("/"))


def read_text(path, root="/", default=None):
    """Content of a sysfs/procfs file, stripped; ``default`` when it does not exist."""
    try:
        with open(host_path(root, path)) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        if default is not None:
            return default
        raise


def memory_block_size(root="/"):
    """Bytes per memory block (``block_size_bytes`` is hex without a 0x prefix)."""
    return int(read_text(os.path.join("/", MEMORY_DIR, "block_size_bytes"), root), 16)
