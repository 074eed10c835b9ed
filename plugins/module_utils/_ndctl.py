# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ndctl's tools (ndctl, daxctl and cxl): their command lines, their JSON, and finding a region or
namespace in it.

Every command runs through ``module.run_command`` with a list of arguments and the C locale; the
return code is always checked and a failure carries the tool's stderr. Used by ndctl_namespace,
dax_kmem and _pmem_inventory (pmem_info; cxl's tree is flattened by _cxl).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.tiering.pmem.plugins.module_utils._plan import ModuleError

ENVIRON_UPDATE = {"LANGUAGE": "C", "LC_ALL": "C"}

NAMESPACE_MODES = ("devdax", "fsdax", "raw", "sector")
DAX_MODES = ("devdax", "system-ram")

# A host has CXL memory to list only when the kernel has a CXL root (most hosts have none).
CXL_BUS_DIR = "sys/bus/cxl/devices"

# daxctl's refusal when the kernel would online hot-added memory by itself (daxctl issues #246/#291).
AUTO_ONLINE_REFUSAL = "kernel policy will auto-online memory"


class PmemToolError(ModuleError):
    """ndctl or daxctl failed (or printed what cannot be parsed): the command, its rc and output."""

    reports_plan = True

    def __init__(self, msg, argv=None, rc=None, stdout="", stderr=""):
        super(PmemToolError, self).__init__(msg, cmd=argv, rc=rc, stdout=stdout, stderr=stderr)
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def parse_json_output(text):
    """ndctl/daxctl print nothing at all when there is nothing to list."""
    text = (text or "").strip()
    return json.loads(text) if text else None


def normalise_ndctl_list(data):
    """``ndctl list -RNDi`` output -> {"dimms": [...], "regions": [...]} whatever shape it took.

    ndctl prints an object with "dimms"/"regions" keys when it lists several kinds, a bare array
    when it lists one kind only, and nothing when there is nothing.
    """
    result = {"dimms": [], "regions": []}
    if data is None:
        return result
    if isinstance(data, dict):
        if "regions" in data or "dimms" in data:
            result["dimms"] = list(data.get("dimms", []))
            result["regions"] = list(data.get("regions", []))
            return result
        data = [data]
    for item in data:
        dev = item.get("dev", "")
        if dev.startswith("region"):
            result["regions"].append(item)
        elif dev.startswith("nmem"):
            result["dimms"].append(item)
    return result


def normalise_daxctl_list(data):
    if data is None:
        return []
    if isinstance(data, dict):
        return [data]
    return list(data)


def namespaces_of(ndctl_inventory):
    """Every namespace, flattened, each with its "region"."""
    result = []
    for region in ndctl_inventory["regions"]:
        for namespace in region.get("namespaces", []):
            item = dict(namespace)
            item["region"] = region.get("dev")
            result.append(item)
    return result


def region_name(value):
    """``0`` or ``region0`` -> ``region0``: tasks may name a region either way."""
    value = str(value)
    return value if value.startswith("region") else "region" + value


def find_region(ndctl_inventory, value):
    """The region a task names (``value`` as the task gave it); ModuleError listing the regions if none."""
    regions = dict((region["dev"], region) for region in ndctl_inventory["regions"])
    region = regions.get(region_name(value))
    if region is None:
        raise ModuleError("region %r does not exist; regions: %s"
                          % (value, ", ".join(sorted(regions)) or "none (no pmem found by ndctl)"))
    return region


def find_namespace(ndctl_inventory, dev, idle=True):
    """The namespace ``dev`` (with its "region"); ModuleError listing the namespaces if none.

    ``idle``: also match namespaces of size 0 (a labelled region's seed), which ndctl can
    reconfigure but which have no device to use. Only namespaces with a size are listed.
    """
    every = namespaces_of(ndctl_inventory)
    sized = [namespace for namespace in every if namespace.get("size")]
    match = next((namespace for namespace in (every if idle else sized) if namespace.get("dev") == dev), None)
    if match is None:
        raise ModuleError("namespace %r does not exist; namespaces: %s"
                          % (dev, ", ".join(namespace["dev"] for namespace in sized) or "none"))
    return match


def tool_message(text, limit=600):
    """What ndctl/daxctl said, without the usage text they print after a bad option, and bounded."""
    kept = []
    for line in text.strip().splitlines():
        if line.strip().startswith("usage:"):
            break
        kept.append(line.strip())
    message = " ".join(line for line in kept if line) or "no output"
    return message if len(message) <= limit else message[:limit] + "... (%d characters)" % len(message)


class PmemTools:
    """ndctl/daxctl through one AnsibleModule."""

    def __init__(self, module):
        self.module = module
        self._paths = {}

    def bin(self, name):
        if name not in self._paths:
            self._paths[name] = self.module.get_bin_path(name, required=True)
        return self._paths[name]

    def run(self, argv, check=True):
        rc, out, err = self.module.run_command(argv, environ_update=ENVIRON_UPDATE)
        if check and rc != 0:
            raise PmemToolError(
                "'%s' failed (rc %s): %s" % (" ".join(argv), rc, tool_message(err or out)),
                argv=argv, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    # ------------------------------------------------------------ read-only

    def ndctl_list(self):
        """Regions, namespaces (idle ones too) and dimms: one ndctl call."""
        argv = [self.bin("ndctl"), "list", "-RNDi"]
        _rc, out, _err = self.run(argv)
        try:
            return normalise_ndctl_list(parse_json_output(out))
        except ValueError as exc:
            raise PmemToolError("cannot parse the output of '%s': %s" % (" ".join(argv), exc), argv=argv, stdout=out)

    def daxctl_list(self):
        """Dax devices with mode, target_node and memory block counts: one daxctl call."""
        argv = [self.bin("daxctl"), "list"]
        _rc, out, _err = self.run(argv)
        try:
            return normalise_daxctl_list(parse_json_output(out))
        except ValueError as exc:
            raise PmemToolError("cannot parse the output of '%s': %s" % (" ".join(argv), exc), argv=argv, stdout=out)

    def cxl_list(self, root="/"):
        """The tree of ``cxl list -vvv`` (a list of buses; see _cxl), or [] without a CXL root or the tool."""
        try:
            if not any(name.startswith("root") for name in os.listdir(os.path.join(root, CXL_BUS_DIR))):
                return []
        except OSError:
            return []
        binary = self.module.get_bin_path("cxl")
        if not binary:
            return []
        argv = [binary, "list", "-vvv"]
        _rc, out, _err = self.run(argv)
        try:
            tree = parse_json_output(out)
        except ValueError as exc:
            raise PmemToolError("cannot parse the output of '%s': %s" % (" ".join(argv), exc), argv=argv, stdout=out)
        return [tree] if isinstance(tree, dict) else tree or []

    # ------------------------------------------------------------ cxl: regions

    def create_region_argv(self, decoder, memdevs, region_type="ram", size=None, granularity=None):
        """``cxl create-region``: a region of ``memdevs`` (interleaved in that order) in root ``decoder``."""
        argv = [self.bin("cxl"), "create-region", "-t", region_type, "-d", decoder, "-w", str(len(memdevs))]
        if size:
            argv += ["-s", str(size)]
        if granularity:
            argv += ["-g", str(granularity)]
        return argv + ["-m"] + list(memdevs)

    def disable_region_argv(self, region):
        return [self.bin("cxl"), "disable-region", region]

    def destroy_region_argv(self, region):
        return [self.bin("cxl"), "destroy-region", region]

    # ------------------------------------------------------------ ndctl: namespaces

    def create_namespace_argv(self, mode, reconfigure=None, region=None, size=None, align=None, name=None):
        """``ndctl create-namespace``: reconfigure an existing namespace (-fe) or create one in a region."""
        argv = [self.bin("ndctl"), "create-namespace", "--mode=%s" % mode]
        if reconfigure:
            argv += ["--force", "--reconfig=%s" % reconfigure]
        elif region:
            argv += ["--region=%s" % region]
        if size:
            argv += ["--size=%s" % size]
        if align:
            argv += ["--align=%s" % align]
        if name:
            argv += ["--name=%s" % name]
        return argv

    def destroy_namespace_argv(self, namespace):
        return [self.bin("ndctl"), "destroy-namespace", "--force", namespace]

    # ------------------------------------------------------------ daxctl: dax devices

    def reconfigure_argv(self, device, mode, online=True, movable=True, force=False):
        argv = [self.bin("daxctl"), "reconfigure-device", "--mode=%s" % mode]
        if mode == "system-ram":
            if not online:
                argv.append("--no-online")
            elif not movable:
                argv.append("--no-movable")
        if force:
            argv.append("--force")
        argv.append(device)
        return argv

    def online_memory_argv(self, device, movable=True):
        return [self.bin("daxctl"), "online-memory", "--movable" if movable else "--no-movable", device]

    def offline_memory_argv(self, device):
        return [self.bin("daxctl"), "offline-memory", device]
