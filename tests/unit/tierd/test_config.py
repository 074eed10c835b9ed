import json

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
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0] for _c, m in BAD])
def test_bad_config_names_key_and_value(change, message):
    with pytest.raises(config.ConfigError) as err:
        config.validate(_with(change))
    assert message in str(err.value)


def test_check_config_command(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    assert cli.main(["check-config", str(good)]) == 0
    assert "ok (2 workloads, 1 with a policy, backend auto)" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_with(lambda d: d.update(backend="ebpf"))))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["check-config", str(bad)])
    assert exit_info.value.code == 2
    assert "backend: 'ebpf' is not valid" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text('{"workloads": [}')
    with pytest.raises(SystemExit):
        cli.main(["check-config", str(broken)])
    assert "not valid JSON" in capsys.readouterr().err
