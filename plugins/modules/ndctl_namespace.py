#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ndctl_namespace
short_description: Create, reconfigure or destroy NVDIMM / legacy pmem namespaces, safely
description:
  - Makes a namespace exist in the wanted O(mode) (devdax, fsdax, raw, sector), or removes it.
  - An existing namespace that already matches is left alone (no change).
  - Safe by default. Without O(force=true) it never destroys or reconfigures a namespace that holds
    anything, that is in use, or that the task does not name (O(namespace) or O(name)) and is not
    the collection's own. "Holds anything" is any signature C(blkid -p) finds on its block device
    or on a partition of it (a filesystem, a partition table, RAID or LVM metadata), a mount, a
    holder (device-mapper, md) or swap, and for a devdax namespace that the collection did not
    create or convert, contents that are not all zeros where sampled (its first 16 MiB, its last
    2 MiB, and 4 KiB at up to 4096 evenly spaced offsets; a fresh namespace reads as zeros). "In use"
    is a process with C(/dev/pmemN), a partition of it, or C(/dev/daxX.Y) open or mapped
    (C(/proc/*/fd), C(/proc/*/maps)), or an offline system-ram dax device. Even with O(force=true), a
    system-ram device with memory blocks online is refused until its memory is offlined.
  - The collection's own namespaces are those it created (named C(tiering-pmem) unless O(name) says
    otherwise) or converted; it records them in C(/etc/tiering-pmem/owned.json), which is how it
    knows them on label-less pmem that keeps no names. Given only O(region), an existing namespace
    satisfies the task only when it is the collection's own.
  - Works on label-less regions (legacy C(memmap=) pmem, NVDIMMs without a label area) where the
    one namespace spanning the region is reconfigured in place (C(ndctl create-namespace -fe)),
    and on labelled regions where namespaces are created in the region's free space.
version_added: "0.1.0"
author:
  - tiering.pmem contributors (@tiering-pmem)
options:
  namespace:
    description: The namespace to reconfigure or destroy, for example C(namespace0.0).
    type: str
  region:
    description:
      - Region to create the namespace in (C(region0) or C(0)) when O(namespace) is not given.
      - On a region without free space (label-less pmem) the task must name the namespace to
        reconfigure (O(namespace)), or set O(force=true) to reconfigure the region's only namespace.
    type: str
  name:
    description:
      - The namespace's label name (labelled regions only); also selects an existing namespace.
      - A namespace created without a name is named C(tiering-pmem), which marks it as the collection's.
    type: str
  mode:
    description: Namespace mode. Required with O(state=present).
    type: str
    choices: [devdax, fsdax, raw, sector]
  size:
    description:
      - Capacity (ndctl size syntax, for example C(16G)); default the whole region or free space.
      - An existing namespace matches when its usable size is within the metadata overhead
        (up to 1/64 plus the alignment) below this.
    type: str
  align:
    description: Alignment of devdax/fsdax mappings (for example C(2M), C(1G)).
    type: str
  state:
    description: Whether the namespace must exist in O(mode) or be gone.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Allow destroying or reconfiguring a namespace that holds data, is in use, is offline system-ram,
        or is not named by the task. Data on it is lost.
    type: bool
    default: false
extends_documentation_fragment:
  - tiering.pmem.attributes
requirements:
  - ndctl (and daxctl to release an offline system-ram device)
seealso:
  - module: tiering.pmem.dax_kmem
  - module: tiering.pmem.pmem_info
"""

EXAMPLES = r"""
- name: Turn the raw namespace of an NVDIMM (or memmap= pmem) into a devdax device
  tiering.pmem.ndctl_namespace:
    namespace: namespace0.0
    mode: devdax
    align: 2M

- name: Create a 16 GiB fsdax namespace in the free space of a labelled region
  tiering.pmem.ndctl_namespace:
    region: region1
    name: scratch
    mode: fsdax
    size: 16G

- name: Remove that namespace again
  tiering.pmem.ndctl_namespace:
    region: region1
    name: scratch
    state: absent
"""

RETURN = r"""
changed:
  description: Whether a namespace was (or in check mode would be) created, reconfigured or destroyed.
  returned: always
  type: bool
  sample: true
actions:
  description: The commands run (or, in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: ["ndctl create-namespace --mode=devdax --force --reconfig=namespace0.0 --align=2M",
           "record namespace0.0 (region0) in /etc/tiering-pmem/owned.json"]
namespace:
  description: The namespace after the task (in check mode, as far as it can be predicted); null when absent.
  returned: always
  type: dict
  sample: {dev: namespace0.0, region: region0, mode: devdax, size: 1054867456,
           uuid: abf69d97-c6ba-4460-bf4f-372918ec992e, name: null, blockdev: null, chardev: dax0.0,
           align: 2097152, map: dev, sector_size: null, state: enabled}
diff:
  description: The namespace before and after (with --diff).
  returned: when diff mode is on
  type: dict
  sample: {before: "dev: namespace0.0\nmode: raw\n", after: "dev: namespace0.0\nmode: devdax\n"}
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tiering.pmem.plugins.module_utils import _pmem_record as record
from ansible_collections.tiering.pmem.plugins.module_utils._memmap import parse_size
from ansible_collections.tiering.pmem.plugins.module_utils._ndctl import (
    NAMESPACE_MODES, PmemTools, find_namespace, find_region, namespaces_of)
from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError, command_text, run, shorten
from ansible_collections.tiering.pmem.plugins.module_utils._pmem_inventory import namespace_record
from ansible_collections.tiering.pmem.plugins.module_utils._pmem_safety import (
    dax_memory_state, hazards, namespace_mode)

# Tests point this at a fixture tree captured from a lab guest.
ROOT = "/"


def check_options(params):
    """Refusals that need nothing from the host; returns (size, align) in bytes or None."""
    if params["namespace"] and not params["namespace"].startswith("namespace"):
        raise ModuleError("namespace=%r is not a namespace device name: use the form namespaceX.Y "
                          "(see tiering.pmem.pmem_info)" % params["namespace"])
    if params["state"] == "absent" and (params["mode"] or params["size"] or params["align"]):
        raise ModuleError("mode, size and align describe a namespace to keep; they make no sense with state=absent")
    wanted_size = parse_size(params["size"], what="size") if params["size"] else None
    wanted_align = parse_size(params["align"], what="align") if params["align"] else None
    if wanted_align is not None:
        check_align(params, wanted_align)
    if params["mode"] in ("raw", "sector") and params["align"]:
        raise ModuleError("align=%s applies to devdax and fsdax namespaces, not mode=%s"
                          % (params["align"], params["mode"]))
    return wanted_size, wanted_align


def check_align(params, align):
    """ndctl takes a power of two of at least 4 KiB; the kernel supports 4K, 2M and 1G for dax."""
    if align < 4096 or align & (align - 1):
        raise ModuleError("align=%s is not a valid alignment: use a power of two of at least 4K; "
                          "devdax and fsdax support 4K, 2M (the default) and 1G"
                          % shorten(params["align"], quote=False))


def check_size_fits(params, region, namespace, wanted_size):
    """A namespace is carved from one region: refuse a size the region cannot hold before ndctl does."""
    if region is None or not wanted_size:
        return
    free = region.get("available_size", 0)
    # Without free space the task can only reconfigure a namespace, which may take the whole region.
    room = free if namespace is None and free else region.get("size", 0)
    if wanted_size > room:
        raise ModuleError("size=%s (%s) does not fit in %s: the region is %s with %s free%s"
                          % (shorten(params["size"], quote=False), _mib(wanted_size),
                             region["dev"], _mib(region.get("size", 0)), _mib(region.get("available_size", 0)),
                             "; reconfiguring %s can use at most the region's size" % namespace["dev"]
                             if namespace is not None else ""))


def _mib(value):
    return "%d MiB" % (value >> 20)


def size_matches(actual, wanted, align):
    """ndctl reports the usable size: the capacity minus the info block and struct-page area."""
    return actual <= wanted and actual >= wanted - wanted // 64 - 2 * max(align or 0, 16 << 20)


def render(record):
    if not record:
        return ""
    return "".join("%s: %s\n" % (key, record[key]) for key in sorted(record) if record[key] is not None)


def find_target(params, inventory):
    """(namespace or None, region dict or None) the task is about."""
    regions = dict((r["dev"], r) for r in inventory["regions"])
    region = find_region(inventory, params["region"]) if params["region"] is not None else None
    if params["namespace"]:
        namespace = find_namespace(inventory, params["namespace"])
        if region is not None and namespace["region"] != region["dev"]:
            raise ModuleError("namespace %s is in %s, not in %s" % (namespace["dev"], namespace["region"],
                                                                    region["dev"]))
        return namespace, regions[namespace["region"]]
    if params["name"]:
        namespaces = [ns for ns in namespaces_of(inventory) if ns.get("size")]
        matches = [ns for ns in namespaces if ns.get("name") == params["name"]
                   and (region is None or ns["region"] == region["dev"])]
        if len(matches) > 1:
            raise ModuleError("%d namespaces are named %r (%s): name one with namespace="
                              % (len(matches), params["name"], ", ".join(ns["dev"] for ns in matches)))
        if matches:
            return matches[0], regions[matches[0]["region"]]
    return None, region


def plan_namespace(plan, tools, root):
    """Read ndctl's inventory and the record, refuse what is unsafe, plan the ndctl commands."""
    params = plan.module.params
    wanted_size, wanted_align = check_options(params)
    inventory = tools.ndctl_list()
    owned = record.read(root)
    namespace, region = find_target(params, inventory)
    if params["state"] == "present":
        check_size_fits(params, region, namespace, wanted_size)
    before = namespace_record(namespace) if namespace else None
    commands = []
    if params["state"] == "absent":
        if namespace is None:
            return
        check_hazards(plan, namespace, root, "destroy", owned)
        commands += release_system_ram(tools, namespace, root)
        commands.append(tools.destroy_namespace_argv(namespace["dev"]))
        record_change = ("drop", namespace)
        predicted = None
    else:
        if namespace is None and region is not None and not params["name"]:
            # "a <mode> namespace in <region>": one of the collection's own already there satisfies it.
            namespace = next((dict(ns, region=region["dev"]) for ns in region.get("namespaces", [])
                              if ns.get("size") and matches(ns, params, wanted_size, wanted_align)
                              and record.owns(owned, dict(ns, region=region["dev"]))), None)
            before = namespace_record(namespace) if namespace else None
        if namespace is not None and matches(namespace, params, wanted_size, wanted_align):
            plan.result["namespace"] = before
            plan.diff(render(before), render(before))
            return
        if namespace is None:
            namespace = reconfigure_candidate(params, region, owned)
        if namespace is not None:
            check_hazards(plan, namespace, root, "reconfigure", owned)
            record_change = ("add", namespace)
            commands += release_system_ram(tools, namespace, root)
            commands.append(tools.create_namespace_argv(params["mode"], reconfigure=namespace["dev"],
                                                        size=params["size"], align=params["align"],
                                                        name=params["name"]))
            before = namespace_record(namespace)
            predicted = dict(before, mode=params["mode"], align=wanted_align, blockdev=None, chardev=None)
        else:
            new_name = params["name"] or record.OWNED_NAME
            commands.append(tools.create_namespace_argv(params["mode"], region=region["dev"],
                                                        size=params["size"], align=params["align"],
                                                        name=new_name))
            predicted = {"dev": None, "region": region["dev"], "mode": params["mode"], "size": wanted_size,
                         "name": new_name, "align": wanted_align}
            record_change = ("add", None)

    created = {}

    def run_command(argv):
        _rc, out, _err = tools.run(argv)
        if "create-namespace" in argv:
            created["namespace"] = parse_created(out)

    for argv in commands:
        plan.step(command_text(argv), lambda argv=argv: run_command(argv))
    record_text = record_action(record_change, owned, params)
    if record_text:
        plan.step(record_text)  # written by finish(): the record needs the namespace ndctl made
    plan.result["namespace"] = predicted
    plan.diff(render(before), render(predicted))

    def finish():
        after = None
        if params["state"] == "present":
            final = tools.ndctl_list()
            dev = (created.get("namespace") or {}).get("dev") or (namespace or {}).get("dev")
            after = next((namespace_record(ns) for ns in namespaces_of(final) if ns.get("dev") == dev),
                         created.get("namespace"))
        if record_text:
            update_record(plan.module, root, owned, record_change, namespace, after, params)
        plan.result["namespace"] = after
        plan.diff(render(before), render(after))

    plan.when_applied(finish)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            namespace=dict(type="str"),
            region=dict(type="str"),
            name=dict(type="str"),
            mode=dict(type="str", choices=list(NAMESPACE_MODES)),
            size=dict(type="str"),
            align=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force=dict(type="bool", default=False),
        ),
        required_if=[["state", "present", ["mode"]]],
        required_one_of=[["namespace", "region", "name"]],
        supports_check_mode=True,
    )
    root = ROOT
    run(module, lambda plan: plan_namespace(plan, PmemTools(module), root), namespace=None)


def parse_created(text):
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def matches(namespace, params, wanted_size, wanted_align):
    if namespace_mode(namespace) != params["mode"]:
        return False
    if wanted_align and namespace.get("align") and namespace["align"] != wanted_align:
        return False
    if wanted_size and not size_matches(namespace.get("size", 0), wanted_size, namespace.get("align")):
        return False
    if params["name"] and namespace.get("name") != params["name"]:
        return False
    return True


def record_action(change, owned, params):
    """The record-file action of a planned change, or None when the record stays as it is."""
    kind, namespace = change
    if kind is None:
        return None
    if kind == "drop":
        return ("drop %s (%s) from %s" % (namespace["dev"], namespace["region"], record.RECORD_PATH)
                if record.find(owned, namespace) else None)
    if namespace is None:
        return "record the new namespace in %s" % record.RECORD_PATH
    entry = record.find(owned, namespace)
    if entry and entry.get("original_mode") == params["mode"]:
        return "drop %s (%s) from %s (back to its original mode %s)" % (
            namespace["dev"], namespace["region"], record.RECORD_PATH, params["mode"])
    if entry:
        return None
    return "record %s (%s) in %s" % (namespace["dev"], namespace["region"], record.RECORD_PATH)


def update_record(module, root, owned, change, namespace, after, params):
    kind, _planned = change
    if kind == "drop" or (after is None):
        entries = record.without_namespace(owned, namespace)
    else:
        final = dict(after, region=after.get("region") or (namespace or {}).get("region"))
        entry = record.find(owned, namespace) if namespace else None
        if entry and entry.get("original_mode") == params["mode"]:
            entries = record.without_namespace(owned, namespace)
        else:
            entries = record.with_namespace([e for e in owned if e is not entry], final,
                                            "created" if namespace is None else "converted",
                                            None if namespace is None else namespace_mode(namespace))
    record.write(module, entries, root)


def reconfigure_candidate(params, region, owned):
    """On a region without free space the only way to get a namespace is to reconfigure one."""
    if region is None:
        raise ModuleError("no namespace named %r exists; give region= to create it" % params["name"])
    if region.get("available_size"):
        return None
    existing = [ns for ns in region.get("namespaces", []) if ns.get("size")]
    if len(existing) != 1:
        raise ModuleError("%s has no free space and %d namespaces (%s): name the one to reconfigure with "
                          "namespace=" % (region["dev"], len(existing), ", ".join(ns["dev"] for ns in existing)))
    namespace = dict(existing[0], region=region["dev"])
    if not params["force"] and not record.owns(owned, namespace):
        raise ModuleError("%s has no free space; its namespace %s (%s) is not named by the task: set "
                          "namespace=%s to reconfigure it, or force=true"
                          % (region["dev"], namespace["dev"], namespace_mode(namespace), namespace["dev"]))
    return namespace


def check_hazards(plan, namespace, root, what, owned):
    need_force, never = hazards(plan.module, namespace, root, owned=record.owns(owned, namespace))
    if never:
        raise ModuleError("refusing to %s %s: %s" % (what, namespace["dev"], "; ".join(never)))
    if need_force and not plan.module.params["force"]:
        raise ModuleError("refusing to %s %s without force=true: %s (its data would be lost)"
                          % (what, namespace["dev"], "; ".join(need_force)))


def release_system_ram(tools, namespace, root):
    """An offline system-ram device must go back to devdax before ndctl can take the namespace."""
    system_ram, _online, _total = dax_memory_state(namespace.get("chardev"), root)
    if system_ram:
        return [tools.reconfigure_argv(namespace["chardev"], "devdax")]
    return []


if __name__ == "__main__":
    main()
