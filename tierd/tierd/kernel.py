"""The one place that touches /proc, /sys and the move_pages(2) system call.

Every path is resolved under ``root`` so unit tests point a Kernel at a tree of files recorded
in a lab guest (tests/unit/tierd/fixtures/...). System calls only run against the live root.
"""

import ctypes
import errno
import os
import platform
import struct
import sys
from array import array

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
NODE_DIR = "/sys/devices/system/node"
MEMORY_TIERING_DIR = "/sys/devices/virtual/memory_tiering"
DAMON_ADMIN = "/sys/kernel/mm/damon/admin"
PAGE_IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"
CGROUP2_ROOT = "/sys/fs/cgroup"
NUMA_BALANCING = "/proc/sys/kernel/numa_balancing"
# Present from Linux 6.1, with the memory-tiering mode (numa_balancing=2) itself.
PROMOTE_RATE_LIMIT = "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps"
DEMOTION_ENABLED = "/sys/kernel/mm/numa/demotion_enabled"
# The multi-gen LRU (Linux 6.1+): its switch, and the debugfs file that reports each memcg's
# generations per node and takes aging (+) and eviction (-) commands (admin-guide/mm/multigen_lru).
LRU_GEN_ENABLED = "/sys/kernel/mm/lru_gen/enabled"
LRU_GEN_DEBUG = "/sys/kernel/debug/lru_gen"

KPAGEFLAGS = "/proc/kpageflags"
KPF_THP = 1 << 22

PAGEMAP_PRESENT = 1 << 63
PAGEMAP_SOFT_DIRTY = 1 << 55
PAGEMAP_PFN_MASK = (1 << 55) - 1

MPOL_MF_MOVE = 1 << 1
# move_pages(2) numbers: x86_64 has its own table, arm64/riscv64 use the generic one.
MOVE_PAGES_SYSCALL = {"x86_64": 279, "aarch64": 239, "riscv64": 239, "ppc64le": 301, "s390x": 310}


class KernelError(Exception):
    """A kernel interface that tierd needs is missing or refused an operation."""


class Kernel:
    def __init__(self, root="/"):
        self.root = root
        self.live = os.path.realpath(root) == "/"
        self._syscall = None

    # --- plain files -------------------------------------------------------------------------
    def path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def exists(self, path):
        return os.path.exists(self.path(path))

    def read_text(self, path, default=None):
        """Stripped content; ``default`` (when given) if the file is gone or unreadable."""
        try:
            with open(self.path(path)) as handle:
                return handle.read().strip()
        except OSError:
            if default is not None:
                return default
            raise

    def write_text(self, path, value):
        with open(self.path(path), "w") as handle:
            handle.write(str(value))

    def numbered_rows(self, directory, names):
        """[(int, ...)] from the files ``names`` of each numbered subdirectory (DAMON's tried_regions).

        A thousand regions are four thousand small files every interval, so they are read with
        plain os.open/os.read (a quarter of the CPU of open()); rows that vanish mid-read are skipped.
        """
        base = self.path(directory)
        rows = []
        for entry in sorted((e for e in self.listdir(directory) if e.isdigit()), key=int):
            row = []
            try:
                for name in names:
                    fd = os.open("%s/%s/%s" % (base, entry, name), os.O_RDONLY)
                    try:
                        row.append(int(os.read(fd, 64)))
                    finally:
                        os.close(fd)
            except (OSError, ValueError):
                continue
            rows.append(tuple(row))
        return rows

    def listdir(self, path):
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    # --- processes -----------------------------------------------------------------------------
    def pids(self):
        return sorted(int(name) for name in self.listdir("/proc") if name.isdigit())

    def proc_text(self, pid, name):
        """A /proc/PID file, or None when the process vanished or hides it (handled quietly)."""
        try:
            with open(self.path("/proc/%d/%s" % (pid, name)), "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return None

    def cgroup_procs(self, cgroup_path):
        """PIDs in a cgroup v2 directory and all its descendants."""
        base = self.path(os.path.join(CGROUP2_ROOT, cgroup_path.lstrip("/")))
        pids = set()
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" not in files:
                continue
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as handle:
                    pids.update(int(line) for line in handle if line.strip())
            except OSError:
                continue
        return sorted(pids)

    def _cgroup_file(self, cgroup_path, name):
        return os.path.join(CGROUP2_ROOT, cgroup_path.lstrip("/"), name)

    def cgroup_can_reclaim(self, cgroup_path):
        """True when the cgroup has memory.reclaim (Linux 5.19+, memory controller on for it)."""
        return self.exists(self._cgroup_file(cgroup_path, "memory.reclaim"))

    def cgroup_demoted_pages(self, cgroup_path):
        """Pages the kernel demoted from the cgroup (memory.stat pgdemote_*, itself and below), or None."""
        text = self.read_text(self._cgroup_file(cgroup_path, "memory.stat"), default="")
        counts = [int(value) for key, _sep, value in (line.partition(" ") for line in text.splitlines())
                  if key.startswith("pgdemote_") and value.strip().isdigit()]
        return sum(counts) if counts else None

    def cgroup_reclaim(self, cgroup_path, nbytes):
        """Write ``nbytes`` to the cgroup's memory.reclaim: True when the kernel reclaimed that much,
        False when it could not (EAGAIN); other errors raise KernelError."""
        try:
            self.write_text(self._cgroup_file(cgroup_path, "memory.reclaim"), "%d" % nbytes)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return False
            raise KernelError("memory.reclaim of %s: %s" % (cgroup_path, exc.strerror or exc))
        return True

    def lru_gen_available(self):
        """True when the multi-gen LRU is on and its debugfs file is there (debugfs mounted)."""
        value = self.read_text(LRU_GEN_ENABLED, default="0")
        try:
            enabled = int(value, 16) & 1
        except ValueError:
            enabled = 0
        return bool(enabled) and self.exists(LRU_GEN_DEBUG)

    def lru_gen_table(self, wanted=None):
        """{memcg path: (memcg id, {node: [(generation, age ms, anon pages, file pages)]})} (parse_lru_gen),
        of the ``wanted`` memcg paths only when given."""
        return parse_lru_gen(self.read_text(LRU_GEN_DEBUG, default=""), wanted)

    def lru_gen_command(self, command):
        """Write one aging or eviction command; KernelError when the kernel refuses it."""
        try:
            self.write_text(LRU_GEN_DEBUG, command)
        except OSError as exc:
            raise KernelError("lru_gen %r: %s" % (command, exc.strerror or exc))

    def numa_maps(self, pid, starts=None):
        """Parsed /proc/PID/numa_maps (per-node page counts per mapping, counted by the kernel), or None;
        of the mappings starting at ``starts`` only when given (parse_numa_maps)."""
        text = self.proc_text(pid, "numa_maps")
        return None if text is None else parse_numa_maps(text, starts)

    def read_pagemap(self, pid, start, npages):
        """``npages`` 64-bit pagemap entries from virtual address ``start``; None if gone."""
        try:
            with open(self.path("/proc/%d/pagemap" % pid), "rb") as handle:
                handle.seek((start // PAGE_SIZE) * 8)
                data = handle.read(npages * 8)
        except OSError:
            return None
        # array('Q'): 8 bytes per page, where a tuple of ints costs ~40 (pagemap entries with
        # the present bit set are big ints, one object each).
        entries = array("Q")
        entries.frombytes(data[: len(data) // 8 * 8])
        if sys.byteorder != "little":
            entries.byteswap()
        return entries

    def clear_soft_dirty(self, pid):
        try:
            self.write_text("/proc/%d/clear_refs" % pid, "4")
            return True
        except OSError:
            return False

    # --- page_idle -----------------------------------------------------------------------------
    def page_idle_available(self):
        return self.exists(PAGE_IDLE_BITMAP)

    def _read_u64s(self, path, indexes):
        """{index: the 64-bit little-endian word at index * 8} of a /proc or /sys table file."""
        words = {}
        with open(self.path(path), "rb") as handle:
            for index in indexes:
                handle.seek(index * 8)
                data = handle.read(8)
                if len(data) == 8:
                    words[index] = struct.unpack("<Q", data)[0]
        return words

    def read_idle_words(self, word_indexes):
        """{word index: 64-bit idle word} for the bitmap words covering some PFNs."""
        return self._read_u64s(PAGE_IDLE_BITMAP, word_indexes)

    def write_idle_words(self, words):
        """Mark pages idle: each 8-byte write sets the idle flag of the PFNs whose bits are 1."""
        with open(self.path(PAGE_IDLE_BITMAP), "r+b", buffering=0) as handle:
            for index, bits in sorted(words.items()):
                handle.seek(index * 8)
                try:
                    handle.write(struct.pack("<Q", bits))
                except OSError:
                    continue

    def read_kpageflags(self, pfns):
        """{pfn: 64-bit page flags} from /proc/kpageflags; {} when it cannot be read (needs CAP_SYS_ADMIN)."""
        try:
            return self._read_u64s(KPAGEFLAGS, pfns)
        except OSError:
            return {}

    def thp_pages(self):
        """Pages per transparent huge page when THP may be used (not [never]), else 1."""
        enabled = self.read_text("/sys/kernel/mm/transparent_hugepage/enabled", default="[never]")
        if "[never]" in enabled:
            return 1
        size = self.read_text("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", default="2097152")
        return max(1, int(size) // PAGE_SIZE)

    # --- NUMA ------------------------------------------------------------------------------------
    def online_nodes(self):
        return parse_cpulist(self.read_text(NODE_DIR + "/online", default=""))

    def node_cpus(self, node):
        return parse_cpulist(self.read_text("%s/node%d/cpulist" % (NODE_DIR, node), default=""))

    def node_meminfo(self, node):
        """{'MemTotal': bytes, 'MemFree': bytes, ...} from nodeN/meminfo."""
        info = {}
        for line in self.read_text("%s/node%d/meminfo" % (NODE_DIR, node), default="").splitlines():
            parts = line.split()
            # "Node 1 MemTotal:  917504 kB"
            if len(parts) >= 4 and parts[0] == "Node":
                value = int(parts[3])
                if len(parts) >= 5 and parts[4] == "kB":
                    value *= 1024
                info[parts[2].rstrip(":")] = value
        return info

    def node_distances(self, node):
        """[distance to node 0, to node 1, ...] from nodeN/distance (SLIT, or HMAT-derived), [] if absent."""
        return [int(x) for x in self.read_text("%s/node%d/distance" % (NODE_DIR, node), default="").split()]

    def task_cpus(self, pid):
        """The CPU each thread of ``pid`` last ran on (field 39 of /proc/PID/task/TID/stat); [] if gone."""
        cpus = []
        for tid in self.listdir("/proc/%d/task" % pid):
            text = self.read_text("/proc/%d/task/%s/stat" % (pid, tid), default="")
            # The command name (field 2) may hold spaces and parentheses: count fields after its ")".
            fields = text[text.rfind(")") + 2:].split()
            if len(fields) > 36 and fields[36].isdigit():
                cpus.append(int(fields[36]))
        return cpus

    def task_mems_allowed(self, pid):
        """The nodes ``pid`` may have memory on (its cpuset: Mems_allowed_list), or None if unknown."""
        for line in (self.proc_text(pid, "status") or "").splitlines():
            if line.startswith("Mems_allowed_list:"):
                return parse_cpulist(line.split(":", 1)[1].strip())
        return None

    def memory_tiers(self):
        """{tier number: [nodes]} from memory_tiering; lower numbers are faster tiers."""
        tiers = {}
        for name in self.listdir(MEMORY_TIERING_DIR):
            if name.startswith("memory_tier") and name[len("memory_tier"):].isdigit():
                nodes = parse_cpulist(self.read_text("%s/%s/nodelist" % (MEMORY_TIERING_DIR, name), default=""))
                if nodes:
                    tiers[int(name[len("memory_tier"):])] = nodes
        return tiers

    def numa_balancing(self):
        """kernel.numa_balancing as an int (bit 1: classic, bit 2: memory tiering), or None without it."""
        value = self.read_text(NUMA_BALANCING, default="")
        return int(value) if value.isdigit() else None

    def memory_tiering_balancing_supported(self):
        """True when numa_balancing accepts 2: the memory-tiering mode came with its promote rate
        limit sysctl and the memory_tiering sysfs directory, so either tells without writing 2."""
        return self.numa_balancing() is not None and (self.exists(PROMOTE_RATE_LIMIT)
                                                      or self.exists(MEMORY_TIERING_DIR))

    def demotion_enabled(self):
        """/sys/kernel/mm/numa/demotion_enabled as a bool, or None without it."""
        value = self.read_text(DEMOTION_ENABLED, default="").lower()
        if value in ("true", "1", "y"):
            return True
        if value in ("false", "0", "n"):
            return False
        return None

    def process_start_time(self, pid):
        """Field 22 of /proc/PID/stat (clock ticks since boot), or None when the process is gone:
        with the PID it names one process, so a reused PID is told apart."""
        text = self.proc_text(pid, "stat")
        if text is None or ")" not in text:
            return None
        fields = text.rsplit(")", 1)[1].split()
        return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None

    def move_pages(self, pid, addresses, nodes=None):
        """move_pages(2): with ``nodes`` None, only query; returns the status list (node or -errno).

        Raises KernelError for whole-call failures other than a vanished process (ESRCH → None).
        """
        if not self.live:
            raise KernelError("move_pages needs the live root, not %s" % self.root)
        count = len(addresses)
        if count == 0:
            return []
        pages = (ctypes.c_void_p * count)(*addresses)
        status = (ctypes.c_int * count)()
        if nodes is None:
            node_array = None
            flags = 0
        else:
            node_array = (ctypes.c_int * count)(*nodes)
            flags = MPOL_MF_MOVE
        result = self._move_pages_call()(pid, ctypes.c_ulong(count), pages, node_array, status, flags)
        if result < 0:
            err = ctypes.get_errno()
            if err == errno.ESRCH:
                return None
            raise KernelError("move_pages(pid=%d, %d pages) failed: %s" % (pid, count, os.strerror(err)))
        return list(status)

    def _move_pages_call(self):
        if self._syscall is None:
            machine = platform.machine()
            if machine not in MOVE_PAGES_SYSCALL:
                raise KernelError("move_pages syscall number unknown for %s" % machine)
            libc = ctypes.CDLL(None, use_errno=True)
            number = MOVE_PAGES_SYSCALL[machine]
            syscall = libc.syscall
            syscall.restype = ctypes.c_long
            syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            self._syscall = lambda *args: syscall(number, *args)
        return self._syscall


def parse_cpulist(text):
    """'0-2,5' → [0, 1, 2, 5]; '' → []."""
    result = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            result.extend(range(int(low), int(high) + 1))
        else:
            result.append(int(part))
    return result


def parse_lru_gen(text, wanted=None):
    """The debugfs lru_gen file: "memcg ID PATH", " node N", then one "GEN AGE_MS ANON FILE" row per
    generation. A memcg already removed is listed with id 0 (possibly beside a new one of the same
    path) and is left out: it takes no commands. ``wanted``: only these memcg paths are parsed (the
    file lists every memcg of the host, and tierd reads it every interval)."""
    table = {}
    current = rows = None  # the generations by node of the memcg being read (None: left out)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("memcg"):
            fields = line.split()
            path = fields[2] if len(fields) > 2 else "/"
            memcg_id = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
            current = {} if memcg_id and (wanted is None or path in wanted) else None
            rows = None
            if current is not None:
                table[path] = (memcg_id, current)
        elif current is None:
            continue
        elif line.startswith("node"):
            fields = line.split()
            rows = current.setdefault(int(fields[1]), []) if len(fields) == 2 and fields[1].isdigit() else None
        elif rows is not None:
            fields = line.split()
            if len(fields) == 4:
                try:
                    rows.append((int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3])))
                except ValueError:
                    pass
    return table


def parse_maps(text):
    """/proc/PID/maps text → list of dicts (start, end, perms, offset, inode, name)."""
    vmas = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        start, end = parts[0].split("-")
        vmas.append({
            "start": int(start, 16),
            "end": int(end, 16),
            "perms": parts[1],
            "offset": int(parts[2], 16),
            "inode": int(parts[4]),
            "name": parts[5].strip() if len(parts) > 5 else "",
        })
    return vmas


def parse_numa_maps(text, starts=None):
    """/proc/PID/numa_maps → {start address: {'policy': ..., 'anon': n, 'N0': n, ...}}. ``starts``: only
    the mappings starting at these addresses are parsed; a process has a hundred or more mappings
    (libraries, interpreter arenas) beside the few tierd manages, and parsing all of them was a sixth
    of tierd's time per interval in a profile of bench/peers' peer i (bench/RESULTS.md)."""
    result = {}
    for line in text.splitlines():
        if starts is not None:
            address, _sep, _rest = line.partition(" ")
            try:
                if int(address, 16) not in starts:
                    continue
            except ValueError:
                continue
        parts = line.split()
        if len(parts) < 2:
            continue
        entry = {"policy": parts[1]}
        for token in parts[2:]:
            key, sep, value = token.partition("=")
            if sep and value.isdigit():
                entry[key] = int(value)
            elif sep:
                entry[key] = value
            else:
                entry[key] = True
        result[int(parts[0], 16)] = entry
    return result
