import io
import json
import os
import stat

import pytest

from tierd import cli, config

GOOD = {
    "interval_seconds": 5,
    "dram_budget": "1G",
    "workloads": [
        {"name": "vm1", "match": {"cmdline": "qemu.*-name vm1"}, "vmas": {"min_size": "64M"},
         "policy": {"pmem_max_percent": 30, "priority": 10}},
        {"name": "batch", "match": {"cgroup": "/batch.slice"}},
    ],
}


def test_good_config_gets_defaults_and_parsed_sizes():
    cfg = config.validate(json.loads(json.dumps(GOOD)))
    assert cfg["dram_budget"] == 1 << 30
    assert cfg["backend"] == "auto"
    assert cfg["mover"]["batch_pages"] >= 512
    vm1, batch = cfg["workloads"]
    assert vm1["vmas"]["min_size"] == 64 << 20
    assert vm1["policy"]["direction"] == "both" and vm1["policy"]["priority"] == 10
    assert vm1["match"]["cmdline"].search("/usr/bin/qemu-system-x86_64 -name vm1 -m 4G")
    assert batch["policy"] is None  # no policy: the workload is left alone


@pytest.mark.parametrize("size, expected", [(4096, 4096), ("512M", 512 << 20), ("2GiB", 2 << 30),
                                            ("1g", 1 << 30), ("100", 100), ("3K", 3072)])
def test_sizes(size, expected):
    assert config.parse_size(size, "k") == expected


def _with(change):
    data = json.loads(json.dumps(GOOD))
    change(data)
    return data


BAD = [
    (lambda d: d.update(backend="ebpf"), "backend: 'ebpf' is not valid; choose one of: auto, damon, page_idle"),
    (lambda d: d.update(interval_seconds=0), "interval_seconds: 0 must be >= 0.1"),
    (lambda d: d.update(interval_seconds="5"), "interval_seconds: '5' must be a number"),
    (lambda d: d.update(dram_budget="lots"), "dram_budget: 'lots' is not a size"),
    (lambda d: d.update(colour="blue"), "config: unknown key 'colour'"),
    (lambda d: d["workloads"][0]["policy"].update(pmem_max_percent=130),
     "workloads[vm1].policy.pmem_max_percent: 130 must be <= 100"),
    (lambda d: d["workloads"][0]["policy"].update(direction="sideways"),
     "workloads[vm1].policy.direction: 'sideways' is not valid; choose one of: promote, demote, both"),
    (lambda d: d["workloads"][0]["policy"].update(dram_min_percent=80),
     "pmem_max_percent 30 + dram_min_percent 80 exceed 100"),
    (lambda d: d["workloads"][0]["policy"].update(priority=1.5),
     "workloads[vm1].policy.priority: 1.5 must be an integer"),
    (lambda d: d["workloads"][0]["match"].update(cmdline="qemu(("),
     "workloads[vm1].match.cmdline: 'qemu((' is not a valid regular expression"),
    (lambda d: d["workloads"][1]["match"].update(cgroup="batch.slice"),
     "workloads[batch].match.cgroup: 'batch.slice' must be an absolute cgroup v2 path"),
    (lambda d: d["workloads"][1].update(name="vm1"), "workloads[1].name: 'vm1' is used by another workload"),
    (lambda d: d["workloads"][0].update(match={}), "workloads[vm1].match: {} must be an object with one of"),
    (lambda d: d["workloads"][0]["match"].update(pid=-4), "workloads[vm1].match.pid: -4 must be a positive integer"),
    (lambda d: d.update(mover={"batch_pages": 64}), "mover.batch_pages: 64 must be >= 512"),
    (lambda d: d.update(mover={"rate_limit_mbps": 0}), "mover.rate_limit_mbps: 0 must be > 0"),
    (lambda d: d.update(heat={"hot_threshold": 0.2, "cold_threshold": 0.3}),
     "heat.cold_threshold: 0.3 must be below heat.hot_threshold 0.2"),
    (lambda d: d.update(nodes={"dram": [0]}), "nodes: {'dram': [0]} sets only one of dram/pmem"),
    (lambda d: d.update(nodes={"dram": [0, 1], "pmem": [1]}), "nodes: node 1 is in both dram and pmem"),
    (lambda d: d.update(metrics={"textfile": "/var/lib/tierd.txt"}),
     "metrics.textfile: '/var/lib/tierd.txt' must be an absolute path ending in .prom"),
    (lambda d: d.update(damon={"sample_us": 5000, "aggr_us": 1000}),
     "damon.aggr_us: 1000 must be >= damon.sample_us 5000"),
    (lambda d: d["workloads"][0]["vmas"].update(names="[heap]"), "workloads[vm1].vmas.names: '[heap]' must be a"),
    (lambda d: d["workloads"][0]["vmas"].update(anon_only=False), "workloads[vm1].vmas: unknown key 'anon_only'"),
    (lambda d: d.update(dram_budget_per_node=["8G"]),
     "dram_budget_per_node: ['8G'] must be a mapping of DRAM node number to size"),
    (lambda d: d.update(dram_budget_per_node={"socket0": "8G"}),
     "dram_budget_per_node: node 'socket0' is not a NUMA node number; use 0 to 1023"),
    (lambda d: d.update(dram_budget_per_node={"1": "8 apples"}), "dram_budget_per_node.1: '8 apples' is not a size"),
    (lambda d: d.update(dram_budget_per_node={"0": "1G", "00": "2G"}), "dram_budget_per_node: node 0 is given twice"),
    (lambda d: d.update(nodes={"dram": [0, 1], "pmem": [2, 3]}, dram_budget_per_node={"2": "1G"}),
     "dram_budget_per_node: node 2 is not one of nodes.dram [0, 1]"),
    (lambda d: d.update(mover={"max_pages_per_interval": 0}), "mover.max_pages_per_interval: 0 must be >= 1"),
    (lambda d: d.update(mover={"lru_gen_idle_seconds": -1}), "mover.lru_gen_idle_seconds: -1 must be >= 0"),
    (lambda d: d.update(mover={"lru_gen_idle_seconds": "30s"}),
     "mover.lru_gen_idle_seconds: '30s' must be a number >= 0 and <= 86400"),
    (lambda d: d.update(mover={"max_pages_per_interval": "1G"}),
     "mover.max_pages_per_interval: '1G' must be an integer >= 1 and <= 1099511627776"),
]


def test_node_budgets_take_json_string_keys_and_sizes():
    assert config.validate({})["dram_budget_per_node"] == {}
    cfg = config.validate({"dram_budget_per_node": {"0": "8G", "1": 1 << 20}})
    assert cfg["dram_budget_per_node"] == {0: 8 << 30, 1: 1 << 20}
    assert config.validate({"dram_budget_per_node": None})["dram_budget_per_node"] == {}


def test_move_budget_defaults_to_none_and_takes_pages():
    assert config.validate({})["mover"]["max_pages_per_interval"] is None
    assert config.validate({})["mover"]["lru_gen_idle_seconds"] == 20.0
    assert config.validate({"mover": {"lru_gen_idle_seconds": 30}})["mover"]["lru_gen_idle_seconds"] == 30
    assert config.validate({"mover": {"max_pages_per_interval": 65536}})["mover"]["max_pages_per_interval"] == 65536


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0] for _c, m in BAD])
def test_bad_config_names_key_and_value(change, message):
    with pytest.raises(config.ConfigError) as err:
        config.validate(_with(change))
    assert message in str(err.value)


def test_check_config_command(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    good.chmod(0o644)  # run as root, tierd refuses a group-writable config (umask 0002)
    assert cli.main(["check-config", str(good)]) == 0
    assert "ok (2 workloads, 1 with a policy, backend auto)" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_with(lambda d: d.update(backend="ebpf"))))
    bad.chmod(0o644)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check-config", str(bad)])
    assert exit_info.value.code == 2
    assert "backend: 'ebpf' is not valid" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text('{"workloads": [}')
    broken.chmod(0o644)
    with pytest.raises(SystemExit):
        cli.main(["check-config", str(broken)])
    assert "not valid JSON" in capsys.readouterr().err


LONG = "x" * 5000
# Each message names the bad value, cut to config.EXCERPT_CHARS, and says what would be valid.
BAD_MORE = [
    (lambda d: d.update(interval_seconds=1e400), "interval_seconds: inf must be a number >= 0.1 and <= 3600"),
    (lambda d: d.update(backend=LONG), "backend: 'xxxxx"),
    (lambda d: d.update(workloads=LONG), "workloads: 'xxxx"),
    (lambda d: d.update(state_file=LONG), "must be an absolute path such as /run/tierd/state.json"),
    (lambda d: d.update(heat=[1] * 3000), "heat: [1, 1, "),
    (lambda d: d.update(mover={"block_pages": "huge"}),
     "mover.block_pages: 'huge' must be \"auto\" (the transparent huge page size) or an integer >= 1"),
    (lambda d: d.update(mover={"rate_limit_mbps": 10 ** 9}), "mover.rate_limit_mbps: 1000000000 must be <= 1000000"),
    (lambda d: d.update({LONG: 1}), "config: unknown key 'xxxx"),
    (lambda d: d["workloads"][0].update(name=LONG), "workloads[0].name: 'xxxx"),
    (lambda d: d["workloads"][0].update(name="vm1\n"), "workloads[0].name: 'vm1\\n' must be a name of 1 to 128"),
    (lambda d: d["workloads"][0]["match"].update(cmdline="(" * 3000 + ")" * 1000),
     "is not a valid regular expression (groups nested too deeply)"),
    (lambda d: d["workloads"][0]["match"].update(cmdline="a{99999999999}"),
     "workloads[vm1].match.cmdline: 'a{99999999999}' is not a valid regular expression (the repetition number"),
    (lambda d: d["workloads"][0]["match"].update(comm="a" * 5000),
     "is 5000 characters long; regular expressions may have at most 4096"),
    (lambda d: d["workloads"][0]["match"].update(cmdline="(" + "x" * 4000),
     "is not a valid regular expression (missing ), unterminated subpattern at position 0)"),
    (lambda d: d["workloads"][0]["vmas"].update(min_size="9" * 30 + "G"), "vmas.min_size: '999"),
    (lambda d: d.update(nodes={"dram": [0], "pmem": [LONG]}), "nodes.pmem: ['xxx"),
]


@pytest.mark.parametrize("change, message", BAD_MORE, ids=[m.split(":")[0] for _c, m in BAD_MORE])
def test_bad_values_are_named_but_cut_short(change, message):
    with pytest.raises(config.ConfigError) as err:
        config.validate(_with(change))
    text = str(err.value)
    assert message in text
    assert len(text) < 400, text
    if LONG in repr(_with(change)):
        assert "…" in text and LONG not in text


def test_excerpt_cuts_to_the_limit():
    assert config.excerpt("short") == "'short'"
    cut = config.excerpt("y" * 1000)
    assert len(cut) == config.EXCERPT_CHARS and cut.endswith("…")


def _write(tmp_path, data, mode=0o644, name="config.json"):
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    os.chmod(str(path), mode)  # whatever the umask: the tests below choose the mode
    return str(path)


BAD_FILES = [
    (b"[" * 100000 + b"]" * 100000, "nested deeper than 32 levels (line 1)"),
    (b'{"workloads": [' + b"[" * 40 + b"]" * 40 + b"]}", "nested deeper than 32 levels"),
    (b"\xff\xfe{}", "not UTF-8 (byte 0xff at offset 0, line 1); save the file as UTF-8"),
    (b'{"interval_seconds": NaN}', "NaN is not a number tierd accepts; use a finite number"),
    (b'{"interval_seconds": -Infinity}', "-Infinity is not a number tierd accepts"),
    (b'{"backend": "auto", "backend": "damon"}', "key 'backend' appears twice in one object; keep one of them"),
    (b'{"workloads": [}', "not valid JSON: Expecting value: line 1 column 16"),
    (b'{"interval_seconds": ' + b"1" * 5000 + b"}", "not valid JSON: Exceeds the limit (4300 digits)"),
    (b"", "not valid JSON"),
    (b"[]", "config: [] must be a JSON object"),
]


@pytest.mark.parametrize("raw, message", BAD_FILES, ids=[m.split(";")[0][:40] for _r, m in BAD_FILES])
def test_every_bad_file_is_a_config_error(tmp_path, raw, message):
    with pytest.raises(config.ConfigError) as err:
        config.load(_write(tmp_path, raw), euid=1000)
    assert message in str(err.value)
    assert len(str(err.value)) < 300


def test_brackets_in_strings_do_not_count_as_nesting(tmp_path):
    text = json.dumps({"comment": "[[[[{{{{" * 100 + '\\"]', "workloads": []})
    assert config.load(_write(tmp_path, text), euid=1000)["comment"].startswith("[[[[{{{{")


def test_hundreds_of_workloads_fit_the_size_limit():
    workloads = [{"name": "customer-%d" % i, "match": {"cmdline": "qemu-system-x86_64 .*-name guest=customer-%d" % i},
                  "vmas": {"min_size": "1G"}, "policy": {"pmem_max_percent": 30, "priority": 10}}
                 for i in range(1000)]
    text = json.dumps({"workloads": workloads}, indent=2)  # as the role writes it (to_nice_json)
    assert len(text) < config.MAX_CONFIG_BYTES / 2
    assert len(config.loads(text)["workloads"]) == 1000


def test_too_large_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    with open(str(path), "wb") as out:
        out.truncate(50 << 20)  # sparse: 50 MB of NULs
    monkeypatch.setattr(config, "read_stream", lambda *_a: pytest.fail("read a file already known to be too large"))
    with pytest.raises(config.ConfigError) as err:
        config.load(str(path), euid=1000)
    assert str(err.value) == ("%s: 52428800 bytes, over tierd's limit of 1048576 bytes (1 MiB); a config is a few KiB "
                              "(about 300 bytes per workload)" % path)


def test_file_that_grows_while_read_is_bounded(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.read_stream(io.BytesIO(b" " * (config.MAX_CONFIG_BYTES + 10)), "<stdin>")
    assert "<stdin>: more than 1048576 bytes, over tierd's limit" in str(err.value)


def test_missing_directory_and_fifo(tmp_path):
    with pytest.raises(config.ConfigError, match="missing.json: cannot read: No such file or directory"):
        config.load(str(tmp_path / "missing.json"))
    with pytest.raises(config.ConfigError, match=r"not a regular file \(a directory\)"):
        config.load(str(tmp_path))
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)  # with no writer: a blocking open() would hang here
    with pytest.raises(config.ConfigError, match=r"not a regular file \(a FIFO\)"):
        config.load(fifo)


def _stat(uid, mode):
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, 0, 100, 0, 0, 0))


@pytest.mark.parametrize("uid, mode, valid", [
    (0, 0o644, True), (0, 0o600, True), (0, 0o444, True),
    (0, 0o664, False), (0, 0o646, False), (0, 0o666, False), (1000, 0o644, False), (1000, 0o600, False),
])
def test_as_root_only_root_may_be_able_to_write_the_config(uid, mode, valid):
    if valid:
        config.check_trusted("/etc/tierd/config.json", _stat(uid, mode), euid=0)
        return
    with pytest.raises(config.ConfigError) as err:
        config.check_trusted("/etc/tierd/config.json", _stat(uid, mode), euid=0)
    text = str(err.value)
    assert text.startswith("/etc/tierd/config.json: mode %04o, owner " % mode)
    assert "uid %d" % uid in text
    assert "make it owned by root and not writable by group or others (e.g. chown root:root and chmod 0644)" in text


def test_as_another_user_ownership_and_mode_are_not_checked():
    # As a user tierd can only check the file (run and once need root), so a user's own files are fine.
    config.check_trusted("/home/u/config.json", _stat(1000, 0o666), euid=1000)


def test_load_as_root_refuses_a_file_writable_by_others(tmp_path):
    path = _write(tmp_path, json.dumps(GOOD), mode=0o666)
    assert config.load(path, euid=1000)["backend"] == "auto"
    with pytest.raises(config.ConfigError, match=r"config.json: mode 0666, owner .*not writable by group or others"):
        config.load(path, euid=0)
