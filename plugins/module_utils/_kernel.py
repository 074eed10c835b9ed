# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that knows the kernel command line, the boot loader and the tiering knobs.

- ``/proc/cmdline`` and ``memmap=`` values (``SIZE!OFFSET`` and the other memmap forms),
- the physical memory maps ``/proc/iomem`` and ``/sys/firmware/memmap``,
- GRUB defaults (``/etc/default/grub``, ``/etc/default/grub.d/*.cfg``), ``update-grub`` /
  ``grub-mkconfig`` / ``grub2-mkconfig`` and ``grubby``,
- sysctl and sysfs knobs: live value, and persistence in sysctl.d / tmpfiles.d files.

Every host path goes through ``root`` (default ``/``) so unit tests run on captured trees.
Every file write is atomic: a temporary file in the target directory, then ``atomic_move``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path, read_text, write_text

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# parse_size() refuses this and more: no physical address or size reaches 2^64.
MAX_SIZE = 1 << 64
SIZE_HELP = ("a whole number (decimal, or hex with 0x) with an optional K, M, G or T suffix, "
             "e.g. 512M, 4G or 0x20000000")
MEMMAP_HELP = "SIZE!OFFSET, e.g. 512M!0x80000000 or 4G!12G (SIZE and OFFSET: %s)" % SIZE_HELP

# memmap= separators (Documentation/admin-guide/kernel-parameters.txt): '!' legacy pmem
# (E820 type 12), '$' reserved, '#' ACPI data, '@' usable RAM, '%' retype.
MEMMAP_KINDS = {"!": "pmem", "$": "reserved", "#": "acpi", "@": "ram"}

# Firmware map / iomem names of ranges a memmap=!-reservation may lie in. A range reserved as
# legacy pmem at the last boot is no longer "System RAM" in /proc/iomem but it is still RAM.
USABLE_RAM_TYPES = ("System RAM", "Persistent Memory (legacy)")

GRUB_DEFAULTS = "/etc/default/grub"
GRUB_DROPIN_DIR = "/etc/default/grub.d"
GRUB_CMDLINE_VARS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
GRUB_CFG_CANDIDATES = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


class KernelError(Exception):
    """A bad value or an unusable host state, with a message meant for the user."""


# ---------------------------------------------------------------- sizes and memmap=

def shorten(value, limit=64, quote=True):
    """``repr()`` of a user value for a message (``str()`` with ``quote=False``), cut after
    ``limit`` characters: messages name the bad value, but a huge input is not echoed back whole.
    """
    text = value if isinstance(value, str) else str(value)
    shown = text[:limit]
    shown = repr(shown) if quote else shown
    return shown if len(text) <= limit else "%s... (%d characters)" % (shown, len(text))


def parse_size(text, what="size"):
    """``'512M'``, ``'0x80000000'``, ``'4G'`` -> bytes, the way the kernel's memparse() reads them.

    Values of 2^64 bytes or more are refused: no physical address or size is that large.
    """
    match = re.match(r"^(0[xX][0-9a-fA-F]+|[0-9]+)([KMGTkmgt]?)\Z", str(text).strip())
    if not match:
        raise KernelError("%s %s is not a valid size: use %s" % (what, shorten(text), SIZE_HELP))
    number, unit = match.groups()
    # More than 20 decimal digits is above 2^64 whatever the unit (and int() of a huge decimal
    # string is slow, or refused past 4300 digits).
    if len(number) > 20 and not number.lower().startswith("0x"):
        value = MAX_SIZE
    else:
        value = int(number, 0 if number.lower().startswith("0x") else 10) * SIZE_UNITS[unit.upper()]
    if value >= MAX_SIZE:
        raise KernelError("%s %s is too large: sizes and addresses are below 2^64 bytes (16 EiB); use %s"
                          % (what, shorten(text), SIZE_HELP))
    return value


def format_size(value):
    """Bytes -> the shortest exact K/M/G/T form (``536870912`` -> ``512M``)."""
    for unit in ("T", "G", "M", "K"):
        if value and value % SIZE_UNITS[unit] == 0:
            return "%d%s" % (value // SIZE_UNITS[unit], unit)
    return "%d" % value


class MemmapRange(object):
    """One item of a memmap= value: ``kind`` is pmem/reserved/acpi/ram/other."""

    def __init__(self, kind, size, offset, text):
        self.kind = kind
        self.size = size
        self.offset = offset
        self.text = text

    @property
    def end(self):
        """Exclusive end address."""
        return self.offset + self.size

    def key(self):
        return (self.kind, self.size, self.offset)

    def canonical(self):
        return "%s!0x%x" % (format_size(self.size), self.offset)

    def describe(self):
        return "%s (0x%x-0x%x)" % (self.text, self.offset, self.end - 1)

    def overlaps(self, other_start, other_end):
        return self.offset < other_end and other_start < self.end

    def __eq__(self, other):
        return isinstance(other, MemmapRange) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return "MemmapRange(%r)" % self.text


def parse_reservation(text):
    """A wanted legacy-pmem reservation ``SIZE!OFFSET`` -> MemmapRange (kind pmem)."""
    parts = str(text).strip().split("!")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise KernelError("reservation %s is not SIZE!OFFSET: use %s" % (shorten(text), MEMMAP_HELP))
    size = parse_size(parts[0], "size of reservation %s" % shorten(text))
    offset = parse_size(parts[1], "offset of reservation %s" % shorten(text))
    if size == 0:
        raise KernelError("reservation %s has size 0: use %s" % (shorten(text), MEMMAP_HELP))
    if offset + size > MAX_SIZE:
        raise KernelError("reservation %s ends beyond 2^64 bytes: use %s" % (shorten(text), MEMMAP_HELP))
    return MemmapRange("pmem", size, offset, str(text).strip())


def parse_memmap_value(value):
    """The value of one ``memmap=`` argument -> list of MemmapRange (comma-separated items).

    Items that are not a range (``exactmap``, a bare size limit, ``%`` retyping) come back with
    kind ``other`` and size/offset None: they are kept verbatim, never interpreted.
    """
    ranges = []
    for item in value.split(","):
        match = re.match(r"^([^!$#@%]+)([!$#@])([^!$#@%]+)$", item)
        if match:
            try:
                size = parse_size(match.group(1))
                offset = parse_size(match.group(3))
            except KernelError:
                ranges.append(MemmapRange("other", None, None, item))
                continue
            ranges.append(MemmapRange(MEMMAP_KINDS[match.group(2)], size, offset, item))
        else:
            ranges.append(MemmapRange("other", None, None, item))
    return ranges


def split_cmdline(cmdline):
    """Kernel command line -> words; double quotes group a value with spaces, as the kernel does."""
    return re.findall(r'(?:[^\s"]+|"[^"]*")+', cmdline or "")


def memmap_ranges(cmdline, kind=None):
    """All memmap= ranges of a command line (every memmap= argument, every comma item)."""
    found = []
    for word in split_cmdline(cmdline):
        if word.startswith("memmap="):
            for item in parse_memmap_value(word[len("memmap="):].strip('"')):
                if kind is None or item.kind == kind:
                    found.append(item)
    return found


def running_cmdline(root="/"):
    return read_text("/proc/cmdline", root)


# ---------------------------------------------------------------- physical memory maps

def parse_iomem(text):
    """``/proc/iomem`` -> list of dicts start, end (inclusive), name, depth (0 = top level)."""
    entries = []
    for line in text.splitlines():
        match = re.match(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$", line)
        if match:
            entries.append({"start": int(match.group(2), 16), "end": int(match.group(3), 16),
                            "name": match.group(4).strip(), "depth": len(match.group(1)) // 2})
    return entries


def read_iomem(root="/"):
    return parse_iomem(read_text("/proc/iomem", root, default=""))


def read_firmware_memmap(root="/"):
    """``/sys/firmware/memmap/N/{start,end,type}`` -> list of dicts, sorted by start; [] if absent.

    This is the map the firmware handed over at boot, before memmap= changed anything.
    """
    base = host_path(root, "/sys/firmware/memmap")
    if not os.path.isdir(base):
        return []
    entries = []
    for name in os.listdir(base):
        entry = "/sys/firmware/memmap/%s" % name
        try:
            entries.append({"start": int(read_text(entry + "/start", root), 16),
                            "end": int(read_text(entry + "/end", root), 16),
                            "name": read_text(entry + "/type", root)})
        except (IOError, OSError, ValueError):
            continue
    return sorted(entries, key=lambda item: item["start"])


def merge_ranges(ranges):
    """(start, end-exclusive) pairs -> sorted, with touching/overlapping pairs merged."""
    merged = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def usable_ram(root="/"):
    """(ranges, source): RAM a legacy-pmem reservation may take, as end-exclusive pairs.

    The firmware map is preferred: it is the boot-time map, so a range that memmap= turned
    into legacy pmem at this boot still counts, and a reservation the kernel accepted outside
    real RAM does not. /proc/iomem (top-level entries) is the fallback.
    """
    firmware = read_firmware_memmap(root)
    if firmware:
        source, entries = "/sys/firmware/memmap", firmware
    else:
        source, entries = "/proc/iomem", [e for e in read_iomem(root) if e["depth"] == 0]
    ranges = [(e["start"], e["end"] + 1) for e in entries if e["name"] in USABLE_RAM_TYPES]
    return merge_ranges(ranges), source


def inside(ranges, start, end):
    return any(low <= start and end <= high for low, high in ranges)


def format_ranges(ranges):
    return ", ".join("0x%x-0x%x" % (start, end - 1) for start, end in ranges) or "none"


# ---------------------------------------------------------------- GRUB defaults files

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _expand(text, env):
    return re.sub(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
                  lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _shell_value(raw, env):
    """The value of a one-line shell assignment right-hand side (quotes and $VAR expansion)."""
    value, rest = "", raw.strip()
    while rest and not rest[0].isspace() and rest[0] != "#":
        if rest[0] == '"':
            close = rest.find('"', 1)
            close = len(rest) if close < 0 else close
            value += _expand(rest[1:close], env)
            rest = rest[close + 1:]
        elif rest[0] == "'":
            close = rest.find("'", 1)
            close = len(rest) if close < 0 else close
            value += rest[1:close]
            rest = rest[close + 1:]
        else:
            match = re.match(r"^[^\s'\"#]+", rest)
            value += _expand(match.group(0), env)
            rest = rest[match.end():]
    return value


def evaluate_grub_defaults(texts):
    """Texts of GRUB defaults files in the order grub-mkconfig sources them -> variables.

    Only plain one-line assignments are understood (``VAR="..."``, ``VAR='...'``, ``VAR=word``,
    with ``$VAR``/``${VAR}``), which is what these files hold; the result is checked against
    the regenerated grub.cfg where one can be read.
    """
    env = {}
    for text in texts:
        for line in text.splitlines():
            match = _ASSIGNMENT.match(line)
            if match:
                env[match.group(1)] = _shell_value(match.group(2), env)
    return env


def grub_dropin_paths(root="/"):
    """``/etc/default/grub.d/*.cfg`` in the order grub-mkconfig sources them (glob order)."""
    directory = host_path(root, GRUB_DROPIN_DIR)
    if not os.path.isdir(directory):
        return []
    return ["%s/%s" % (GRUB_DROPIN_DIR, name) for name in sorted(os.listdir(directory))
            if name.endswith(".cfg")]


def grub_cmdline(env):
    """The arguments GRUB adds to every Linux entry: GRUB_CMDLINE_LINUX then _DEFAULT."""
    return " ".join(env.get(var, "").strip() for var in GRUB_CMDLINE_VARS if env.get(var, "").strip())


def strip_memmap_items(word, drop):
    """A ``memmap=`` word without the items ``drop(item)`` selects; None when nothing is left."""
    items = [item for item in parse_memmap_value(word[len("memmap="):]) if not drop(item)]
    if not items:
        return None
    return "memmap=" + ",".join(item.text for item in items)


def rewrite_cmdline_assignments(text, drop, append=None):
    """Remove memmap items selected by ``drop`` from GRUB_CMDLINE_LINUX(_DEFAULT) lines.

    ``append``: words to add to the last GRUB_CMDLINE_LINUX assignment (a new line at the end
    if there is none). Only double-quoted or bare one-line values are edited; others are left.
    """
    lines = text.splitlines(True)
    last_linux = None
    for index, line in enumerate(lines):
        match = re.match(r'^(\s*(?:export\s+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=)"([^"]*)"(.*)$', line,
                         re.DOTALL)
        if not match:
            continue
        prefix, var, value, tail = match.groups()
        words = []
        for word in value.split():
            if word.startswith("memmap="):
                word = strip_memmap_items(word, drop)
            if word is not None:
                words.append(word)
        lines[index] = '%s"%s"%s' % (prefix, " ".join(words), tail)
        if var == "GRUB_CMDLINE_LINUX":
            last_linux = index
    if append:
        if last_linux is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append('GRUB_CMDLINE_LINUX="%s"\n' % " ".join(append))
        else:
            match = re.match(r'^(\s*(?:export\s+)?GRUB_CMDLINE_LINUX=)"([^"]*)"(.*)$', lines[last_linux],
                             re.DOTALL)
            prefix, value, tail = match.groups()
            lines[last_linux] = '%s"%s"%s' % (prefix, " ".join(value.split() + list(append)), tail)
    return "".join(lines)


def dropin_text(reservations, module_name):
    """Content of our grub.d drop-in: appends one memmap= argument per reservation."""
    words = " ".join("memmap=%s" % item.canonical() for item in reservations)
    return ("# Managed by %s: legacy persistent memory reserved with memmap=SIZE!OFFSET.\n"
            "# Changes here are replaced on the next run; run update-grub after editing by hand.\n"
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX %s"\n' % (module_name, words))


def find_grub_cfg(root="/"):
    for candidate in GRUB_CFG_CANDIDATES:
        if os.path.exists(host_path(root, candidate)):
            return candidate
    return None


def grub_cfg_default_cmdline(text):
    """Arguments of the first ``linux`` line of a grub.cfg (the default entry in Debian's)."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("linux", "linux16", "linuxefi"):
            return " ".join(words[2:])
    return None


def regenerate_command(module, root="/"):
    """argv that rewrites grub.cfg from the defaults files, or None when no tool exists."""
    update_grub = module.get_bin_path("update-grub")
    if update_grub:
        return [update_grub]
    grub_cfg = find_grub_cfg(root)
    for tool in ("grub-mkconfig", "grub2-mkconfig"):
        path = module.get_bin_path(tool)
        if path and grub_cfg:
            return [path, "-o", grub_cfg]
    return None


def grubby_default_args(module, grubby):
    """``grubby --info=DEFAULT`` -> the default entry's args (read only, runs in check mode)."""
    # "--info DEFAULT" (not "--info=DEFAULT"): popt takes both; this form is the read-only one
    # the shared test helpers recognise.
    rc, out, err = module.run_command([grubby, "--info", "DEFAULT"])
    if rc != 0:
        raise KernelError("%s --info DEFAULT failed (rc=%d): %s" % (grubby, rc, err.strip()))
    for line in out.splitlines():
        if line.startswith("args="):
            return line[len("args="):].strip().strip('"')
    raise KernelError("%s --info DEFAULT printed no args= line: %s" % (grubby, out.strip()))


# ---------------------------------------------------------------- files

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
    target = host_path(root, path)
    backup_file = module.backup_local(target) if backup and os.path.exists(target) else None
    if os.path.exists(target):
        os.remove(target)
    return backup_file


# ---------------------------------------------------------------- sysctl / sysfs knobs

def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def kernel_release(root="/"):
    return read_text("/proc/sys/kernel/osrelease", root, default="unknown")


def knob_exists(path, root="/"):
    return os.path.exists(host_path(root, path))


def read_knob(path, root="/"):
    return read_text(path, root)


def write_knob(path, value, root="/"):
    """Write a live kernel knob; the kernel's refusal comes back as KernelError."""
    refusal = write_text(path, "%s\n" % value, root)
    if refusal:
        raise KernelError("the kernel refused %s = %s: %s" % (path, value, refusal))


def parse_sysctl_conf(text):
    """sysctl.d text -> {key: value} (``key = value`` lines; comments and blanks ignored)."""
    values = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lstrip("-").replace("/", ".")] = value.strip()
    return values


def sysctl_conf_text(values, module_name):
    lines = ["# Managed by %s; values applied at boot by systemd-sysctl." % module_name]
    lines += ["%s = %s" % (key, values[key]) for key in sorted(values)]
    return "\n".join(lines) + "\n"


def parse_tmpfiles_writes(text):
    """tmpfiles.d text -> {path: argument} of its ``w`` lines (others are ignored)."""
    writes = {}
    for line in (text or "").splitlines():
        fields = line.split(None, 6)
        if len(fields) == 7 and fields[0] in ("w", "w+"):
            writes[fields[1]] = fields[6].strip()
    return writes


def tmpfiles_text(writes, module_name):
    lines = ["# Managed by %s; written at boot by systemd-tmpfiles." % module_name]
    lines += ["w %s - - - - %s" % (path, writes[path]) for path in sorted(writes)]
    return "\n".join(lines) + "\n"
