"""`tierd check-config` and the SIGHUP reload under bad config files.

check-config prints one short line and exits 2, whatever the file holds; a reload with a bad
file keeps the running config, and the agent keeps running.
"""
import io
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, ListStream
from test_agent import make_agent
from tierd import cli, config
from tierd.cli import ConfigReloader
from tierd.log import Logger

GOOD = {"interval_seconds": 5, "workloads": [{"name": "vm1", "match": {"cmdline": "qemu.*-name vm1"},
                                              "policy": {"pmem_max_percent": 30}}]}
NESTED = "[" * 100000 + "]" * 100000
BAD_REGEX = {"workloads": [{"name": "vm1", "match": {"cmdline": "qemu-system-x86_64 -name (vm1" + "x" * 500}}]}


def _write(path, data, mode=0o644):
    with open(str(path), "wb") as out:
        out.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(str(path), mode)
    return str(path)


def _numbers_file(path, size=50 << 20):
    """A JSON list of numbers of about ``size`` bytes (the mistaken data file put in the config's place)."""
    chunk = ",".join(str(n) for n in range(100000, 200000)).encode()  # 700 kB
    with open(str(path), "wb") as out:
        out.write(b"[")
        while out.tell() < size:
            out.write(chunk + b",")
        out.write(b"0]")
    os.chmod(str(path), 0o644)  # as root tierd refuses a group-writable file first, whatever the umask made
    return str(path)


def _check_config(*argv, stdin=None):
    """(exit code, stdout, stderr) of the real command, so a traceback would show as it would for a user."""
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tierd"))
    proc = subprocess.run([sys.executable, "-m", "tierd", "check-config"] + list(argv), input=stdin, env=env,
                          capture_output=True, check=False, timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _assert_one_short_line(err):
    assert "Traceback" not in err
    assert len(err) < 500, err
    assert err.count("\n") == 1 and err.startswith("tierd: invalid config: "), err


def test_50_mb_of_numbers_is_one_line_naming_the_size_limit(tmp_path):
    path = _numbers_file(tmp_path / "numbers.json")
    rc, out, err = _check_config(path)
    assert rc == 2 and out == ""
    _assert_one_short_line(err)
    assert "over tierd's limit of 1048576 bytes (1 MiB)" in err
    assert "100000,100001" not in err  # nothing of the file is echoed


def test_deep_nesting_is_one_line_naming_the_depth_limit(tmp_path):
    rc, out, err = _check_config(_write(tmp_path / "nested.json", NESTED))
    assert rc == 2 and out == ""
    _assert_one_short_line(err)
    assert "nested deeper than 32 levels" in err


def test_bad_regex_names_the_regex_cut_short_and_the_re_error(tmp_path):
    rc, _out, err = _check_config(_write(tmp_path / "regex.json", json.dumps(BAD_REGEX)))
    assert rc == 2
    _assert_one_short_line(err)
    assert "workloads[vm1].match.cmdline: 'qemu-system-x86_64 -name (vm1xxxx" in err
    assert "…" in err and "x" * 100 not in err
    assert "(missing ), unterminated subpattern at position 25)" in err


@pytest.mark.parametrize("data", [b"\xff\xfe\x00{", b'{"workloads": [}', b'{"interval_seconds": NaN}',
                                  b'{"heat": ' + json.dumps(["x" * 1000] * 1000).encode() + b"}",
                                  b'{"' + b"k" * 100000 + b'": 1}'],
                         ids=["not-utf8", "not-json", "nan", "huge-value", "huge-key"])
def test_other_bad_files_are_one_short_line(tmp_path, data):
    rc, _out, err = _check_config(_write(tmp_path / "bad.json", data))
    assert rc == 2
    _assert_one_short_line(err)


def test_missing_file(tmp_path):
    rc, _out, err = _check_config(str(tmp_path / "missing.json"))
    assert rc == 2
    _assert_one_short_line(err)
    assert "missing.json: cannot read: No such file or directory" in err


def test_stdin_good_and_bad():
    rc, out, err = _check_config("-", stdin=json.dumps(GOOD).encode())
    assert (rc, out, err) == (0, "<stdin>: ok (1 workloads, 1 with a policy, backend auto)\n", "")
    rc, out, err = _check_config("-", stdin=NESTED.encode())
    assert rc == 2 and out == ""
    _assert_one_short_line(err)
    assert "<stdin>: nested deeper than 32 levels" in err


def test_stdin_larger_than_the_limit_is_not_read_whole(monkeypatch, capsys):
    stream = io.BytesIO(b"1" * (50 << 20))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check-config", "-"])
    assert exit_info.value.code == 2
    assert stream.tell() <= config.MAX_CONFIG_BYTES + 1 + io.DEFAULT_BUFFER_SIZE
    err = capsys.readouterr().err
    assert "<stdin>: more than 1048576 bytes, over tierd's limit" in err and len(err) < 500


def test_writable_by_others_as_root(tmp_path, monkeypatch, capsys):
    path = _write(tmp_path / "config.json", json.dumps(GOOD), mode=0o666)
    monkeypatch.setattr(config.os, "geteuid", lambda: 0)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check-config", path])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "config.json: mode 0666, owner " in err
    assert "make it owned by root and not writable by group or others (e.g. chown root:root and chmod 0644)" in err


# ---------------------------------------------------------------------------------------------
BAD_RELOADS = {
    "nested": lambda path: _write(path, NESTED),
    "oversized": _numbers_file,
    "bad-regex": lambda path: _write(path, json.dumps(BAD_REGEX)),
    "writable-by-others": lambda path: _write(path, json.dumps(dict(GOOD, interval_seconds=7)), mode=0o666),
    "not-utf8": lambda path: _write(path, b'{"comment": "\xff"}'),
    "duplicate-key": lambda path: _write(path, '{"interval_seconds": 1, "interval_seconds": 2}'),
    "removed": os.unlink,
}
REASONS = {"nested": "nested deeper than 32 levels", "oversized": "over tierd's limit of 1048576 bytes",
           "bad-regex": "is not a valid regular expression", "writable-by-others": "mode 0666, owner ",
           "not-utf8": "not UTF-8", "duplicate-key": "appears twice", "removed": "No such file or directory"}


@pytest.fixture
def as_root(monkeypatch):
    """tierd's ownership check as it runs under systemd (as a user the check is off)."""
    monkeypatch.setattr(config.os, "geteuid", lambda: 0)
    monkeypatch.setattr(config, "check_trusted", _trusted_except_for_mode(config.check_trusted))


def _trusted_except_for_mode(check):
    # The test's files belong to whoever runs the tests: only the mode decides here.
    def check_mode(path, info, euid):
        return check(path, os.stat_result((info.st_mode, 0, 0, 1, 0) + tuple(info)[5:]), euid)
    return check_mode


@pytest.mark.parametrize("kind", sorted(BAD_RELOADS))
def test_bad_reload_keeps_the_running_config(tmp_path, as_root, kind):
    path = tmp_path / "config.json"
    _write(path, json.dumps(GOOD))
    stream = ListStream()
    reloader = ConfigReloader(str(path), Logger(stream))
    reloader.request()
    assert reloader()["interval_seconds"] == 5
    BAD_RELOADS[kind](path)
    reloader.request()
    assert reloader() is None
    line = stream.lines[-1]
    assert "event=reload_rejected" in line and 'action="keeping the running config"' in line
    assert REASONS[kind] in line
    assert len(line) < 600, line
    _write(path, json.dumps(dict(GOOD, interval_seconds=9)))  # fixed: the next SIGHUP takes it
    reloader.request()
    assert reloader()["interval_seconds"] == 9


def test_agent_keeps_running_its_config_through_bad_reloads(guest_root, tmp_path, as_root):
    agent, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    running = agent.cfg
    path = tmp_path / "config.json"
    reloader = ConfigReloader(str(path), agent.logger)
    bad = iter(sorted(BAD_RELOADS))
    readings = iter(range(10 ** 6))
    agent.clock = lambda: next(readings) * 100.0  # every interval looks overdue: run() never waits

    def sighup_with_a_bad_file():
        _write(path, "{}")
        BAD_RELOADS[next(bad)](path)
        reloader.request()
        return reloader()

    agent.run(max_intervals=len(BAD_RELOADS) + 1, reload_source=sighup_with_a_bad_file)
    assert agent.intervals == len(BAD_RELOADS) + 1
    assert agent.cfg is running
    assert sum("event=reload_rejected" in line for line in stream.lines) == len(BAD_RELOADS)
    assert "event=stop" in stream.lines[-1]


def test_reload_with_a_metrics_port_in_use_keeps_the_running_config(guest_root, tmp_path):
    agent, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    running = agent.cfg
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        new = config.validate({"interval_seconds": 2, "damon": {"sample_us": 100000, "aggr_us": 1000000},
                               "metrics": {"http_port": port}})
        assert agent.reload(new) is False
    finally:
        taken.close()
        agent.close()
    assert agent.cfg is running and agent.http is None
    assert any("event=reload_rejected" in line and "metrics.http_port %d: cannot listen" % port in line
               for line in stream.lines)
