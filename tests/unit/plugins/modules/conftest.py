"""Shared helpers for module unit tests: run a module's main() against a recorded host.

    def test_something(fake_host, run_module):
        host = fake_host("trixie-nvdimm-devdax")          # copy of tests/unit/fixtures/<name>
        result = run_module(dax_kmem, {"device": "dax0.0"}, host, check_mode=True)
        assert result.failed is False and result.data["changed"]
        assert host.state_changing_calls() == []         # no command except list/read-only ones
        assert host.changed_files() == {}                # no sysfs/procfs/config file written

- ``fake_host(name)``: a ``FakeHost`` over a private copy of a captured fixture. Point modules at
  ``host.root`` (their module-level ``ROOT``; ``run_module`` does it). ``run_command`` is answered
  from ``host.responses`` keyed by the argv joined with spaces, the program by its basename
  (``"ndctl list -RNDi"``); the fixture's ``ndctl-list.json``/``daxctl-list.json`` are loaded for
  you. A response is ``(rc, stdout, stderr)`` or a callable ``f(host, argv) -> (rc, out, err)``;
  ``host.transitions[key] = "fixture-name"`` makes the host *become* that captured state when the
  command runs (so the module's re-read sees what the kernel did). Every argv is recorded in
  ``host.calls``; an argv with no response fails the test.
- Sysfs writes of ``_sysfs.write_text`` land in the copy. ``host.emulate_memory_blocks()`` makes a
  write to ``memoryN/state`` behave like the kernel (state + valid_zones updated);
  ``host.refuse_offline[N] = errno`` makes offlining block N fail as the kernel would.
- ``run_module(module, args, host=None, check_mode=False, diff=False)`` -> ``ModuleResult`` with
  ``.data`` (the exit/fail JSON), ``.failed``, ``.msg``.
"""

import errno as errno_codes
import json
import os
import shlex
import shutil

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures")

# Sub-commands that only read. Anything else run through run_command counts as state-changing.
READ_ONLY_COMMANDS = {
    ("ndctl", "list"), ("daxctl", "list"), ("cxl", "list"), ("ndctl", "--version"), ("daxctl", "--version"),
    ("findmnt",), ("systemctl", "is-enabled"), ("systemctl", "is-active"), ("systemctl", "show"),
    ("grub-editenv", "list"), ("grubby", "--info"), ("uname",), ("blkid",),
}

_ZONE_OF = {"online_movable": "Movable", "online_kernel": "Normal", "online": "Normal"}


class UnexpectedCommand(AssertionError):
    pass


class _Exit(Exception):
    def __init__(self, data, failed):
        super(_Exit, self).__init__(data.get("msg", ""))
        self.data = data
        self.failed = failed


class ModuleResult(object):
    def __init__(self, data, failed):
        self.data = data
        self.failed = failed
        self.msg = data.get("msg", "")

    def __repr__(self):
        return "ModuleResult(failed=%r, data=%r)" % (self.failed, self.data)


def _program(argv0):
    return os.path.basename(argv0)


def command_key(argv):
    if isinstance(argv, str):
        argv = shlex.split(argv)
    return " ".join([_program(argv[0])] + [str(a) for a in argv[1:]])


def is_read_only(argv):
    words = [_program(argv[0])] + list(argv[1:])
    return any(tuple(words[:len(prefix)]) == prefix for prefix in READ_ONLY_COMMANDS)


class FakeHost(object):
    def __init__(self, base, fixture):
        self.base = base
        self.fixture = None
        self.root = os.path.join(base, "root")
        self.responses = {}
        self.transitions = {}
        self.calls = []
        self.refuse_offline = {}
        self.binaries = {"ndctl", "daxctl", "cxl", "systemctl", "udevadm", "findmnt", "update-grub", "grubby", "blkid"}
        # blkid -p answers: {"/dev/pmem0p1": "TYPE=ext4"}; a device not listed holds no signature.
        self.signatures = {}
        self.load(fixture)
        self._initial = self.snapshot()

    # ------------------------------------------------------------ state

    def load(self, fixture):
        """Become the captured state ``fixture`` (tree and list outputs)."""
        source = os.path.join(FIXTURES, fixture)
        if not os.path.isdir(source):
            raise AssertionError("no fixture %s" % source)
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        shutil.copytree(os.path.join(source, "root"), self.root, symlinks=True)
        self.fixture = fixture
        self._make_dax_device_nodes()
        self._make_kpageflags()
        for name, key in (("ndctl-list.json", "ndctl list -RNDi"), ("daxctl-list.json", "daxctl list"),
                          ("daxctl-list-M.json", "daxctl list -M"), ("cxl-list.json", "cxl list -vvv")):
            path = os.path.join(source, name)
            if os.path.exists(path):
                with open(path) as handle:
                    self.responses[key] = (0, handle.read(), "")

    def _make_dax_device_nodes(self):
        """/dev/daxX.Y of every devdax device as a sparse file of its size (it reads as zeros, like a
        fresh namespace); ``write_dax`` puts data in one."""
        devices = os.path.join(self.root, "sys/bus/dax/devices")
        for name in sorted(os.listdir(devices)) if os.path.isdir(devices) else []:
            try:
                with open(os.path.join(devices, name, "size")) as handle:
                    size = int(handle.read().strip() or 0)
            except (IOError, OSError, ValueError):
                continue
            if not size:
                continue
            node = os.path.join(self.root, "dev", name)
            if not os.path.isdir(os.path.dirname(node)):
                os.makedirs(os.path.dirname(node))
            with open(node, "wb") as handle:
                handle.truncate(size)

    def _make_kpageflags(self):
        """/proc/kpageflags as a sparse file over every memory block: no page in use."""
        memory = os.path.join(self.root, "sys/devices/system/memory")
        if not os.path.isdir(memory):
            return
        with open(os.path.join(memory, "block_size_bytes")) as handle:
            self.block_size = int(handle.read().strip(), 16)
        blocks = [int(name[6:]) for name in os.listdir(memory) if name.startswith("memory") and name[6:].isdigit()]
        with open(os.path.join(self.root, "proc", "kpageflags"), "wb") as handle:
            handle.truncate((max(blocks) + 1) * (self.block_size // 4096) * 8 if blocks else 0)

    def use_pages(self, block, count, flags=1 << 5):
        """Mark ``count`` pages of memory block ``block`` in use (default flag: on an LRU list)."""
        import struct
        with open(os.path.join(self.root, "proc", "kpageflags"), "r+b") as handle:
            handle.seek(block * (self.block_size // 4096) * 8)
            handle.write(struct.pack("<%dQ" % count, *([flags] * count)))
        self.mark_clean()

    def write_dax(self, name, offset, data):
        with open(os.path.join(self.root, "dev", name), "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
        self.mark_clean()

    def path(self, kernel_path):
        return os.path.join(self.root, kernel_path.lstrip("/"))

    def read(self, kernel_path):
        with open(self.path(kernel_path)) as handle:
            return handle.read().strip()

    def write(self, kernel_path, text):
        target = self.path(kernel_path)
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target))
        with open(target, "w") as handle:
            handle.write(text)

    def snapshot(self):
        files = {}
        for top, _dirs, names in os.walk(self.base):
            for name in names:
                path = os.path.join(top, name)
                if os.path.islink(path):
                    files[os.path.relpath(path, self.root)] = "-> " + os.readlink(path)
                    continue
                if os.path.relpath(path, self.root).startswith("dev" + os.sep):
                    # Device nodes are sparse and large: their modification time stands for them.
                    files[os.path.relpath(path, self.root)] = "mtime %r" % os.stat(path).st_mtime
                    continue
                with open(path, "rb") as handle:
                    files[os.path.relpath(path, self.root)] = handle.read()
        return files

    def changed_files(self):
        """{path: (before, after)} of files written since the host was made (or last load)."""
        now = self.snapshot()
        keys = set(now) | set(self._initial)
        return dict((k, (self._initial.get(k), now.get(k))) for k in sorted(keys) if self._initial.get(k) != now.get(k))

    def mark_clean(self):
        self._initial = self.snapshot()

    # ------------------------------------------------------------ commands

    def run_command(self, argv, **kwargs):
        if isinstance(argv, str):
            argv = shlex.split(argv)
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        key = command_key(argv)
        if key in self.transitions:
            self.load(self.transitions[key])
            response = self.responses.get(key, (0, "", ""))
        elif key in self.responses:
            response = self.responses[key]
        elif _program(argv[0]) == "blkid":
            signature = self.signatures.get(argv[-1])
            response = (0, signature + "\n", "") if signature else (2, "", "")
        else:
            raise UnexpectedCommand("unexpected command %r (known: %s)" % (key, sorted(self.responses)))
        if callable(response):
            response = response(self, argv)
        return response

    def commands(self):
        return [command_key(argv) for argv in self.calls]

    def state_changing_calls(self):
        return [command_key(argv) for argv in self.calls if not is_read_only(argv)]

    # ------------------------------------------------------------ kernel emulation

    def emulate_memory_blocks(self, monkeypatch):
        """Writes to memoryN/state behave like the kernel's (including refusals)."""
        from ansible_collections.tiering.pmem.plugins.module_utils import _sysfs

        real_write = _sysfs.write_text
        host = self

        def write_text(path, value, root="/"):
            parts = path.strip("/").split("/")
            if path.endswith("/state") and "/memory/memory" in path:
                index = int(parts[-2][len("memory"):])
                state_file = os.path.join(root, path.lstrip("/"))
                zones_file = os.path.join(os.path.dirname(state_file), "valid_zones")
                if not os.path.exists(state_file):
                    return "No such file or directory (errno ENOENT: %s)" % path
                if value == "offline" and index in host.refuse_offline:
                    code = host.refuse_offline[index]
                    return "%s (errno %s: %s)" % (os.strerror(code), errno_codes.errorcode[code], path)
                with open(state_file) as handle:
                    current = handle.read().strip()
                if value in _ZONE_OF:
                    if current == "online":
                        return "Invalid argument (errno EINVAL: %s)" % path
                    with open(zones_file) as handle:
                        valid = handle.read().split()
                    # Like the kernel: online takes the first valid zone, online_kernel the first
                    # that is not Movable (DMA32 below 4 GiB), online_movable Movable.
                    if value == "online_movable":
                        zone = "Movable"
                    elif value == "online_kernel":
                        zone = next((z for z in valid if z != "Movable"), "Normal")
                    else:
                        zone = valid[0] if valid else "Normal"
                    with open(state_file, "w") as handle:
                        handle.write("online\n")
                    with open(zones_file, "w") as handle:
                        handle.write(zone + "\n")
                    return None
                if value == "offline":
                    if current == "offline":
                        return "Invalid argument (errno EINVAL: %s)" % path
                    with open(state_file, "w") as handle:
                        handle.write("offline\n")
                    with open(zones_file, "w") as handle:
                        handle.write("Normal Movable\n")
                    return None
            return real_write(path, value, root)

        monkeypatch.setattr(_sysfs, "write_text", write_text)


@pytest.fixture
def fake_host(tmp_path):
    def make(fixture):
        return FakeHost(str(tmp_path / "host"), fixture)
    return make


@pytest.fixture
def run_module(monkeypatch):
    def run(module, args, host=None, check_mode=False, diff=False):
        def exit_json(self, **kwargs):
            kwargs.setdefault("changed", False)
            raise _Exit(kwargs, failed=False)

        def fail_json(self, msg, **kwargs):
            kwargs["msg"] = msg
            kwargs["failed"] = True
            raise _Exit(kwargs, failed=True)

        monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
        if host is not None:
            monkeypatch.setattr(basic.AnsibleModule, "run_command",
                                lambda self, argv, **kw: host.run_command(argv, **kw))

            def get_bin_path(self, name, required=False, opt_dirs=None):
                if name in host.binaries:
                    return "/usr/bin/" + name
                if required:
                    self.fail_json(msg="Failed to find required executable %s" % name)
                return None

            monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
            if hasattr(module, "ROOT"):
                monkeypatch.setattr(module, "ROOT", host.root)
        full_args = dict(args)
        if check_mode:
            full_args["_ansible_check_mode"] = True
        if diff:
            full_args["_ansible_diff"] = True
        with patch_module_args(full_args):
            try:
                module.main()
            except _Exit as done:
                return ModuleResult(done.data, done.failed)
        raise AssertionError("%s.main() returned without exit_json/fail_json" % module.__name__)

    return run


def load_json(fixture, name):
    with open(os.path.join(FIXTURES, fixture, name)) as handle:
        return json.load(handle)
