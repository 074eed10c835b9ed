"""Where the module's in-guest seconds go, phase by phase (run in the guest, not a test).

    python3 profile_guest.py DEBUG_DIR DEVICE
DEBUG_DIR: the exploded AnsiballZ payload (python3 AnsiballZ_memory_blocks.py explode), so the
module_utils measured are exactly the ones the module ran. The device's blocks must be offline.
Prints one line per phase: seconds, what.
"""
import sys
import time

sys.path.insert(0, sys.argv[1])
device = sys.argv[2]
clock = time.perf_counter
t = clock()
# The import every module pays (ping too).
import ansible.module_utils.basic  # noqa: E402,F401 pylint: disable=unused-import
from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs, _pmem_blocks  # noqa: E402
phases = [("import ansible.module_utils.basic + the collection's module_utils", clock() - t)]


def timed(what, call, *args):
    start = clock()
    value = call(*args)
    phases.append((what, clock() - start))
    return value


info = timed("dax_device (resource, size, target_node, driver)", _sysfs.dax_device, device)
selected = timed("blocks_in_range (listdir of /sys/devices/system/memory)", _sysfs.blocks_in_range,
                 info["start"], info["end"])
timed("read state only, %d blocks" % len(selected),
      lambda: [_sysfs.read_text(_sysfs.block_dir(i) + "/state") for i in selected])
current = timed("read_blocks before (state + valid_zones), %d blocks" % len(selected), _sysfs.read_blocks, selected)
if "offline_zones" in _sysfs.read_blocks.__code__.co_varnames:
    timed("read_blocks before as memory_blocks does for online_movable (offline_zones=False)",
          _sysfs.read_blocks, selected, "/", False)
to_offline, to_set, _wrong_zone = timed("plan + predicted + describe (pure Python)", lambda: (
    _pmem_blocks.plan(current, "online_movable"),
    _pmem_blocks.describe(_pmem_blocks.predicted(current, "online_movable",
                                                 _pmem_blocks.plan(current, "online_movable")[1])))[0])
refused = timed("apply: write online_movable, %d blocks" % len(to_set), _pmem_blocks.apply, to_set, "online_movable")
timed("read_blocks after, %d blocks (the module skips it for online_movable since this change)" % len(selected),
      _sysfs.read_blocks, selected)
for what, seconds in phases:
    print("%8.3f  %s" % (seconds, what))
print("refused: %d" % len(refused))
