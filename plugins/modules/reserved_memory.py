#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: reserved_memory
short_description: Reserve RAM as legacy persistent memory with memmap=SIZE!OFFSET on the kernel command line
version_added: "0.1.0"
description:
  - Makes the boot loader configuration carry exactly the wanted C(memmap=SIZE!OFFSET) reservations.
    At the next boot the kernel turns each range into legacy persistent memory (E820 type 12), which
    shows up as C(/dev/pmemN) and can then be made a dax device and system RAM on its own node.
  - "B(Which files are edited.) On hosts whose GRUB reads C(/etc/default/grub.d/*.cfg) (Debian, Ubuntu:
    the directory exists), the reservations live in one drop-in of ours,
    C(/etc/default/grub.d/90-tiering-pmem.cfg), which appends them to C(GRUB_CMDLINE_LINUX). Only when
    that directory does not exist is C(GRUB_CMDLINE_LINUX) in C(/etc/default/grub) edited in place.
    Where C(grubby) exists and there is no C(grub.d) directory (Fedora, RHEL), C(grubby
    --update-kernel=ALL --args/--remove-args) is used instead."
  - After a change of the GRUB files, C(grub.cfg) is regenerated with C(update-grub), or
    C(grub-mkconfig -o)/C(grub2-mkconfig -o) the existing C(/boot/grub/grub.cfg) or C(/boot/grub2/grub.cfg).
    It is also regenerated when the files are right but C(grub.cfg) does not carry the reservations
    (for example after an interrupted run).
  - "B(Exactly the wanted reservations.) With O(state=present) and O(exclusive=true) (the default),
    every other legacy-pmem reservation (C(memmap=...!...)) found in C(GRUB_CMDLINE_LINUX) or
    C(GRUB_CMDLINE_LINUX_DEFAULT) of any GRUB defaults file is removed, so that after the next boot the
    kernel reserves precisely O(reservations). A reservation already configured in another file is
    left where it is. With O(exclusive=false) the wanted ones are added and the others kept.
    Other memmap= forms (C($) reserved, C(#) ACPI, C(@) RAM, C(exactmap)) are never edited."
  - "B(Checks before anything is written:) every SIZE and OFFSET parses; both are multiples of the
    memory block size (C(/sys/devices/system/memory/block_size_bytes)), so the range can later be
    onlined block by block; the range lies inside usable RAM of the firmware memory map
    (C(/sys/firmware/memmap), the boot-time map, where a range already reserved at this boot still
    counts as RAM) or, when that is absent, of C(/proc/iomem) (C(System RAM) and
    C(Persistent Memory (legacy))); the wanted ranges do not overlap each other, another kept
    reservation, a C(memmap=) reserved/ACPI range, or the crash kernel."
  - "B(RAM left to the host.) The reservations together (with O(exclusive=false), the kept ones
    too) must leave the host at least the larger of 1 GiB and 25 % of its usable RAM (the RAM of the
    firmware memory map, as above); a reservation that would leave less is refused, since the host
    could not boot or run with it. 25 % matches the default C(movable_ratio) of
    M(tiering.pmem.dax_kmem), at most 3 parts movable memory per part normal memory. For example a
    host with 2 GiB of RAM (a little less in the firmware map) can reserve at most 896 MiB in 128 MiB
    memory blocks, one with 16 GiB a little less than 12 GiB. The message of a refusal names the
    RAM, the floor and the most that can be reserved."
  - "B(Kernel command line size.) The C(memmap=) arguments of O(reservations) must fit in the 2048
    bytes of an x86 kernel command line (C(COMMAND_LINE_SIZE)) with room for the rest of it: together
    at most 1024 bytes."
  - The change takes effect at the next boot; RV(reboot_required) says whether one is needed.
    This module never reboots.
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  reservations:
    description:
      - The legacy-pmem ranges, each C(SIZE!OFFSET) as in the kernel's C(memmap=) parameter.
      - SIZE and OFFSET are whole numbers, decimal or hex with C(0x), with an optional C(K), C(M),
        C(G) or C(T) suffix (powers of 1024), for example C(512M!0x80000000) or C(4G!12G).
      - Required with O(state=present). With O(state=absent), the ranges to remove; when omitted,
        all legacy-pmem reservations are removed.
    type: list
    elements: str
  state:
    description:
      - V(present) makes the configuration carry O(reservations); V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), remove every legacy-pmem reservation that is not in O(reservations).
      - With V(false), only add the missing ones.
    type: bool
    default: true
  bootloader:
    description:
      - How the command line is configured. V(auto) picks V(grub_dropin) when C(/etc/default/grub.d)
        exists, else V(grubby) when C(grubby) is installed, else V(grub_defaults).
    type: str
    choices: [auto, grub_dropin, grub_defaults, grubby]
    default: auto
  backup:
    description:
      - Keep a time-stamped copy of every GRUB defaults file before it is changed or removed.
    type: bool
    default: false
extends_documentation_fragment:
  - tiering.pmem.attributes
notes:
  - Supports check mode and diff mode. Check mode runs only read-only commands and returns the same
    RV(actions), RV(changed) and RV(reboot_required) that a real run would.
  - A reservation the kernel cannot honour still boots but without the device, so the checks above are
    done against the running host; run this module on the host it configures.
requirements:
  - GRUB 2 with C(update-grub), C(grub-mkconfig) or C(grub2-mkconfig); or C(grubby).
seealso:
  - name: Kernel parameters, memmap=
    description: The memmap= forms in the kernel's admin guide.
    link: https://www.kernel.org/doc/html/latest/admin-guide/kernel-parameters.html
"""

EXAMPLES = r"""
- name: Reserve 512 MiB at 2 GiB as legacy persistent memory
  tiering.pmem.reserved_memory:
    reservations:
      - 512M!0x80000000
  register: reservation

- name: Reboot when the running kernel does not have it yet
  ansible.builtin.reboot:
  when: reservation.reboot_required

- name: Two ranges; keep any other reservation configured elsewhere
  tiering.pmem.reserved_memory:
    reservations: ["4G!12G", "4G!20G"]
    exclusive: false

- name: Remove every legacy-pmem reservation
  tiering.pmem.reserved_memory:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether a file was written or removed, or the boot loader configuration regenerated.
  returned: always
  type: bool
  sample: true
actions:
  description: The state-changing steps, in order (in check mode, the steps a real run would take).
  returned: always
  type: list
  elements: str
  sample: ["write /etc/default/grub.d/90-tiering-pmem.cfg", "run /usr/sbin/update-grub"]
reboot_required:
  description: True when the legacy-pmem reservations of the running kernel (C(/proc/cmdline)) differ
    from the configured ones.
  returned: always
  type: bool
  sample: true
reservations:
  description: The configured legacy-pmem reservations after this run, in canonical C(SIZE!0xOFFSET) form.
  returned: always
  type: list
  elements: str
  sample: ["512M!0x80000000"]
reservations_running:
  description: The legacy-pmem reservations of the running kernel, canonical form.
  returned: always
  type: list
  elements: str
  sample: []
cmdline_configured:
  description: The arguments the boot loader adds to the kernel command line after this run
    (C(GRUB_CMDLINE_LINUX) then C(GRUB_CMDLINE_LINUX_DEFAULT); with grubby, the default entry's args).
  returned: always
  type: str
  sample: "memmap=512M!0x80000000 console=ttyS0,115200 net.ifnames=0"
cmdline_running:
  description: The running kernel's command line, C(/proc/cmdline).
  returned: always
  type: str
  sample: "BOOT_IMAGE=/boot/vmlinuz-6.12.118+deb13-amd64 root=UUID=6b1f0c1e-7a1d-4c6e-9a55-1ab5e0000001 ro"
bootloader:
  description: The configuration method used (see O(bootloader)).
  returned: always
  type: str
  sample: grub_dropin
ram_source:
  description: Where the usable RAM ranges were read from.
  returned: always
  type: str
  sample: /sys/firmware/memmap
backup_files:
  description: Backup copies made with O(backup=true).
  returned: always
  type: list
  elements: str
  sample: ["/etc/default/grub.12345.2026-11-25@19:30:00~"]
diff:
  description: Before and after text of each changed file (or of the grubby args), with C(--diff).
  returned: when diff mode is on
  type: list
  elements: dict
  sample: [{"before_header": "/etc/default/grub.d/90-tiering-pmem.cfg", "before": "",
            "after_header": "/etc/default/grub.d/90-tiering-pmem.cfg",
            "after": "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX memmap=512M!0x80000000\"\n"}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tiering.pmem.plugins.module_utils import _files
from ansible_collections.tiering.pmem.plugins.module_utils import _grub
from ansible_collections.tiering.pmem.plugins.module_utils import _memmap
from ansible_collections.tiering.pmem.plugins.module_utils import _plan
from ansible_collections.tiering.pmem.plugins.module_utils._sysfs import host_path, memory_block_size

MODULE_NAME = "tiering.pmem.reserved_memory"
DROPIN = _grub.GRUB_DROPIN_DIR + "/90-tiering-pmem.cfg"
# Tests point this at a copy of a tree captured from a lab guest.
ROOT = "/"
# The RAM the reservations must leave to the host: the larger of these two (DOCUMENTATION).
MIN_HOST_RAM = 1 << 30
MIN_HOST_RAM_PERCENT = 25
# x86 COMMAND_LINE_SIZE is 2048; our memmap= arguments may take half of it.
MAX_MEMMAP_ARGS_BYTES = 1024


def unique(ranges):
    seen, result = set(), []
    for item in ranges:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def canonical(ranges):
    return [item.canonical() for item in ranges]


def choose_bootloader(module, wanted, root):
    if wanted != "auto":
        return wanted
    if os.path.isdir(host_path(root, _grub.GRUB_DROPIN_DIR)):
        return "grub_dropin"
    if module.get_bin_path("grubby"):
        return "grubby"
    return "grub_defaults"


def validate_wanted(wanted, root):
    """Alignment, inside RAM, no overlap among themselves; raises ModuleError."""
    try:
        block = memory_block_size(root)
    except (IOError, OSError, ValueError):
        raise _plan.ModuleError(
            "cannot read the memory block size (/sys/devices/system/memory/block_size_bytes): "
            "this kernel has no memory hotplug, so reserved pmem could not be onlined as RAM")
    ram, source = _memmap.usable_ram(root)
    for item in wanted:
        for what, value in (("offset", item.offset), ("size", item.size)):
            if value % block:
                raise _plan.ModuleError(
                    "reservation %s: %s 0x%x is not a multiple of the memory block size 0x%x (%s): "
                    "use a %s that is, e.g. %s" % (
                        item.text, what, value, block, _memmap.format_size(block), what,
                        _memmap.format_size((value // block + 1) * block)))
        if not _memmap.inside(ram, item.offset, item.end):
            raise _plan.ModuleError(
                "reservation %s is not inside usable RAM per %s: valid ranges are %s"
                % (item.describe(), source, _memmap.format_ranges(ram)))
    for index, item in enumerate(wanted):
        for other in wanted[index + 1:]:
            if item.overlaps(other.offset, other.end):
                raise _plan.ModuleError("reservations %s and %s overlap: give ranges that do not"
                                        % (item.describe(), other.describe()))
    for entry in _memmap.read_iomem(root):
        if entry["name"] == "Crash kernel":
            for item in wanted:
                if item.overlaps(entry["start"], entry["end"] + 1):
                    raise _plan.ModuleError(
                        "reservation %s overlaps the crash kernel reservation 0x%x-0x%x in /proc/iomem"
                        % (item.describe(), entry["start"], entry["end"]))
    return source


def check_command_line_room(wanted):
    """The memmap= arguments must fit in the kernel command line; checked before anything else."""
    length = len(" ".join("memmap=%s" % item.canonical() for item in wanted))
    if length > MAX_MEMMAP_ARGS_BYTES:
        raise _plan.ModuleError(
            "%d reservations take %d bytes of the kernel command line as memmap= arguments: at most %d are "
            "allowed (an x86 command line holds 2048 bytes); use fewer, larger ranges"
            % (len(wanted), length, MAX_MEMMAP_ARGS_BYTES))


def host_ram_floor(total):
    """Bytes of usable RAM the reservations must leave: max(1 GiB, 25 % of the usable RAM)."""
    return max(MIN_HOST_RAM, total * MIN_HOST_RAM_PERCENT // 100)


def check_ram_left(target, root):
    """Refuse reservations that leave the host less than host_ram_floor() of its usable RAM."""
    ram, source = _memmap.usable_ram(root)
    total = sum(end - start for start, end in ram)
    reserved = sum(item.size for item in target)
    floor = host_ram_floor(total)
    if total - reserved >= floor:
        return
    try:
        block = memory_block_size(root)
    except (IOError, OSError, ValueError):
        block = 1 << 20
    most = max(0, (total - floor) // block * block)
    advice = ("reserve at most %s (%d MiB) in total" % (_memmap.format_size(most), most >> 20) if most
              else "this host has too little RAM for any reservation")
    raise _plan.ModuleError(
        "reservations %s take %d MiB and would leave the host %d MiB of its %d MiB of usable RAM (per %s): "
        "it needs at least %d MiB, the larger of %d MiB and %d %% of its RAM, to boot and run; %s" % (
            ", ".join(item.text for item in target), reserved >> 20, max(0, total - reserved) >> 20, total >> 20,
            source, floor >> 20, MIN_HOST_RAM >> 20, MIN_HOST_RAM_PERCENT, advice))


def check_against_configured(wanted, kept, others):
    """A wanted range must not overlap a kept pmem reservation or a memmap= reserved/ACPI range."""
    for item in wanted:
        for other in kept:
            if other != item and item.overlaps(other.offset, other.end):
                raise _plan.ModuleError(
                    "reservation %s overlaps the existing reservation memmap=%s: remove it "
                    "(exclusive=true) or choose another range" % (item.describe(), other.describe()))
        for other in others:
            if other.size is not None and other.kind in ("reserved", "acpi") and \
                    item.overlaps(other.offset, other.end):
                raise _plan.ModuleError(
                    "reservation %s overlaps memmap=%s, configured as %s: choose another range"
                    % (item.describe(), other.describe(), other.kind))


def target_set(state, exclusive, wanted, configured):
    if state == "present":
        return list(wanted) if exclusive else unique(list(configured) + list(wanted))
    if wanted is None:
        return []
    return [item for item in configured if item not in wanted]


class GrubFiles(object):
    """GRUB defaults files: plan the new texts, apply them, regenerate grub.cfg."""

    def __init__(self, module, root, use_dropin):
        self.module = module
        self.root = root
        self.use_dropin = use_dropin
        paths = [_grub.GRUB_DEFAULTS]
        if use_dropin:
            paths += [path for path in _grub.grub_dropin_paths(root) if path != DROPIN] + [DROPIN]
            paths = [_grub.GRUB_DEFAULTS] + sorted(paths[1:])
        self.paths = paths
        self.before = dict((path, _files.read_file(path, root)) for path in paths)
        if self.before[_grub.GRUB_DEFAULTS] is None and not use_dropin:
            raise _plan.ModuleError("%s does not exist: no GRUB configuration to put the reservations in"
                                    % _grub.GRUB_DEFAULTS)
        self.after = dict(self.before)

    def env(self, texts):
        return _grub.evaluate_grub_defaults([texts[path] or "" for path in self.paths])

    def configured_cmdline(self, texts=None):
        return _grub.grub_cmdline(self.env(texts or self.before))

    def plan(self, target):
        target_keys = set(target)

        def drop(item):
            return item.kind == "pmem" and item not in target_keys

        foreign = [path for path in self.paths if path != DROPIN or not self.use_dropin]
        for path in foreign:
            if self.before[path] is not None:
                self.after[path] = _grub.rewrite_cmdline_assignments(self.before[path], drop)
        if self.use_dropin:
            others = dict(self.after)
            others[DROPIN] = None
            elsewhere = set(_memmap.memmap_ranges(_grub.grub_cmdline(self.env(others)), "pmem"))
            ours = [item for item in target if item not in elsewhere]
            self.after[DROPIN] = _grub.dropin_text(ours, MODULE_NAME) if ours else None
        else:
            present = set(_memmap.memmap_ranges(self.configured_cmdline(self.after), "pmem"))
            missing = ["memmap=%s" % item.canonical() for item in target if item not in present]
            if missing:
                self.after[_grub.GRUB_DEFAULTS] = _grub.rewrite_cmdline_assignments(
                    self.after[_grub.GRUB_DEFAULTS], drop, append=missing)
        result = set(_memmap.memmap_ranges(self.configured_cmdline(self.after), "pmem"))
        if result != target_keys:
            raise _plan.ModuleError(
                "after editing, the GRUB defaults files would still give memmap reservations %s instead "
                "of %s: a reservation is set in a way this module cannot edit (look for memmap= in %s)"
                % (sorted(item.canonical() for item in result), canonical(target), ", ".join(self.paths)))
        return [path for path in self.paths if self.before[path] != self.after[path]]

    def grub_cfg_matches(self, target):
        """False when a readable grub.cfg's default entry lacks exactly the target reservations."""
        grub_cfg = _grub.find_grub_cfg(self.root)
        text = _files.read_file(grub_cfg, self.root) if grub_cfg else None
        if text is None:
            return True
        cmdline = _grub.grub_cfg_default_cmdline(text)
        if cmdline is None:
            return True
        return set(_memmap.memmap_ranges(cmdline, "pmem")) == set(target)


def command_failure(plan, rc, out, err, msg):
    """A failed boot-loader command, reported with the plan's result: changed when an earlier step
    (a GRUB defaults file written, a first grubby command) was applied, since the host then differs
    from before the run; reboot_required false, since a reboot would not bring the reservations
    while the boot loader's configuration was not regenerated."""
    return _plan.ModuleError(msg, rc=rc, stdout=out, stderr=err,
                             **dict(plan.result, changed=plan.applied_steps > 0, reboot_required=False))


def run_step(plan, command, what):
    """Plan one boot-loader command; ``what`` says in its failure message when it ran."""
    def apply():
        rc, out, err = plan.module.run_command(command)
        if rc != 0:
            raise command_failure(plan, rc, out, err,
                                  "%s failed (rc=%d)%s: %s" % (" ".join(command), rc, what, err.strip()))

    plan.step("run %s" % " ".join(command), apply)


def plan_grub(plan, grub, root, target_of):
    module, result = plan.module, plan.result
    configured = _memmap.memmap_ranges(grub.configured_cmdline(), "pmem")
    target = target_of(configured)
    changed_paths = grub.plan(target)
    regenerate = bool(changed_paths) or not grub.grub_cfg_matches(target)
    command = _grub.regenerate_command(module, root) if regenerate else None
    if regenerate and command is None:
        raise _plan.ModuleError("no update-grub, grub-mkconfig or grub2-mkconfig (with an existing "
                                "/boot/grub/grub.cfg or /boot/grub2/grub.cfg) found to regenerate grub.cfg")
    for path in changed_paths:
        if grub.after[path] is None:
            verb = "remove"
        elif grub.before[path] is None:
            verb = "write"
        else:
            verb = "edit"
        plan.step("%s %s" % (verb, path), lambda path=path: apply_grub_file(plan, grub, path, root))
    if command:
        run_step(plan, command, " after the GRUB defaults files were written")
    plan.diffs([dict(before_header=path, after_header=path, before=grub.before[path] or "",
                     after=grub.after[path] or "") for path in changed_paths])
    result["cmdline_configured"] = grub.configured_cmdline(grub.after)
    result["reservations"] = canonical(target)
    return target


def apply_grub_file(plan, grub, path, root):
    backup_wanted = plan.module.params["backup"]
    if grub.after[path] is None:
        backup = _files.remove_file(plan.module, path, root, backup_wanted)
    else:
        backup = _files.write_file_atomic(plan.module, path, grub.after[path], root, backup_wanted)
    if backup:
        plan.result["backup_files"].append(backup)


def plan_grubby(plan, target_of):
    module, result = plan.module, plan.result
    grubby = module.get_bin_path("grubby")
    if not grubby:
        raise _plan.ModuleError("bootloader=grubby but grubby is not installed: install it, or use "
                                "bootloader=auto, grub_dropin or grub_defaults")
    args = _grub.grubby_default_args(module, grubby)
    configured = _memmap.memmap_ranges(args, "pmem")
    target = target_of(configured)
    target_keys = set(target)
    remove, add, kept = [], [], set()
    for word in _memmap.split_cmdline(args):
        if not word.startswith("memmap="):
            continue
        items = _memmap.parse_memmap_value(word[len("memmap="):])
        if any(item.kind == "pmem" and item not in target_keys for item in items):
            remove.append(word)
            rest = _memmap.strip_memmap_items(word, lambda item: item.kind == "pmem" and item not in target_keys)
            if rest:
                add.append(rest)
        kept.update(item for item in items if item.kind == "pmem" and item in target_keys)
    add += ["memmap=%s" % item.canonical() for item in target if item not in kept]
    commands = []
    if remove:
        commands.append([grubby, "--update-kernel=ALL", "--remove-args=%s" % " ".join(remove)])
    if add:
        commands.append([grubby, "--update-kernel=ALL", "--args=%s" % " ".join(add)])
    after_words = [word for word in _memmap.split_cmdline(args) if word not in remove] + add
    result["cmdline_configured"] = " ".join(after_words)
    result["reservations"] = canonical(target)
    for command in commands:
        run_step(plan, command, "")
    if commands:
        plan.diffs([dict(before_header="grubby --info DEFAULT args", after_header="grubby args",
                         before=args + "\n", after=result["cmdline_configured"] + "\n")])
    return target


def plan_reservations(plan, root):
    module, result = plan.module, plan.result
    params = module.params
    state = params["state"]
    if state == "present" and not params["reservations"]:
        raise _plan.ModuleError("reservations is empty: with state=present give at least one SIZE!OFFSET "
                                "(to remove all reservations use state=absent)")
    wanted = None
    if params["reservations"] is not None:
        wanted = unique(_memmap.parse_reservation(text) for text in params["reservations"])
    if state == "present":
        check_command_line_room(wanted)
        result["ram_source"] = validate_wanted(wanted, root)
    running_text = _memmap.running_cmdline(root)
    running = _memmap.memmap_ranges(running_text, "pmem")
    result["cmdline_running"] = running_text
    result["reservations_running"] = canonical(running)
    result["bootloader"] = choose_bootloader(module, params["bootloader"], root)

    def target_of(configured):
        target = target_set(state, params["exclusive"], wanted, configured)
        if state == "present":
            kept = [item for item in target if item not in wanted]
            check_against_configured(wanted, kept, others_of_configured)
            check_ram_left(target, root)
        return target

    if result["bootloader"] == "grubby":
        others_of_configured = []
        target = plan_grubby(plan, target_of)
    else:
        grub = GrubFiles(module, root, result["bootloader"] == "grub_dropin")
        others_of_configured = [item for item in _memmap.memmap_ranges(grub.configured_cmdline())
                                if item.kind != "pmem"]
        target = plan_grub(plan, grub, root, target_of)
    result["reboot_required"] = set(running) != set(target)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            reservations=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            exclusive=dict(type="bool", default=True),
            bootloader=dict(type="str", choices=["auto", "grub_dropin", "grub_defaults", "grubby"],
                            default="auto"),
            backup=dict(type="bool", default=False),
        ),
        required_if=[["state", "present", ["reservations"]]],
        supports_check_mode=True,
    )
    module.run_command_environ_update = {"LANGUAGE": "C", "LC_ALL": "C"}
    root = ROOT
    _plan.run(module, lambda plan: plan_reservations(plan, root), backup_files=[], reboot_required=False,
              ram_source="")


if __name__ == "__main__":
    main()
