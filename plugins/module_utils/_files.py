# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the collection writes on the host: read, write atomically, remove.

Owns every config-file write (GRUB defaults, sysctl.d, tmpfiles.d, the dax_kmem boot unit, the
ownership record): a temporary file in the target directory, then ``atomic_move``, so no reader
ever sees half a file. Used by _pmem_record, reserved_memory, kernel_tiering and dax_kmem. Every
path goes through ``root`` so unit tests run on captured trees.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path


def read_file(path, root="/"):
    """Content of a regular file, or None when it does not exist (no stripping)."""
    try:
        with open(host_path(root, path)) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def write_file_atomic(module, path, content, root="/", backup=False, mode=0o644):
    """Write ``content`` to ``path`` atomically; returns the backup file name or None."""
    target = host_path(root, path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    backup_file = None
    if backup and os.path.exists(target):
        backup_file = module.backup_local(target)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(target), dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        module.atomic_move(tmp, target)
        # atomic_move keeps the old file's mode or applies the umask: set the one wanted.
        os.chmod(target, mode)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return backup_file


def remove_file(module, path, root="/", backup=False):
    """Remove ``path`` if it exists; returns the backup file name (``backup=True``) or None."""
    target = host_path(root, path)
    backup_file = module.backup_local(target) if backup and os.path.exists(target) else None
    if os.path.exists(target):
        os.remove(target)
    return backup_file


def file_mode(path, root="/"):
    """Permission bits of ``path``, or None when it does not exist."""
    try:
        return os.stat(host_path(root, path)).st_mode & 0o7777
    except OSError:
        return None
