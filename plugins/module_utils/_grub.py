# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot loader: GRUB defaults files, grub.cfg regeneration, and grubby.

Owns ``/etc/default/grub``, ``/etc/default/grub.d/*.cfg``, the ``update-grub`` / ``grub-mkconfig``
/ ``grub2-mkconfig`` command lines and ``grubby --info``. Used by reserved_memory only; memmap= words
are parsed by _memmap.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.tiering.pmem.plugins.module_utils._memmap import strip_memmap_items
from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError
from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path

GRUB_DEFAULTS = "/etc/default/grub"
GRUB_DROPIN_DIR = "/etc/default/grub.d"
GRUB_CMDLINE_VARS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
GRUB_CFG_CANDIDATES = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")

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
        raise ModuleError("%s --info DEFAULT failed (rc=%d): %s" % (grubby, rc, err.strip()))
    for line in out.splitlines():
        if line.startswith("args="):
            return line[len("args="):].strip().strip('"')
    raise ModuleError("%s --info DEFAULT printed no args= line: %s" % (grubby, out.strip()))
