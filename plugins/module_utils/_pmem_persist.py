# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot-time persistence of dax_kmem: a systemd unit template of ours plus one config per device.

Why not daxctl's own ``daxctl.conf.d`` + ``daxdev-reconfigure@.service``: Debian's daxctl package
ships the udev rule but not that unit, and on kernels that auto-online hotplugged memory (trixie)
``daxctl reconfigure-device`` refuses at boot ("kernel policy will auto-online memory, aborting").
Our unit clears the auto-online policy around the reconfigure and onlines the blocks in the zone
asked for, on every release, with or without namespace labels (legacy pmem has no uuid).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path

UNIT_NAME = "tiering-pmem-dax-kmem@.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME
SCRIPT_PATH = "/usr/local/sbin/tiering-pmem-dax-kmem"
CONFIG_DIR = "/etc/tiering-pmem/dax-kmem"

UNIT_TEXT = """# Managed by tiering.pmem.dax_kmem: do not edit.
[Unit]
Description=tiering.pmem: dax device %I as system RAM
Documentation=https://github.com/tiering/pmem
After=systemd-modules-load.service systemd-udev-settle.service dev-%i.device
Wants=systemd-modules-load.service
Requires=dev-%i.device
ConditionPathExists=/etc/tiering-pmem/dax-kmem/%I.conf

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/tiering-pmem-dax-kmem %I

[Install]
WantedBy=multi-user.target
"""

SCRIPT_TEXT = r"""#!/bin/sh
# Managed by tiering.pmem.dax_kmem: do not edit.
# Makes dax device $1 system RAM as /etc/tiering-pmem/dax-kmem/$1.conf says (ONLINE, MOVABLE).
set -eu
dev="$1"
. "/etc/tiering-pmem/dax-kmem/$dev.conf"
policy_file=/sys/devices/system/memory/auto_online_blocks
driver=$(basename "$(readlink "/sys/bus/dax/devices/$dev/driver" 2>/dev/null || echo none)")
if [ "$driver" != kmem ]; then
    # daxctl refuses while the kernel would auto-online the memory: clear the policy around it.
    policy=$(cat "$policy_file")
    [ "$policy" = offline ] || echo offline > "$policy_file"
    rc=0
    daxctl reconfigure-device --mode=system-ram --no-online "$dev" || rc=$?
    [ "$policy" = offline ] || echo "$policy" > "$policy_file"
    [ "$rc" -eq 0 ] || exit "$rc"
fi
if [ "${ONLINE:-1}" = 1 ]; then
    if [ "${MOVABLE:-1}" = 1 ]; then zone=--movable; else zone=--no-movable; fi
    daxctl online-memory "$zone" "$dev"
fi
"""


def config_path(device):
    return "%s/%s.conf" % (CONFIG_DIR, device)


def config_text(online, movable):
    return ("# Managed by tiering.pmem.dax_kmem: do not edit.\nONLINE=%d\nMOVABLE=%d\n"
            % (1 if online else 0, 1 if movable else 0))


def read_file(path, root="/"):
    try:
        with open(host_path(root, path)) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def write_file_atomic(module, path, content, root="/", mode=0o644):
    """mkstemp in the target's directory, then atomic_move: never a half-written file."""
    target = host_path(root, path)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=".tiering-pmem-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(content)
        os.chmod(temp, mode)
        module.atomic_move(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def remove_file(path, root="/"):
    target = host_path(root, path)
    if os.path.exists(target):
        os.unlink(target)
        return True
    return False


def unit_instance(device):
    return "tiering-pmem-dax-kmem@%s.service" % device


def wanted_files(device, online, movable):
    """{path: (content, mode)} that persistence needs."""
    return {
        UNIT_PATH: (UNIT_TEXT, 0o644),
        SCRIPT_PATH: (SCRIPT_TEXT, 0o755),
        config_path(device): (config_text(online, movable), 0o644),
    }
