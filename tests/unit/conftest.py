"""Make the collection importable as ansible_collections.tiering.pmem from this tree.

`make collection-link` creates .cache/collections/ansible_collections/tiering/pmem -> repo; when it is
missing (a fresh clone running pytest directly) an equivalent link is made in a temporary directory.
"""

import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _collections_root():
    linked = os.path.join(REPO, ".cache", "collections")
    if os.path.realpath(os.path.join(linked, "ansible_collections", "tiering", "pmem")) == REPO:
        return linked
    temp = tempfile.mkdtemp(prefix="tiering-pmem-collections-")
    os.makedirs(os.path.join(temp, "ansible_collections", "tiering"))
    os.symlink(REPO, os.path.join(temp, "ansible_collections", "tiering", "pmem"))
    return temp


if "ansible_collections.tiering.pmem" not in sys.modules:
    sys.path.insert(0, _collections_root())


def _restore_fixture_symlinks():
    """Recreate the fixtures' sysfs symlinks (kept in git as symlinks.txt manifests)."""
    sys.path.insert(0, os.path.join(REPO, "tests", "unit", "fixtures"))
    try:
        import symlinks  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    for fixture in symlinks.fixture_dirs([]):
        symlinks.restore(fixture)


_restore_fixture_symlinks()

# The captured sysfs trees link memoryN/nodeX <-> nodeX/memoryN as the kernel does: a symlink
# cycle that pytest's collection would walk forever.
collect_ignore = ["fixtures"]
