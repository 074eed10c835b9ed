"""Record real pmem states of lab guests as unit-test fixtures.

    python3 lab/capture-fixtures.py [--release trixie|bookworm] [--flavour nvdimm|legacy|cxl]
                                    [--name m1-cap] [--pmem-size SIZE] [--keep] [--reuse]

Boots a lab guest (or, with --reuse, uses the running one of that name), walks it through the pmem
states (raw namespace, fsdax, fsdax with a mounted filesystem, devdax, system-ram offline,
system-ram online movable) and records after each step, into
``tests/unit/fixtures/<release>-<flavour>-<state>/``:

- ``root/``: the files the modules read, at their guest paths (``root/proc/cmdline``,
  ``root/sys/devices/system/memory/memory32/state``, ...). Relative sysfs symlinks the code
  follows or lists (``node1/memory32``, ``memory32/node1``, ``dax0.0/driver``) are recreated as
  symlinks with the guest's link text, so module_utils read a fixture root exactly like ``/``.
- ``ndctl-list.json`` (``ndctl list -RNDi``; this ndctl prints JSON by default and has no ``-j``),
  ``daxctl-list.json`` (``daxctl list``), ``daxctl-list-M.json`` (``daxctl list -M``): raw stdout,
  empty when the tool lists nothing.
- ``cxl-list.json`` (``cxl list -vvv``: buses, ports, endpoints, memdevs, decoders, regions and their
  dax devices in one tree), on guests with a CXL root only (flavour cxl: the states are no region,
  a RAM region the kernel onlined, offline, online movable, destroyed).
- ``commands.json``: the state-changing commands that led to this state since the previous one,
  each with argv, rc, stdout and stderr (e.g. trixie's auto-online refusal of daxctl).
- ``meta.json``: release, flavour, state, kernel, tool versions.

The guest is stopped at the end unless --keep (also when a step fails).
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(LAB_DIR)
FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures")
LABCTL = [sys.executable, os.path.join(LAB_DIR, "labctl.py")]

# Runs inside the guest (python3 is in every lab image). Writes a tar of the recorded tree to stdout.
COLLECTOR = r'''
import glob, io, json, os, re, subprocess, sys, tarfile

out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")

def add_bytes(name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    out.addfile(info, io.BytesIO(data))

def add_file(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return
    add_bytes("root" + path, data)

def add_link(path):
    try:
        target = os.readlink(path)
    except OSError:
        return
    info = tarfile.TarInfo("root" + path)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    out.addfile(info)

def run(argv):
    proc = subprocess.run(argv, capture_output=True, env=dict(os.environ, LC_ALL="C", LANGUAGE="C"))
    return proc.stdout

for path in ["/proc/cmdline", "/proc/iomem", "/proc/meminfo", "/proc/mounts",
             "/sys/kernel/mm/numa/demotion_enabled"] + glob.glob("/proc/sys/kernel/numa_balancing*"):
    add_file(path)

memory = "/sys/devices/system/memory"
for name in ("block_size_bytes", "auto_online_blocks"):
    add_file(os.path.join(memory, name))
for block in glob.glob(memory + "/memory[0-9]*"):
    for attr in ("state", "valid_zones", "phys_index", "removable", "online", "phys_device"):
        add_file(os.path.join(block, attr))
    for link in glob.glob(block + "/node[0-9]*"):
        add_link(link)

node = "/sys/devices/system/node"
for name in ("possible", "online", "has_cpu", "has_memory", "has_normal_memory"):
    add_file(os.path.join(node, name))
for nodedir in glob.glob(node + "/node[0-9]*"):
    for attr in ("meminfo", "distance", "cpulist"):
        add_file(os.path.join(nodedir, attr))
    for link in glob.glob(nodedir + "/memory[0-9]*"):
        add_link(link)
    for attr in glob.glob(nodedir + "/access[0-9]/initiators/*_*"):
        add_file(attr)

for tier in glob.glob("/sys/devices/virtual/memory_tiering/memory_tier*"):
    add_file(os.path.join(tier, "nodelist"))

# /sys/bus/dax/devices/daxX.Y are links into the device tree: record them as directories.
for dev in glob.glob("/sys/bus/dax/devices/*"):
    for attr in ("resource", "size", "target_node", "numa_node", "align", "modalias"):
        add_file(os.path.join(dev, attr))
    for attr in glob.glob(dev + "/mapping[0-9]*/*"):
        add_file(attr)
    add_link(os.path.join(dev, "driver"))

# The CXL bus's device links (root0, port1, mem0, decoder0.0, region0, ...): their presence is what
# says a host has CXL memory to list.
for dev in glob.glob("/sys/bus/cxl/devices/*"):
    add_link(dev)

add_bytes("ndctl-list.json", run(["ndctl", "list", "-RNDi"]))
if os.path.exists("/sys/bus/cxl/devices/root0"):
    add_bytes("cxl-list.json", run(["cxl", "list", "-vvv"]))
add_bytes("daxctl-list.json", run(["daxctl", "list"]))
add_bytes("daxctl-list-M.json", run(["daxctl", "list", "-M"]))
meta = {
    "kernel": os.uname().release,
    "ndctl_version": run(["ndctl", "--version"]).decode().strip(),
    "daxctl_version": run(["daxctl", "--version"]).decode().strip(),
}
add_bytes("meta-guest.json", json.dumps(meta).encode())
out.close()
'''


def labctl(*args, check=True):
    return subprocess.run(LABCTL + list(args), check=check, capture_output=True, text=True)


def ssh_argv(name):
    inst = json.loads(labctl("info", name).stdout)
    return ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-i", inst["identity_file"], "-p", str(inst["port"]), "root@127.0.0.1"]


class Capture:
    def __init__(self, name, release, flavour):
        self.name, self.release, self.flavour = name, release, flavour
        self.ssh = ssh_argv(name)
        self.pending = []

    def run(self, shell, check=True):
        """Run a state-changing command in the guest and remember it for the next fixture."""
        proc = subprocess.run(self.ssh + [shell], capture_output=True, text=True, check=False)
        self.pending.append({"command": shell, "rc": proc.returncode,
                             "stdout": proc.stdout, "stderr": proc.stderr})
        print("  $ %s -> rc %d %s" % (shell, proc.returncode, proc.stderr.strip()[:200]), file=sys.stderr)
        if check and proc.returncode != 0:
            raise RuntimeError("guest command failed: %s\n%s" % (shell, proc.stderr))
        return proc

    def query(self, shell):
        return subprocess.run(self.ssh + [shell], capture_output=True, text=True, check=True).stdout

    def record(self, state):
        dest = os.path.join(FIXTURES, "%s-%s-%s" % (self.release, self.flavour, state))
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        proc = subprocess.run(self.ssh + ["python3 -"], input=COLLECTOR.encode(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError("collector failed: %s" % proc.stderr.decode(errors="replace"))
        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r|") as archive:
            for member in archive:
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise RuntimeError("unexpected path in collector output: %s" % member.name)
                target = os.path.join(dest, member.name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if member.issym():
                    os.symlink(member.linkname, target)
                else:
                    with open(target, "wb") as handle:
                        handle.write(archive.extractfile(member).read())
        meta_guest = os.path.join(dest, "meta-guest.json")
        with open(meta_guest) as handle:
            meta = json.load(handle)
        os.remove(meta_guest)
        meta.update(release=self.release, flavour=self.flavour, state=state)
        with open(os.path.join(dest, "meta.json"), "w") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.write("\n")
        with open(os.path.join(dest, "commands.json"), "w") as handle:
            json.dump(self.pending, handle, indent=2)
            handle.write("\n")
        self.pending = []
        # Symlinks stay out of git (ansible-test sanity rejects them): a manifest records them and
        # the unit tests recreate them (tests/unit/fixtures/symlinks.py).
        subprocess.run([sys.executable, os.path.join(FIXTURES, "symlinks.py"), "record", dest], check=True)
        subprocess.run([sys.executable, os.path.join(FIXTURES, "symlinks.py"), "restore", dest], check=True)
        print("recorded %s" % os.path.relpath(dest, REPO), file=sys.stderr)


def walk_states(cap):
    """The provisioning path, one fixture per state."""
    namespace = "namespace0.0"
    cap.record("raw")
    cap.run("ndctl create-namespace -fe %s -m fsdax" % namespace)
    cap.record("fsdax")
    cap.run("mkfs.ext4 -q -F -b 4096 /dev/pmem0 && mkdir -p /mnt/pmem && mount -o dax /dev/pmem0 /mnt/pmem")
    cap.record("fsdax-mounted")
    cap.run("umount /mnt/pmem")
    cap.run("ndctl create-namespace -fe %s -m devdax" % namespace)
    cap.record("devdax")
    auto = cap.query("cat /sys/devices/system/memory/auto_online_blocks").strip()
    if auto != "offline":
        # trixie: the kernel auto-onlines hotplugged memory and daxctl refuses (LAB-NOTES).
        refused = cap.run("daxctl reconfigure-device -m system-ram dax0.0", check=False)
        cap.record("devdax-autoonline-refused" if refused.returncode else "system-ram-autoonline")
        if refused.returncode == 0:
            return
        cap.run("echo offline > /sys/devices/system/memory/auto_online_blocks")
    cap.run("daxctl reconfigure-device -m system-ram --no-online dax0.0")
    cap.record("system-ram-offline")
    cap.run("daxctl online-memory --movable dax0.0")
    cap.record("system-ram-movable")
    cap.run("daxctl offline-memory dax0.0")
    cap.run("daxctl online-memory --no-movable dax0.0")
    cap.record("system-ram-normal")
    if auto != "offline":
        cap.run("echo %s > /sys/devices/system/memory/auto_online_blocks" % auto)


def walk_cxl_states(cap):
    """A volatile CXL type-3 device: no region, a RAM region the kernel onlines by itself (Normal zone,
    trixie), the same offline, then online movable, then destroyed again."""
    cap.record("no-region")
    cap.run("cxl create-region -t ram -d decoder0.0 -m mem0 && udevadm settle")
    cap.record("region-online-normal")
    cap.run("daxctl offline-memory dax0.0")
    cap.record("region-offline")
    cap.run("daxctl online-memory --movable dax0.0")
    cap.record("region-movable")
    cap.run("daxctl offline-memory dax0.0 && cxl disable-region region0 && cxl destroy-region region0")
    cap.record("region-destroyed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="trixie", choices=("trixie", "bookworm"))
    parser.add_argument("--flavour", default="nvdimm", choices=("nvdimm", "legacy", "cxl"))
    parser.add_argument("--name", default="m1-cap")
    # legacy: 1G at 0x80000000 runs into the firmware-reserved top of low RAM on a 3G pc guest
    # (two regions, both disabled); 512M is what LAB-NOTES measured.
    parser.add_argument("--pmem-size", help="default 1G for nvdimm, 512M for legacy")
    parser.add_argument("--reuse", action="store_true", help="use the running guest NAME as it is")
    parser.add_argument("--keep", action="store_true", help="leave the guest running")
    args = parser.parse_args()
    if not args.reuse:
        size = args.pmem_size or ("512M" if args.flavour in ("legacy", "cxl") else "1G")
        up = labctl("up", args.name, "--release", args.release, "--flavour", args.flavour, "--pmem-size", size,
                    check=False)
        if up.returncode != 0:
            sys.exit("capture: guest did not boot:\n%s" % up.stderr)
    try:
        walk = walk_cxl_states if args.flavour == "cxl" else walk_states
        walk(Capture(args.name, args.release, args.flavour))
    finally:
        if not args.keep:
            labctl("down", args.name, check=False)


if __name__ == "__main__":
    main()
