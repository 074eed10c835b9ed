# -*- coding: utf-8 -*-
# Copyright: tiering.pmem contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection owns: the namespace name it gives, and its record file on the host.

Owns ``/etc/tiering-pmem/owned.json``. Used by ndctl_namespace (adds what it creates or converts,
drops what it destroys), dax_kmem (adds the devices it makes system RAM), cxl_region (adds the CXL
regions it creates, by their memory devices, drops the ones it destroys) and pmem_info (reports
ownership, which status.yml and teardown.yml read).

A namespace is the collection's when it carries the name ``tiering-pmem`` (labelled regions keep
names in their labels) or when the record lists it. Label-less pmem (``memmap=``, NVDIMMs without
a label area) keeps no names, so the record is the only memory of what was converted. A record
entry matches a namespace by region and device name, and by uuid whenever both have one: a
namespace re-created by someone else under the same name gets a new uuid and is not ours.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.tiering.pmem.plugins.module_utils._files import read_file, write_file_atomic

OWNED_NAME = "tiering-pmem"
RECORD_PATH = "/etc/tiering-pmem/owned.json"
RECORD_VERSION = 1


def read(root="/"):
    """The record's entries (a list of dicts); an absent or unreadable record is empty."""
    text = read_file(RECORD_PATH, root)
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    entries = data.get("namespaces") if isinstance(data, dict) else None
    return [entry for entry in entries or [] if isinstance(entry, dict)]


def text_of(entries):
    entries = sorted(entries, key=lambda e: (e.get("region") or "", e.get("dev") or "", e.get("device") or "",
                                             e.get("cxl_memdevs") or []))
    return json.dumps({"version": RECORD_VERSION, "namespaces": entries}, indent=2, sort_keys=True) + "\n"


def write(module, entries, root="/"):
    write_file_atomic(module, RECORD_PATH, text_of(entries), root, mode=0o644)


def entry_matches(entry, namespace):
    if entry.get("dev") != namespace.get("dev") or entry.get("region") != namespace.get("region"):
        return False
    if entry.get("uuid") and namespace.get("uuid"):
        return entry["uuid"] == namespace["uuid"]
    return True


def find(entries, namespace):
    return next((entry for entry in entries if entry.get("dev") and entry_matches(entry, namespace)), None)


def owns(entries, namespace):
    """True when the namespace is the collection's (its name, or a record entry)."""
    return namespace.get("name") == OWNED_NAME or find(entries, namespace) is not None


def owns_device(entries, device):
    """A dax device without a namespace (firmware "Soft Reserved" / hmem memory) recorded by name."""
    return any(entry.get("device") == device and not entry.get("dev") for entry in entries)


def with_namespace(entries, namespace, how, original_mode=None):
    """Entries with ``namespace`` recorded (replacing an older entry of the same device)."""
    old = find(entries, namespace) or {}
    kept = [entry for entry in entries if entry is not old and not (
        entry.get("dev") == namespace.get("dev") and entry.get("region") == namespace.get("region"))]
    entry = {
        "dev": namespace.get("dev"),
        "region": namespace.get("region"),
        "uuid": namespace.get("uuid"),
        "name": namespace.get("name"),
        "size": namespace.get("size"),
        "how": old.get("how") or how,
        "original_mode": old.get("original_mode") or original_mode,
    }
    return kept + [entry]


def with_device(entries, device):
    if owns_device(entries, device):
        return list(entries)
    return list(entries) + [{"device": device, "how": "system-ram"}]


def without_namespace(entries, namespace):
    return [entry for entry in entries if not (entry.get("dev") and entry_matches(entry, namespace))]


def owns_cxl_region(entries, memdevs):
    """A CXL region is recorded by its memory devices, in interleave order: its name is the kernel's."""
    return any(entry.get("cxl_memdevs") == list(memdevs) for entry in entries)


def with_cxl_region(entries, memdevs):
    if owns_cxl_region(entries, memdevs):
        return list(entries)
    return list(entries) + [{"cxl_memdevs": list(memdevs), "how": "created"}]


def without_cxl_region(entries, memdevs):
    return [entry for entry in entries if entry.get("cxl_memdevs") != list(memdevs)]
