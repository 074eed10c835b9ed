"""Lifecycle over the recorded trixie tree: a PMEM node that comes online after tierd, heat kept
across a restart (and a SIGHUP reload), and a heat file that is corrupt, stale or too big."""

import json
import os

from test_agent import make_agent
from tierd import heat_store, status
from tierd.config import validate

NODE_ONLINE = "sys/devices/system/node/online"


def set_start_time(root, pid, ticks):
    """/proc/PID/stat with ``ticks`` as field 22 (the recorded tree has no stat file)."""
    fields = ["S"] + ["0"] * 18 + [str(ticks)] + ["0"] * 30
    open(os.path.join(root, "proc", str(pid), "stat"), "w").write("%d (workload) %s\n" % (pid, " ".join(fields)))


def test_waits_for_a_pmem_node_that_comes_online_late(guest_root, tmp_path):
    open(os.path.join(guest_root, NODE_ONLINE), "w").write("0\n")
    agent, kernel, placement, info, stream = make_agent(guest_root, tmp_path, {"pmem_max_percent": 30})
    assert "dram_nodes=\"\" pmem_nodes=\"\" nodes_from=waiting" in stream.lines[0]
    assert any("event=nodes_missing" in line and "no PMEM tier found" in line for line in stream.lines)
    assert agent.step() is True
    assert [call for call in kernel.calls if call[2] is not None] == []
    assert "waiting for the PMEM node: no PMEM tier found" in status.render(agent.state)
    assert json.load(open(str(tmp_path / "state.json")))["waiting_for_nodes"].startswith("no PMEM tier found")
    open(os.path.join(guest_root, NODE_ONLINE), "w").write("0-1\n")
    agent.run(max_intervals=3)
    assert any("event=nodes_found dram_nodes=0 pmem_nodes=1 nodes_from=memory_tiering lower_tiers=1 after_intervals=1" in line
               for line in stream.lines)
    total = info["length"] // 4096
    assert sum(1 for node in placement.values() if node == 1) <= int(total * 0.30)
    assert "waiting_for_nodes" not in agent.state


def test_heat_survives_a_restart_of_the_same_process(guest_root, tmp_path):
    agent, _kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    recorded_pid = info["pid"]
    set_start_time(guest_root, recorded_pid, 4242)
    agent.run(max_intervals=3)  # close() saves
    before = agent.heat.heat[recorded_pid]
    saved = json.load(open(str(tmp_path / "heat.json")))
    assert os.stat(str(tmp_path / "heat.json")).st_mode & 0o777 == 0o600  # other processes' addresses
    assert saved["pids"][str(recorded_pid)]["workload"] == "wl"
    assert saved["pids"][str(recorded_pid)]["start_time"] == 4242

    again, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    again.step()
    assert any("event=heat_restored pids=1 saved_pids=1" in line for line in stream.lines)
    for mapping, extents in before.items():
        # The heat comes back, but the new tierd's kdamond is a new DAMON target whose readings start
        # over, so its warm-up starts again too (one sample since the restart, not 3 + 1).
        assert agent.heat.sampled(recorded_pid, *mapping) >= 3
        assert again.heat.sampled(recorded_pid, *mapping) == 1
        assert len(again.heat.heat[recorded_pid][mapping]) >= 1
    hottest_before = max(h for extents in before.values() for _l, _h, h in extents)
    hottest_after = max(h for extents in again.heat.heat[recorded_pid].values() for _l, _h, h in extents)
    assert hottest_after > again.heat.initial and abs(hottest_after - hottest_before) < 0.3
    again.close()


def test_heat_survives_a_restart_after_the_mapping_grew(guest_root, tmp_path):
    agent, _kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    set_start_time(guest_root, info["pid"], 4242)
    agent.run(max_intervals=3)
    hottest, hot_address, (start, end) = max((heat, low, mapping) for mapping, extents in agent.heat.heat[info["pid"]].items()
                                             for low, _high, heat in extents)
    assert hottest > agent.heat.initial and hot_address < end - 16 * 4096
    heat_file = tmp_path / "heat.json"
    saved = json.load(open(str(heat_file)))
    # Saved while the mapping was 16 pages shorter (a heap brk has grown since, or a merged mmap).
    for mapping in saved["pids"][str(info["pid"])]["mappings"]:
        if mapping[0] == start:
            mapping[1] = end - 16 * 4096
            mapping[3] = [[low, min(high, mapping[1]), heat] for low, high, heat in mapping[3] if low < mapping[1]]
    heat_file.write_text(json.dumps(saved))

    again, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    again.step()
    assert any("event=heat_restored pids=1 saved_pids=1" in line for line in stream.lines)
    assert again.heat.heat_at(info["pid"], hot_address) > again.heat.initial  # its heat, not a new mapping's
    assert again.heat.sampled(info["pid"], start, end) == 1  # the new kdamond's warm-up starts over all the same
    again.close()


def test_heat_of_a_reused_pid_or_another_workload_is_not_restored(guest_root, tmp_path):
    agent, _kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    set_start_time(guest_root, info["pid"], 4242)
    agent.run(max_intervals=2)
    set_start_time(guest_root, info["pid"], 9999)  # the same PID, another process
    again, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    again.step()
    assert not any("event=heat_restored" in line for line in stream.lines)
    assert again.heat.sampled(info["pid"], *next(iter(again.heat.heat[info["pid"]]))) == 1
    again.close()

    set_start_time(guest_root, info["pid"], 4242)
    assert heat_store.load(str(tmp_path / "heat.json"), again.kernel)[0] == {}  # again.close() saved start 9999
    again, _kernel, _placement, _info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    again.run(max_intervals=1)
    renamed, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    renamed.cfg["workloads"][0]["name"] = "other"
    renamed.step()
    assert any("event=heat_restored pids=0 saved_pids=1" in line for line in stream.lines)
    renamed.close()


def test_a_corrupt_or_oversized_heat_file_is_ignored_with_a_line(guest_root, tmp_path, monkeypatch):
    heat_file = tmp_path / "heat.json"
    heat_file.write_text("{not json")
    agent, _kernel, _placement, _info, stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    assert any("event=heat_not_restored" in line and "unreadable" in line and "starting cold" in line
               for line in stream.lines)
    agent.run(max_intervals=1)  # runs and replaces the file
    assert json.load(open(str(heat_file)))["format"] == heat_store.FORMAT
    info = _info
    set_start_time(guest_root, info["pid"], 1)
    gap = {"format": 1, "pids": {str(info["pid"]): {"workload": "wl", "start_time": 1,
                                                    "mappings": [[0, 8192, 3, [[0, 4096, 0.5], [5000, 8192, 0.1]]]]}}}
    heat_file.write_text(json.dumps(gap))
    assert heat_store.load(str(heat_file), agent.kernel) == ({}, "malformed entry for PID %d" % info["pid"])
    heat_file.write_text(json.dumps({"format": 1, "pids": {str(info["pid"]): {
        "workload": "wl", "start_time": 1, "mappings": [[0, 8192, 3, [[0, 8192, float("nan")]]]]}}}))
    assert heat_store.load(str(heat_file), agent.kernel)[1].startswith("malformed")
    heat_file.write_text(json.dumps({"format": 2, "pids": {}}))
    assert heat_store.load(str(heat_file), agent.kernel)[1] == "not a tierd heat file of format 1"
    monkeypatch.setattr(heat_store, "MAX_FILE_BYTES", 10)
    assert "over the limit of 10" in heat_store.load(str(heat_file), agent.kernel)[1]
    assert heat_store.load(str(tmp_path / "missing.json"), agent.kernel) == ({}, None)


def test_saved_heat_is_bounded(guest_root, tmp_path, monkeypatch):
    agent, _kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    set_start_time(guest_root, info["pid"], 7)
    agent.run(max_intervals=2)
    extents = sum(len(runs) for runs in agent.heat.heat[info["pid"]].values())
    assert heat_store.save(str(tmp_path / "heat.json"), agent.heat, {info["pid"]: "wl"}, agent.kernel) == (1, extents)
    monkeypatch.setattr(heat_store, "MAX_EXTENTS", extents - 1)
    assert heat_store.save(str(tmp_path / "heat.json"), agent.heat, {info["pid"]: "wl"}, agent.kernel) == (0, 0)


def test_a_sighup_reload_keeps_the_heat(guest_root, tmp_path):
    agent, _kernel, _placement, info, _stream = make_agent(guest_root, tmp_path, {"direction": "both"})
    agent.step()
    agent.step()
    before = {mapping: list(extents) for mapping, extents in agent.heat.heat[info["pid"]].items()}
    data = json.loads(json.dumps(agent.cfg, default=lambda regex: regex.pattern))
    data["heat"]["decay"] = 0.7
    assert agent.reload(validate(data))
    assert agent.heat.heat[info["pid"]] == before and agent.heat.decay == 0.7
    agent.close()
