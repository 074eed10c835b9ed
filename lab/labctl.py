"""labctl: the tiering.pmem QEMU lab.

Builds Debian guest images from Debian's packages (cached by a hash of their recipe), boots
guests with emulated persistent memory under QEMU, and stops them by their own pid file.

    labctl.py image [--release trixie]
    labctl.py up NAME [--release trixie] [--flavour nvdimm|two-socket|labelled|legacy|grub|plain|cxl] [--pmem-size 1G]
                      [--kernel DIR]   (a lab kernel from lab/kernel/build.sh instead of Debian's)
    labctl.py ssh NAME [COMMAND...]
    labctl.py down NAME... | --all
    labctl.py list

Everything listens on 127.0.0.1 only; the guests' user network is restricted (no outside access).
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
IMAGE_RECIPE_DIR = os.path.join(LAB_DIR, "image")
RELEASES = ("trixie", "bookworm")
FLAVOURS = ("nvdimm", "two-socket", "labelled", "legacy", "grub", "plain", "cxl")
# Two sockets, as operators' Optane hosts: nodes 0 and 1 with a CPU and DRAM each, an NVDIMM on
# CPU-less node 2 (near node 0) and one on node 3 (near node 1), odd sizes. "labelled" is the same
# machine with the NVDIMMs' label areas initialised (ndctl init-labels), so regions hold named
# namespaces in their free space as Optane App Direct regions do.
TWO_SOCKET_FLAVOURS = ("two-socket", "labelled")
TWO_SOCKET_PMEM_MIB = (1040, 784)
# (initiator, target) -> (latency ns, bandwidth): local DRAM, remote DRAM, near pmem, far pmem.
TWO_SOCKET_HMAT = {
    (0, 0): (10, "10G"), (0, 1): (20, "5G"), (0, 2): (100, "2G"), (0, 3): (200, "1G"),
    (1, 1): (10, "10G"), (1, 0): (20, "5G"), (1, 3): (100, "2G"), (1, 2): (200, "1G"),
}
TWO_SOCKET_SLIT = {(0, 1): 21, (0, 2): 17, (0, 3): 28, (1, 2): 28, (1, 3): 17, (2, 3): 28}
# "two-socket" (not "labelled") also has a tier between DRAM and PMEM, as a host with a CXL memory
# expander per socket: NVDIMMs on CPU-less nodes 4 (near node 0) and 5 (near node 1) whose HMAT
# numbers (3x DRAM's latency, half its bandwidth) put them in a memory tier of their own on 6.12
# (6.1 has no HMAT-based tiers: there all four are one lower tier). By SLIT node 0's PMEM (node 2)
# is nearer than its middle tier (17 against 20), so only the tiers' order sends DRAM's cold pages
# to node 4 rather than node 2.
MIDDLE_TIER_PMEM_MIB = (272, 272)
MIDDLE_TIER_HMAT = {(0, 4): (30, "5G"), (1, 5): (30, "5G"), (0, 5): (60, "3G"), (1, 4): (60, "3G")}
MIDDLE_TIER_SLIT = {(0, 4): 20, (1, 5): 20, (0, 5): 30, (1, 4): 30, (2, 4): 25, (3, 5): 25, (2, 5): 32,
                    (3, 4): 32, (4, 5): 30}
# CXL type-3 memory: volatile devices need QEMU >= 8, and the host's is 7.2. Debian trixie's QEMU 10
# runs from a chroot of its own (cached like the images, keyed by this recipe) in a private mount
# namespace, so the host's QEMU, which every other flavour uses, stays as it is. A chroot rather
# than bookworm-backports: backports would replace the host's QEMU for every flavour.
CXL_QEMU_PACKAGES = ("qemu-system-x86", "qemu-utils")
CXL_QEMU_SUITE = "trixie"
# One volatile CXL device behind one host bridge and root port, in a 4 GiB fixed memory window
# (the window must be at least the device, rounded up to 256 MiB). Small: TCG is slow on CXL memory.
CXL_DEVICE_MIB = 512
CXL_WINDOW = "4G"
# QEMU treats CXL memory as MMIO: device DMA into it goes through a bounce buffer, 4 KiB by default,
# and a virtio-blk request into a buffer on the CXL node hangs (LAB-NOTES). PCI devices must name
# pcie.0: left to choose, QEMU puts them on the pxb-cxl bus, which takes bridges only.
CXL_VIRTIO = "bus=pcie.0,disable-legacy=on,iommu_platform=on,x-max-bounce-buffer-size=16M"
# QEMU needs the NVDIMM size minus its label area aligned to 16 MiB (LAB-NOTES).
NVDIMM_LABEL_BYTES = 128 * 1024
MIB = 1024 * 1024
DEFAULT_BOOT_ATTEMPTS = 3
# TCG guests on this 2-core machine: a third one slows all of them until boots time out.
DEFAULT_MAX_GUESTS = 2
# oops=panic panic=5: multi-threaded TCG now and then trips an "Oops: int3" in the guest kernel
# (LAB-NOTES); the guest then reboots itself in 5 s instead of hanging with a dead kernel.
# The same words are in the GRUB flavour's lab/image/overlay/etc/default/grub.d/10-lab.cfg.
GUEST_KERNEL_ARGS = ("console=ttyS0,115200", "net.ifnames=0", "oops=panic", "panic=5")
# Guests are recreated with new host keys all the time and listen on 127.0.0.1 only. Keepalives:
# a guest rebooting under an open session leaves slirp's end of the TCP connection open forever.
SSH_COMMON_OPTIONS = ("-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null", "-o LogLevel=ERROR",
                      "-o ServerAliveInterval=5", "-o ServerAliveCountMax=6")


class LabError(Exception):
    pass


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tiering-pmem")


def instances_dir():
    return os.environ.get("LAB_INSTANCES_DIR") or os.path.join(cache_dir(), "instances")


def log(msg):
    print("labctl: %s" % msg, file=sys.stderr, flush=True)


def parse_size(text):
    """'512M', '1G', '1536M' or bytes -> bytes."""
    match = re.fullmatch(r"(\d+)([KMGT]?)i?B?", text.strip(), re.IGNORECASE)
    if not match:
        raise LabError("bad size %r: use a number with an optional K/M/G/T suffix, e.g. 512M or 1G" % text)
    number, unit = match.groups()
    return int(number) * 1024 ** " KMGT".index(unit.upper() or " ")


# ---------------------------------------------------------------- SSH key and images

def ensure_key():
    key = os.path.join(cache_dir(), "key", "id_ed25519")
    if not os.path.exists(key):
        os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tiering-pmem-lab",
                        "-f", key], check=True)
    return key


def recipe_hash(release, public_key):
    digest = hashlib.sha256()
    digest.update(release.encode())
    digest.update(public_key.encode())
    for top, dirs, files in os.walk(IMAGE_RECIPE_DIR):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            digest.update(os.path.relpath(path, IMAGE_RECIPE_DIR).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:12]


def ensure_image(release):
    if release not in RELEASES:
        raise LabError("unknown release %r: choose one of %s" % (release, ", ".join(RELEASES)))
    key = ensure_key()
    with open(key + ".pub") as handle:
        public_key = handle.read()
    images = os.path.join(cache_dir(), "images")
    os.makedirs(images, exist_ok=True)
    image = os.path.join(images, "%s-%s" % (release, recipe_hash(release, public_key)))

    def build():
        subprocess.run(["bash", os.path.join(IMAGE_RECIPE_DIR, "build.sh"), release, image, key + ".pub"],
                       check=True, stdout=sys.stderr)
        for entry in os.listdir(images):
            stale = os.path.join(images, entry)
            if entry.startswith(release + "-") and stale != image and os.path.isdir(stale):
                shutil.rmtree(stale, ignore_errors=True)
                log("removed stale image %s" % stale)
    return built_once(image, "manifest.env", build, "image-build %s" % release)


def built_once(path, marker, build, phase):
    """``path``, built by ``build()`` unless ``path/marker`` says it was (one builder at a time: a lock)."""
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(path, marker)):
            log("building %s (recipe changed or cache empty): %s" % (phase, path))
            started = time.monotonic()
            build()
            log("phase %s: %.0f s" % (phase, time.monotonic() - started))
    return path


def ensure_cxl_qemu():
    """The root of a Debian trixie chroot with QEMU 10 in it (built once with mmdebstrap, then cached)."""
    digest = hashlib.sha256(("%s %s" % (CXL_QEMU_SUITE, " ".join(CXL_QEMU_PACKAGES))).encode()).hexdigest()[:12]
    root = os.path.join(cache_dir(), "qemu-%s-%s" % (CXL_QEMU_SUITE, digest))
    os.makedirs(cache_dir(), exist_ok=True)

    def build():
        partial = root + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(["mmdebstrap", "--mode=root", "--variant=apt", "--quiet",
                        "--include=" + ",".join(CXL_QEMU_PACKAGES), CXL_QEMU_SUITE, partial],
                       check=True, stdout=sys.stderr)
        os.rename(partial, root)
    return built_once(root, "usr/bin/qemu-system-x86_64", build, "qemu-chroot %s" % CXL_QEMU_SUITE)


def in_cxl_chroot(argv):
    """``argv`` run by the chroot's QEMU: a private mount namespace sees the lab cache at the same path."""
    root = ensure_cxl_qemu()
    cache = cache_dir()
    script = ('set -e; mount --make-rprivate /; mount --rbind /dev "$1/dev"; mount -t proc proc "$1/proc"; '
              'mkdir -p "$1$2"; mount --bind "$2" "$1$2"; root=$1; shift 2; exec chroot "$root" "$@"')
    return ["unshare", "--mount", "--", "sh", "-c", script, "cxl-qemu", root, cache] + argv


def cxl_options(mem_mib, device_mib):
    """(machine, options, kernel args) of the cxl flavour: DRAM on node 0, one volatile CXL type-3 device."""
    return "q35,cxl=on", [
        "-m", "%dM,slots=4,maxmem=%dM" % (mem_mib, mem_mib + 4096),
        "-object", "memory-backend-ram,id=cxlvmem0,share=on,size=%dM" % device_mib,
        "-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1",
        "-device", "cxl-rp,port=0,bus=cxl.1,id=cxl_rp0,chassis=0,slot=2",
        "-device", "cxl-type3,bus=cxl_rp0,volatile-memdev=cxlvmem0,id=cxl-vmem0,sn=0x1",
        "-M", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=%s" % CXL_WINDOW,
    ], []


# ---------------------------------------------------------------- lab kernels (lab/kernel/build.sh)

def kernel_release(kernel_dir):
    """The release string (uname -r) of DIR/bzImage, read from its x86 boot protocol header."""
    path = os.path.join(kernel_dir, "bzImage")
    try:
        with open(path, "rb") as handle:
            image = handle.read(64 * 1024)
    except OSError as exc:
        raise LabError("--kernel %s: no readable bzImage there (%s); build one with lab/kernel/build.sh"
                       % (kernel_dir, exc.strerror))
    # 0x202: "HdrS" magic; 0x20e: offset of the version string, relative to 0x200.
    if image[0x202:0x206] != b"HdrS":
        raise LabError("--kernel %s: %s is not an x86 bzImage (no HdrS boot header)" % (kernel_dir, path))
    start = int.from_bytes(image[0x20e:0x210], "little") + 0x200
    release = image[start:image.find(b"\0", start)].decode(errors="replace").split(" ")[0]
    if not release:
        raise LabError("--kernel %s: no version string in %s" % (kernel_dir, path))
    return release


def install_builtin_module_list(inst):
    """Let the guest's modprobe see the built-in drivers (a MODULES=n lab kernel has no module tree).

    daxctl asks kmod for dax_pmem/kmem and fails with "insert failure: -2" unless
    /lib/modules/RELEASE/modules.builtin{,.modinfo} exist and depmod indexed them (LAB-NOTES).
    """
    moddir = "/lib/modules/%s" % inst["kernel_release"]
    try:
        for name in ("modules.builtin", "modules.builtin.modinfo"):
            with open(os.path.join(inst["kernel"], name), "rb") as handle:
                subprocess.run(ssh_argv(inst, "mkdir -p %s && cat > %s/%s" % (moddir, moddir, name)),
                               stdin=handle, check=True, timeout=120)
        # modules-load.d (dax_pmem, kmem) failed before the list existed: run it again so no unit stays failed.
        # An empty modules.order: there are no loadable modules, and depmod warns without one.
        subprocess.run(ssh_argv(inst, "touch %s/modules.order && depmod %s && systemctl restart "
                                "systemd-modules-load.service" % (moddir, inst["kernel_release"])),
                       stdin=subprocess.DEVNULL, check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError("installing %s/modules.builtin{,.modinfo} into %s:%s failed: %s"
                       % (inst["kernel"], inst["name"], moddir, exc))


def init_labels(inst):
    """Initialise every NVDIMM's label area, so its region holds named namespaces in free space."""
    script = ("set -e; ndctl disable-region all; ndctl init-labels -f all; ndctl enable-region all; "
              "ndctl list -R")
    probe = subprocess.run(ssh_argv(inst, script), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=300, check=False)
    if probe.returncode != 0:
        raise LabError("initialising the label areas of %s failed (rc %d): %s"
                       % (inst["name"], probe.returncode, (probe.stderr or probe.stdout).strip()[-2000:]))
    log("%s: NVDIMM label areas initialised" % inst["name"])


# ---------------------------------------------------------------- QEMU command line

def running_guests(exclude):
    root = instances_dir()
    names = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if name == exclude or not os.path.exists(os.path.join(root, name, "instance.json")):
            continue
        try:
            if qemu_pid(load_instance(name)):
                names.append(name)
        except LabError:
            continue
    return names


class guest_slot:
    """Hold the lab's boot lock while a guest's QEMU starts, once fewer than LAB_MAX_GUESTS run.

    Two `up`s side by side (make test's two lanes) must neither pick the same free port (QEMU binds it
    while this lock is held) nor start a third guest: a caller waits here, up to LAB_SLOT_TIMEOUT s.
    """

    def __init__(self, name):
        self.name = name
        self.lock = None

    def __enter__(self):
        limit = int(os.environ.get("LAB_MAX_GUESTS", DEFAULT_MAX_GUESTS))
        deadline = time.monotonic() + float(os.environ.get("LAB_SLOT_TIMEOUT", "3600"))
        os.makedirs(instances_dir(), exist_ok=True)
        waiting_since = None
        while True:
            self.lock = open(os.path.join(instances_dir(), ".boot.lock"), "w")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            running = running_guests(self.name)
            if len(running) < limit:
                if waiting_since is not None:
                    log("%s: a guest slot is free after %.0f s" % (self.name, time.monotonic() - waiting_since))
                return self
            self.lock.close()
            if waiting_since is None:
                waiting_since = time.monotonic()
                log("%s: waiting for a guest slot (LAB_MAX_GUESTS=%d; running: %s)"
                    % (self.name, limit, ", ".join(running)))
            if time.monotonic() > deadline:
                raise LabError("%s: no guest slot: %s still running (LAB_MAX_GUESTS=%d); stop one with labctl.py down NAME"
                               % (self.name, ", ".join(running), limit))
            time.sleep(5)

    def __exit__(self, *exc):
        self.lock.close()
        return False


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_socket_options(mem_mib, pmem_mib, middle_tier=False):
    if mem_mib % 2:
        raise LabError("two-socket guests split DRAM between two nodes: %d MiB is odd" % mem_mib)
    slit, hmat = dict(TWO_SOCKET_SLIT), dict(TWO_SOCKET_HMAT)
    nvdimms = [(size_mib, 2 + index) for index, size_mib in enumerate(pmem_mib)]  # (MiB, node)
    if middle_tier:
        slit.update(MIDDLE_TIER_SLIT)
        hmat.update(MIDDLE_TIER_HMAT)
        # Linux numbers memory-less proximity domains in the order SRAT names them, and QEMU names the
        # NVDIMMs there in its object tree's order, a hash of their ids: nvdimm0, nvdimm2, nvdimm1,
        # nvdimm3 (seen in a guest; created in node order, node 3 became Linux node 4). Created in
        # this order, each guest node number is the one given here.
        nvdimms = [nvdimms[0], (MIDDLE_TIER_PMEM_MIB[0], 4), nvdimms[1], (MIDDLE_TIER_PMEM_MIB[1], 5)]
    maxmem_mib = mem_mib + sum(pmem_mib) + (sum(MIDDLE_TIER_PMEM_MIB) if middle_tier else 0) + 1024
    options = ["-m", "%dM,slots=4,maxmem=%dM" % (mem_mib, maxmem_mib)]
    for node in (0, 1):
        options += ["-object", "memory-backend-ram,id=dram%d,size=%dM" % (node, mem_mib // 2),
                    "-numa", "node,nodeid=%d,cpus=%d,memdev=dram%d,initiator=%d" % (node, node, node, node)]
    options += ["-numa", "node,nodeid=2,initiator=0", "-numa", "node,nodeid=3,initiator=1"]
    if middle_tier:
        options += ["-numa", "node,nodeid=4,initiator=0", "-numa", "node,nodeid=5,initiator=1"]
    for (src, dst), distance in sorted(slit.items()):
        options += ["-numa", "dist,src=%d,dst=%d,val=%d" % (src, dst, distance)]
    for (initiator, target), (latency, bandwidth) in sorted(hmat.items()):
        options += ["-numa", "hmat-lb,initiator=%d,target=%d,hierarchy=memory,data-type=access-latency,latency=%d"
                    % (initiator, target, latency),
                    "-numa", "hmat-lb,initiator=%d,target=%d,hierarchy=memory,data-type=access-bandwidth,"
                    "bandwidth=%s" % (initiator, target, bandwidth)]
    for index, (size_mib, node) in enumerate(nvdimms):
        if size_mib % 16:
            raise LabError("nvdimm size %d MiB is not a multiple of 16 MiB" % size_mib)
        options += ["-object", "memory-backend-ram,id=nvmem%d,size=%d" % (index, size_mib * MIB + NVDIMM_LABEL_BYTES),
                    "-device", "nvdimm,id=nvdimm%d,memdev=nvmem%d,label-size=%d,node=%d"
                    % (index, index, NVDIMM_LABEL_BYTES, node)]
    return "pc,nvdimm=on,hmat=on", options, []


def pmem_options(flavour, mem_bytes, pmem_bytes, memmap_offset, cpus=2):
    """Return (machine, memory/NUMA/device options, extra kernel args) of a flavour."""
    mem_mib = mem_bytes // MIB
    node0_cpus = "0" if cpus == 1 else "0-%d" % (cpus - 1)
    if flavour in TWO_SOCKET_FLAVOURS:
        return two_socket_options(mem_mib, TWO_SOCKET_PMEM_MIB, middle_tier=flavour == "two-socket")
    if flavour == "nvdimm":
        if pmem_bytes % (16 * MIB):
            raise LabError("nvdimm pmem size %d MiB is not a multiple of 16 MiB" % (pmem_bytes // MIB))
        backing = pmem_bytes + NVDIMM_LABEL_BYTES
        maxmem_mib = mem_mib + pmem_bytes // MIB + 1024
        options = [
            "-m", "%dM,slots=4,maxmem=%dM" % (mem_mib, maxmem_mib),
            "-object", "memory-backend-ram,id=dram0,size=%dM" % mem_mib,
            "-numa", "node,nodeid=0,cpus=%s,memdev=dram0,initiator=0" % node0_cpus,
            "-numa", "node,nodeid=1,initiator=0",
            # HMAT: the CPU-less pmem node is 10x slower and 5x narrower, as Optane is.
            "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-latency,latency=10",
            "-numa", "hmat-lb,initiator=0,target=0,hierarchy=memory,data-type=access-bandwidth,bandwidth=10G",
            "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-latency,latency=100",
            "-numa", "hmat-lb,initiator=0,target=1,hierarchy=memory,data-type=access-bandwidth,bandwidth=2G",
            # memory-backend-ram: a shared file backend would write guest memory into the file.
            "-object", "memory-backend-ram,id=nvmem0,size=%d" % backing,
            "-device", "nvdimm,id=nvdimm0,memdev=nvmem0,label-size=%d,node=1" % NVDIMM_LABEL_BYTES,
        ]
        return "pc,nvdimm=on,hmat=on", options, []
    if flavour == "cxl":
        return cxl_options(mem_mib, pmem_bytes // MIB)
    if flavour == "legacy":
        if memmap_offset + pmem_bytes > mem_bytes:
            raise LabError("memmap range 0x%x+%d MiB does not fit in %d MiB of guest RAM"
                           % (memmap_offset, pmem_bytes // MIB, mem_mib))
        return "pc", ["-m", "%dM" % mem_mib], ["memmap=%dM!0x%x" % (pmem_bytes // MIB, memmap_offset)]
    return "pc", ["-m", "%dM" % mem_mib], []


def qemu_argv(inst, image):
    accel = os.environ.get("LAB_ACCEL", "tcg")
    cxl = inst["flavour"] == "cxl" and inst["pmem_device"]
    if accel == "kvm":
        accel_opts = ["-accel", "kvm", "-cpu", "host"]
    elif accel == "tcg":
        # hypervisor=off for CXL: with the CPUID hypervisor bit the kernel cannot commit a region
        # ("Failed to synchronize CPU cache state").
        accel_opts = ["-accel", "tcg,thread=%s" % os.environ.get("LAB_TCG_THREAD", "multi"),
                      "-cpu", "max,hypervisor=off" if cxl else "max"]
    else:
        raise LabError("LAB_ACCEL=%r: use tcg (default) or kvm" % accel)
    flavour = inst["flavour"] if inst["pmem_device"] else "plain"
    machine, mem_opts, kernel_args = pmem_options(
        flavour, inst["mem_bytes"], inst["pmem_bytes"], inst["memmap_offset"], inst["cpus"])
    d = inst["dir"]
    virtio_extra = "," + CXL_VIRTIO if cxl else ""
    argv = [
        "qemu-system-x86_64", "-name", "lab-" + inst["name"],
        "-machine", machine, *accel_opts, "-smp", str(inst["cpus"]), *mem_opts,
        "-nodefaults", "-display", "none", "-vga", "none",
        "-drive", "file=%s,if=none,id=disk0,format=qcow2,cache=unsafe" % os.path.join(d, "overlay.qcow2"),
        "-device", "virtio-blk-pci,drive=disk0" + virtio_extra,
        # restrict=on: the guest reaches nothing outside; only the forwarded SSH port comes in.
        "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22" % inst["port"],
        "-device", "virtio-net-pci,netdev=net0" + virtio_extra,
        "-device", "virtio-rng-pci" + virtio_extra,
        "-chardev", "socket,id=ser0,path=%s,server=on,wait=off,logfile=%s"
        % (os.path.join(d, "console.sock"), os.path.join(d, "serial.log")),
        "-serial", "chardev:ser0",
        "-monitor", "unix:%s,server=on,wait=off" % os.path.join(d, "monitor.sock"),
        "-pidfile", os.path.join(d, "qemu.pid"),
        # QEMU's CXL type-3 device keeps its decoder programming across a warm reset, and the guest's
        # cxl_mem then fails the endpoint's probe ("Range register decodes outside platform defined
        # CXL ranges"): a cxl guest's reboot makes QEMU exit and `labctl supervise` starts it again,
        # a cold boot as on a real host's platform reset.
        *(["-no-reboot"] if cxl else ["-daemonize"]),
    ]
    if inst["flavour"] != "grub":
        append = ["root=/dev/vda", "rw"] + list(GUEST_KERNEL_ARGS) + kernel_args
        if inst.get("kernel"):
            # A lab kernel has root's drivers built in: no initrd.
            argv += ["-kernel", os.path.join(inst["kernel"], "bzImage")]
        else:
            argv += ["-kernel", os.path.join(image, "vmlinuz"), "-initrd", os.path.join(image, "initrd.img")]
        argv += ["-append", " ".join(append + inst["append"])]
    return in_cxl_chroot(argv) if cxl else argv


# ---------------------------------------------------------------- instances

def instance_path(name):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", name):
        raise LabError("bad instance name %r: use letters, digits, '.', '_' or '-' (at most 41)" % name)
    return os.path.join(instances_dir(), name)


def load_instance(name):
    path = os.path.join(instance_path(name), "instance.json")
    if not os.path.exists(path):
        raise LabError("no lab instance named %r (see 'labctl.py list')" % name)
    with open(path) as handle:
        return json.load(handle)


def save_instance(inst):
    path = os.path.join(inst["dir"], "instance.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(inst, handle, indent=2)
    os.replace(path + ".tmp", path)


def ssh_argv(inst, command=None, connect_timeout=10):
    argv = ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=%d" % connect_timeout, "-o", "ServerAliveInterval=15",
            "-i", inst["identity_file"], "-p", str(inst["port"]), "%s@%s" % (inst["user"], inst["address"])]
    if command:
        # Like ssh itself: the words are joined and the remote shell parses them.
        argv.append(command if isinstance(command, str) else " ".join(command))
    return argv


def qemu_pid(inst):
    """The instance's QEMU pid, only if that process is still the QEMU we started."""
    try:
        with open(os.path.join(inst["dir"], "qemu.pid")) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if os.path.join(inst["dir"], "overlay.qcow2") in cmdline else None


def serial_tail(inst, lines=25):
    try:
        with open(os.path.join(inst["dir"], "serial.log"), errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no serial log)"


def wait_for_ssh(inst, deadline):
    while time.monotonic() < deadline:
        if qemu_pid(inst) is None:
            raise LabError("QEMU of %s exited during boot" % inst["name"])
        probe = subprocess.run(ssh_argv(inst, "cat /proc/sys/kernel/random/boot_id", connect_timeout=5),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                               check=False)
        if probe.returncode == 0 and probe.stdout.strip():
            return probe.stdout.strip()
        time.sleep(1)
    raise LabError("no SSH from %s within the boot deadline" % inst["name"])


def start_supervised(inst):
    """Start `labctl supervise NAME` (QEMU in the foreground, started again after each guest reboot)."""
    log_path = os.path.join(inst["dir"], "supervise.log")
    if os.path.exists(os.path.join(inst["dir"], "stop")):
        os.remove(os.path.join(inst["dir"], "stop"))  # left by a failed boot attempt's kill_qemu
    with open(log_path, "a") as out:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "supervise", inst["name"]],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 60
    while not qemu_pid(inst):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(log_path) as handle:
                raise LabError("QEMU refused to start %s: %s" % (inst["name"], handle.read().strip()[-2000:]))
        time.sleep(0.5)
    time.sleep(1)  # QEMU has bound its port once the pid file is there and a moment has passed


def cmd_supervise(args):
    """QEMU for a cxl guest, started again whenever it exits cleanly (a guest reboot, and also a
    poweroff: stop a cxl guest with `labctl down`), until `labctl down` leaves the stop file."""
    inst = load_instance(args.name)
    stop = os.path.join(inst["dir"], "stop")
    boots = 0
    while os.path.isdir(inst["dir"]) and not os.path.exists(stop):
        boots += 1
        print("%s: QEMU start %d" % (time.strftime("%H:%M:%S"), boots), flush=True)
        rc = subprocess.call(inst["argv"])
        print("%s: QEMU exited with %d (guest reboot or stop)" % (time.strftime("%H:%M:%S"), rc), flush=True)
        if rc != 0:
            break
        time.sleep(1)
    return 0


def kill_qemu(inst, grace=15):
    if os.path.isdir(inst["dir"]):
        # A supervised guest (cxl) must not be started again by its supervisor.
        with open(os.path.join(inst["dir"], "stop"), "w"):
            pass
    pid = qemu_pid(inst)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and qemu_pid(inst) == pid:
        time.sleep(0.2)
    if qemu_pid(inst) == pid:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    return True


def cmd_up(args):
    kernel = os.path.abspath(args.kernel) if args.kernel else None
    if kernel and args.flavour == "grub":
        raise LabError("--kernel cannot be used with --flavour grub: that guest boots its own kernel through GRUB")
    release = kernel_release(kernel) if kernel else None
    image = ensure_image(args.release)
    d = instance_path(args.name)
    if os.path.exists(os.path.join(d, "instance.json")):
        existing = load_instance(args.name)
        if qemu_pid(existing):
            raise LabError("instance %r is already running (labctl.py down %s)" % (args.name, args.name))
        shutil.rmtree(d)
    os.makedirs(d)
    mem = args.mem or ("2G" if args.flavour in ("nvdimm", "cxl") else "1536M" if args.flavour in TWO_SOCKET_FLAVOURS else "3G")
    # 512M at 2 GiB is what fits below the end of a 3 GiB pc guest's low RAM (0xbffdffff).
    pmem_size = args.pmem_size or ("1G" if args.flavour == "nvdimm" else
                                   "%dM" % CXL_DEVICE_MIB if args.flavour == "cxl" else "512M")
    no_pmem = args.no_pmem or os.environ.get("LAB_NO_PMEM") == "1"
    inst = {
        "name": args.name, "dir": d, "release": args.release, "flavour": args.flavour,
        "image": image, "mem_bytes": parse_size(mem), "pmem_bytes": parse_size(pmem_size),
        "memmap_offset": int(args.memmap_offset, 0), "cpus": args.cpus, "append": args.append or [],
        "pmem_device": not no_pmem, "address": "127.0.0.1", "user": "root",
        "identity_file": ensure_key(), "port": None, "kernel": kernel, "kernel_release": release,
    }
    base = os.path.join(image, "disk-grub.img" if args.flavour == "grub" else "rootfs.img")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
                    os.path.join(d, "overlay.qcow2")], check=True)
    if no_pmem:
        log("%s: booting WITHOUT its pmem device (LAB_NO_PMEM / --no-pmem)" % args.name)
    attempts = int(os.environ.get("LAB_BOOT_ATTEMPTS", DEFAULT_BOOT_ATTEMPTS))
    boot_timeout = float(os.environ.get("LAB_BOOT_TIMEOUT", "300"))
    for attempt in range(1, attempts + 1):
        with guest_slot(args.name):
            inst["port"] = free_port()
            inst["argv"] = qemu_argv(inst, image)
            save_instance(inst)
            started = time.monotonic()
            if inst["flavour"] == "cxl":
                start_supervised(inst)
            else:
                try:
                    subprocess.run(inst["argv"], check=True, capture_output=True, text=True)
                except subprocess.CalledProcessError as exc:
                    raise LabError("QEMU refused to start %s: %s" % (args.name, exc.stderr.strip()))
        try:
            inst["boot_id"] = wait_for_ssh(inst, started + boot_timeout)
        except LabError as exc:
            log("boot attempt %d/%d of %s failed: %s\n--- serial log tail ---\n%s"
                % (attempt, attempts, args.name, exc, serial_tail(inst)))
            kill_qemu(inst)
            if os.path.exists(os.path.join(d, "serial.log")):
                os.replace(os.path.join(d, "serial.log"), os.path.join(d, "serial.attempt%d.log" % attempt))
            continue
        inst["boot_seconds"] = round(time.monotonic() - started, 1)
        inst["boot_attempts"] = attempt
        save_instance(inst)
        log("phase boot %s (%s, %s%s): %.1f s to SSH on 127.0.0.1:%s"
            % (args.name, args.release, args.flavour, ", kernel " + release if kernel else "",
               inst["boot_seconds"], inst["port"]))
        if kernel:
            install_builtin_module_list(inst)
        if args.flavour == "labelled" and inst["pmem_device"]:
            init_labels(inst)
        reported = ("name", "address", "port", "user", "identity_file", "release", "flavour", "boot_seconds", "dir",
                    "kernel", "kernel_release")
        print(json.dumps({k: inst[k] for k in reported}))
        return 0
    raise LabError("%s did not boot in %d attempts; serial logs in %s" % (args.name, attempts, d))


def cmd_down(args):
    root = instances_dir()
    names = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))) \
        if args.all and os.path.isdir(root) else args.names
    for name in names:
        d = instance_path(name)
        if not os.path.exists(os.path.join(d, "instance.json")):
            log("%s: not present" % name)
            shutil.rmtree(d, ignore_errors=True)
            continue
        inst = load_instance(name)
        stopped = kill_qemu(inst)
        if args.keep_dir:
            log("%s: %s; kept %s" % (name, "stopped" if stopped else "was not running", d))
        else:
            shutil.rmtree(d, ignore_errors=True)
            log("%s: %s and removed" % (name, "stopped" if stopped else "was not running"))
    return 0


def cmd_ssh(args):
    inst = load_instance(args.name)
    argv = ssh_argv(inst, args.command or None)
    if not args.command:
        argv.insert(1, "-t")
    return subprocess.call(argv)


def cmd_list(_args):
    root = instances_dir()
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            inst = load_instance(name)
        except LabError:
            continue
        state = "running" if qemu_pid(inst) else "stopped"
        print("%-20s %-8s %-9s %-7s 127.0.0.1:%s" % (name, inst["release"], inst["flavour"], state, inst["port"]))
    return 0


def cmd_image(args):
    print(ensure_image(args.release))
    return 0


def cmd_inventory(args):
    """An Ansible inventory (YAML, which is JSON) for running instances, in group `lab`."""
    hosts = {}
    for name in args.names:
        inst = load_instance(name)
        hosts[name] = {
            "ansible_host": inst["address"], "ansible_port": inst["port"], "ansible_user": inst["user"],
            "ansible_ssh_private_key_file": inst["identity_file"],
            "ansible_ssh_common_args": " ".join(SSH_COMMON_OPTIONS),
            "lab_release": inst["release"], "lab_flavour": inst["flavour"],
        }
    print(json.dumps({"lab": {"hosts": hosts}}, indent=2))
    return 0


def cmd_info(args):
    inst = load_instance(args.name)
    inst["running"] = qemu_pid(inst) is not None
    print(json.dumps(inst, indent=2))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="labctl.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("image", help="build (or reuse) the cached guest image")
    p.add_argument("--release", default="trixie", choices=RELEASES)
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("up", help="boot a guest and wait for SSH; prints its connection as JSON")
    p.add_argument("name")
    p.add_argument("--release", default="trixie", choices=RELEASES)
    p.add_argument("--flavour", default="nvdimm", choices=FLAVOURS)
    p.add_argument("--pmem-size", help="emulated pmem size (default 1G for nvdimm, 512M for legacy)")
    p.add_argument("--mem", help="guest DRAM (default 2G for nvdimm, 3G otherwise)")
    p.add_argument("--memmap-offset", default="0x80000000", help="legacy flavour: memmap= offset")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--append", action="append", help="extra kernel argument (-kernel flavours)")
    p.add_argument("--no-pmem", action="store_true", help="leave the pmem device off (negative tests)")
    p.add_argument("--kernel", metavar="DIR",
                   help="boot DIR/bzImage (from lab/kernel/build.sh) without initrd instead of Debian's kernel")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop guests by their pid file and remove their overlays")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--keep-dir", action="store_true", help="keep overlay and logs")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("supervise", help=argparse.SUPPRESS)
    p.add_argument("name")
    p.set_defaults(func=cmd_supervise)
    p = sub.add_parser("ssh", help="SSH into a guest")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_ssh)
    p = sub.add_parser("list", help="list lab instances")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("inventory", help="print an Ansible inventory (group 'lab') for instances")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_inventory)
    p = sub.add_parser("info", help="an instance's recorded details as JSON")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        log("error: %s" % exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
