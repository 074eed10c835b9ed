"""Pack tierd's package into one tar on the controller, for the migration_agent role.

Copying the package file by file cost two module runs per file on every play (about four minutes on
a TCG lab guest); one archive goes over in one transfer and `unarchive` compares its members with
what is installed. Member times and owners are fixed, so the same source always makes the same tar
and a second run reports no change, whichever controller checked the source out.

Usage: pack_tierd.py SOURCE_DIR PARENT_DIR -> prints the path of a new PARENT_DIR/tierd-*/tierd.tar
(a directory of its own, so plays running side by side on one controller do not share it)
"""

import io
import os
import sys
import tarfile
import tempfile

# 1980-01-01: a fixed, unremarkable time (the zip epoch); the checkout's own times differ per clone.
MEMBER_MTIME = 315532800


def pack(source_dir, parent_dir):
    names = sorted(name for name in os.listdir(source_dir) if name.endswith(".py"))
    if not names:
        raise SystemExit("pack_tierd: no tierd modules (*.py) in %s" % source_dir)
    path = os.path.join(tempfile.mkdtemp(prefix="tierd-", dir=parent_dir), "tierd.tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name in names:
            with open(os.path.join(source_dir, name), "rb") as handle:
                data = handle.read()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mtime = MEMBER_MTIME
            member.mode = 0o644
            member.uid = member.gid = 0
            member.uname = member.gname = "root"
            archive.addfile(member, io.BytesIO(data))
    return path


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__.strip().rsplit("\n\n", maxsplit=1)[-1])
    print(pack(argv[1], argv[2]))


if __name__ == "__main__":
    main(sys.argv)
