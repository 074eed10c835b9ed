"""Lab helper run in the guest: write, or checksum, bytes through a devdax device (mmap only: devdax
has no read(2)/write(2)).   prepare_data.py write|sum DEVICE MIB"""
import hashlib
import mmap
import os
import sys

action, device, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(device, os.O_RDWR if action == "write" else os.O_RDONLY)
size = mib << 20
view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | (mmap.PROT_WRITE if action == "write" else 0))
if action == "write":
    # No msync: devdax stores go straight to the media, and msync(2) answers EINVAL there.
    view[:size] = os.urandom(size)
print(hashlib.sha256(view[:size]).hexdigest())
