"""tierd's JSON configuration: defaults, validation with messages that name the bad key and value.

JSON because the managed hosts have only the Python standard library (no YAML parser there).
"""

import json
import re

BACKENDS = ("auto", "damon", "page_idle")
DIRECTIONS = ("promote", "demote", "both")
SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

DEFAULTS = {
    "comment": None,  # free text for people and tools (e.g. "Ansible managed"); ignored
    "interval_seconds": 5.0,
    "backend": "auto",
    "nodes": {"dram": None, "pmem": None},
    "dram_budget": None,
    "dram_free_reserve_percent": 5.0,
    "heat": {"decay": 0.5, "hot_threshold": 0.6, "cold_threshold": 0.1,
             "soft_dirty": False, "write_weight": 0.5, "warmup_intervals": 3},
    # A scan reads 4 sysfs files per DAMON region and ages one extent per region: 500 regions keep
    # a scan near 15 ms of CPU whatever the workload's size (bench/agent_scan). More regions give
    # finer placement at a proportional cost.
    "damon": {"sample_us": 5000, "aggr_us": 100000, "min_nr_regions": 10, "max_nr_regions": 500,
              "min_idle_aggregations": 3, "warmup_aggregations": 10},
    # move_pages(2) pays a fixed cost per call (LRU drain, TLB flushes): in the lab 8192-page batches
    # moved the same 256 MiB ~1.5x faster than 1024-page ones (bench/migrate).
    "mover": {"batch_pages": 8192, "rate_limit_mbps": 256.0, "min_residency_intervals": 3, "block_pages": "auto",
              "placement_refresh_intervals": 120},
    "metrics": {"textfile": None, "http_port": None},
    "state_file": "/run/tierd/state.json",
    "workloads": [],
}
WORKLOAD_KEYS = ("name", "match", "vmas", "policy")
MATCH_KEYS = ("cgroup", "pid", "comm", "cmdline")
VMA_KEYS = ("names", "min_size")
POLICY_KEYS = ("pmem_max_percent", "dram_min_percent", "pmem_max_bytes", "dram_min_bytes",
               "priority", "direction")


class ConfigError(ValueError):
    pass


def parse_size(value, key):
    """Bytes from an integer or a string such as '512M' / '2GiB'."""
    if isinstance(value, bool):
        raise ConfigError("%s: %r is not a size; use bytes or a string like '512M' or '2G'" % (key, value))
    if isinstance(value, int):
        if value < 0:
            raise ConfigError("%s: %r must not be negative" % (key, value))
        return value
    if isinstance(value, str):
        match = SIZE_RE.match(value)
        if match:
            return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]
    raise ConfigError("%s: %r is not a size; use bytes or a string like '512M' or '2G'" % (key, value))


def _unknown(section, data, allowed, key):
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ConfigError("%s: unknown key %r; valid keys: %s" % (key, extra[0], ", ".join(sorted(allowed))))


def _number(data, name, key, low=None, high=None, integer=False, low_open=False):
    value = data[name]
    full = "%s.%s" % (key, name) if key else name
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError("%s: %r must be %s" % (full, value, "an integer" if integer else "a number"))
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError("%s: %r must be %s %s" % (full, value, ">" if low_open else ">=", low))
    if high is not None and value > high:
        raise ConfigError("%s: %r must be <= %s" % (full, value, high))
    return value


def _merge(defaults, data, key):
    if not isinstance(data, dict):
        raise ConfigError("%s: %r must be an object" % (key, data))
    _unknown(key, data, defaults, key)
    merged = dict(defaults)
    merged.update(data)
    return merged


def _node_list(value, key):
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise ConfigError("%s: %r must be a non-empty list of NUMA node numbers" % (key, value))
    return sorted(set(value))


def _regex(value, key):
    if not isinstance(value, str) or not value:
        raise ConfigError("%s: %r must be a non-empty regular expression string" % (key, value))
    try:
        return re.compile(value)
    except re.error as exc:
        raise ConfigError("%s: %r is not a valid regular expression (%s)" % (key, value, exc))


def _workload(data, index, seen_names):
    key = "workloads[%d]" % index
    if not isinstance(data, dict):
        raise ConfigError("%s: %r must be an object" % (key, data))
    _unknown(key, data, WORKLOAD_KEYS, key)
    name = data.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.:-]+$", name):
        raise ConfigError("%s.name: %r must be a non-empty name of letters, digits, _ . : -" % (key, name))
    if name in seen_names:
        raise ConfigError("%s.name: %r is used by another workload; names must be unique" % (key, name))
    seen_names.add(name)
    key = "workloads[%s]" % name

    match = data.get("match")
    if not isinstance(match, dict) or not match:
        raise ConfigError("%s.match: %r must be an object with one of: %s" % (key, match, ", ".join(MATCH_KEYS)))
    _unknown(key + ".match", match, MATCH_KEYS, key + ".match")
    out_match = {}
    if "cgroup" in match:
        if not isinstance(match["cgroup"], str) or not match["cgroup"].startswith("/") or ".." in match["cgroup"].split("/"):
            raise ConfigError("%s.match.cgroup: %r must be an absolute cgroup v2 path such as /machine.slice/vm1.scope"
                              % (key, match["cgroup"]))
        out_match["cgroup"] = match["cgroup"]
    if "pid" in match:
        pid = match["pid"]
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ConfigError("%s.match.pid: %r must be a positive integer" % (key, pid))
        out_match["pid"] = pid
    for regex_key in ("comm", "cmdline"):
        if regex_key in match:
            out_match[regex_key] = _regex(match[regex_key], "%s.match.%s" % (key, regex_key))

    vmas = data.get("vmas", {})
    if not isinstance(vmas, dict):
        raise ConfigError("%s.vmas: %r must be an object" % (key, vmas))
    _unknown(key + ".vmas", vmas, VMA_KEYS, key + ".vmas")
    names = vmas.get("names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names):
        raise ConfigError("%s.vmas.names: %r must be a non-empty list of mapping names such as \"[heap]\" or \"\" "
                          "(anonymous)" % (key, names))
    out_vmas = {"names": names, "min_size": parse_size(vmas.get("min_size", 0), key + ".vmas.min_size")}

    policy = data.get("policy")
    out_policy = None
    if policy is not None:
        if not isinstance(policy, dict):
            raise ConfigError("%s.policy: %r must be an object" % (key, policy))
        _unknown(key + ".policy", policy, POLICY_KEYS, key + ".policy")
        out_policy = {"priority": 0, "direction": "both", "pmem_max_percent": None, "dram_min_percent": None,
                      "pmem_max_bytes": None, "dram_min_bytes": None}
        out_policy.update(policy)
        pkey = key + ".policy"
        for pct in ("pmem_max_percent", "dram_min_percent"):
            if out_policy[pct] is not None:
                _number(out_policy, pct, pkey, 0, 100)
        for size in ("pmem_max_bytes", "dram_min_bytes"):
            if out_policy[size] is not None:
                out_policy[size] = parse_size(out_policy[size], "%s.%s" % (pkey, size))
        _number(out_policy, "priority", pkey, -1000, 1000, integer=True)
        if out_policy["direction"] not in DIRECTIONS:
            raise ConfigError("%s.direction: %r is not valid; choose one of: %s"
                              % (pkey, out_policy["direction"], ", ".join(DIRECTIONS)))
        if (out_policy["pmem_max_percent"] is not None and out_policy["dram_min_percent"] is not None
                and out_policy["pmem_max_percent"] + out_policy["dram_min_percent"] > 100):
            raise ConfigError("%s: pmem_max_percent %r + dram_min_percent %r exceed 100, so both cannot hold; "
                              "drop one or lower them"
                              % (pkey, out_policy["pmem_max_percent"], out_policy["dram_min_percent"]))
    return {"name": name, "match": out_match, "vmas": out_vmas, "policy": out_policy}


def validate(data):
    """A checked, defaults-filled config dict from parsed JSON; raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("config: %r must be a JSON object" % (data,))
    _unknown("", data, DEFAULTS, "config")
    cfg = dict(DEFAULTS)
    cfg.update(data)
    if cfg["comment"] is not None and not isinstance(cfg["comment"], str):
        raise ConfigError("comment: %r must be a string" % (cfg["comment"],))
    _number(cfg, "interval_seconds", "", 0.1, 3600)
    if cfg["backend"] not in BACKENDS:
        raise ConfigError("backend: %r is not valid; choose one of: %s" % (cfg["backend"], ", ".join(BACKENDS)))

    nodes = _merge(DEFAULTS["nodes"], cfg["nodes"], "nodes")
    nodes["dram"] = _node_list(nodes["dram"], "nodes.dram")
    nodes["pmem"] = _node_list(nodes["pmem"], "nodes.pmem")
    if (nodes["dram"] is None) != (nodes["pmem"] is None):
        raise ConfigError("nodes: %r sets only one of dram/pmem; set both or neither (auto-detect)" % (cfg["nodes"],))
    if nodes["dram"] and set(nodes["dram"]) & set(nodes["pmem"]):
        raise ConfigError("nodes: node %r is in both dram and pmem" % sorted(set(nodes["dram"]) & set(nodes["pmem"]))[0])
    cfg["nodes"] = nodes

    if cfg["dram_budget"] is not None:
        cfg["dram_budget"] = parse_size(cfg["dram_budget"], "dram_budget")
    _number(cfg, "dram_free_reserve_percent", "", 0, 90)

    heat = _merge(DEFAULTS["heat"], cfg["heat"], "heat")
    _number(heat, "decay", "heat", 0, 0.99)
    _number(heat, "hot_threshold", "heat", 0, 2, low_open=True)
    _number(heat, "cold_threshold", "heat", 0, 2)
    _number(heat, "write_weight", "heat", 0, 1)
    _number(heat, "warmup_intervals", "heat", 0, 1000, integer=True)
    if not isinstance(heat["soft_dirty"], bool):
        raise ConfigError("heat.soft_dirty: %r must be true or false" % (heat["soft_dirty"],))
    if heat["cold_threshold"] >= heat["hot_threshold"]:
        raise ConfigError("heat.cold_threshold: %r must be below heat.hot_threshold %r (the gap is the hysteresis "
                          "that stops pages bouncing)" % (heat["cold_threshold"], heat["hot_threshold"]))
    cfg["heat"] = heat

    damon = _merge(DEFAULTS["damon"], cfg["damon"], "damon")
    _number(damon, "sample_us", "damon", 100, 10 ** 7, integer=True)
    _number(damon, "aggr_us", "damon", 100, 10 ** 8, integer=True)
    _number(damon, "min_nr_regions", "damon", 3, 10 ** 6, integer=True)
    _number(damon, "max_nr_regions", "damon", 3, 10 ** 6, integer=True)
    _number(damon, "min_idle_aggregations", "damon", 0, 10 ** 6, integer=True)
    _number(damon, "warmup_aggregations", "damon", 0, 10 ** 6, integer=True)
    if damon["aggr_us"] < damon["sample_us"]:
        raise ConfigError("damon.aggr_us: %r must be >= damon.sample_us %r" % (damon["aggr_us"], damon["sample_us"]))
    if damon["max_nr_regions"] < damon["min_nr_regions"]:
        raise ConfigError("damon.max_nr_regions: %r must be >= damon.min_nr_regions %r"
                          % (damon["max_nr_regions"], damon["min_nr_regions"]))
    if damon["aggr_us"] > cfg["interval_seconds"] * 1e6:
        raise ConfigError("damon.aggr_us: %r is longer than interval_seconds %r; tierd reads one aggregation per "
                          "interval" % (damon["aggr_us"], cfg["interval_seconds"]))
    cfg["damon"] = damon

    mover = _merge(DEFAULTS["mover"], cfg["mover"], "mover")
    _number(mover, "batch_pages", "mover", 512, 1 << 20, integer=True)
    _number(mover, "rate_limit_mbps", "mover", 0, None, low_open=True)
    _number(mover, "min_residency_intervals", "mover", 0, 10000, integer=True)
    _number(mover, "placement_refresh_intervals", "mover", 1, 100000, integer=True)
    if mover["block_pages"] != "auto":
        _number(mover, "block_pages", "mover", 1, 1 << 18, integer=True)
    cfg["mover"] = mover

    metrics = _merge(DEFAULTS["metrics"], cfg["metrics"], "metrics")
    if metrics["textfile"] is not None and (not isinstance(metrics["textfile"], str)
                                            or not metrics["textfile"].startswith("/")
                                            or not metrics["textfile"].endswith(".prom")):
        raise ConfigError("metrics.textfile: %r must be an absolute path ending in .prom (node_exporter's "
                          "textfile collector reads only *.prom)" % (metrics["textfile"],))
    if metrics["http_port"] is not None:
        _number(metrics, "http_port", "metrics", 1, 65535, integer=True)
    cfg["metrics"] = metrics

    if not isinstance(cfg["state_file"], str) or not cfg["state_file"].startswith("/"):
        raise ConfigError("state_file: %r must be an absolute path" % (cfg["state_file"],))

    if not isinstance(cfg["workloads"], list):
        raise ConfigError("workloads: %r must be a list" % (cfg["workloads"],))
    seen = set()
    cfg["workloads"] = [_workload(w, i, seen) for i, w in enumerate(cfg["workloads"])]
    return cfg


def loads(text, source="config"):
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError("%s: not valid JSON: %s" % (source, exc))
    return validate(data)


def load(path):
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (path, exc.strerror))
    return loads(text, path)
