"""tierd's JSON configuration: defaults, validation with messages that name the bad key and value.

JSON because the managed hosts have only the Python standard library (no YAML parser there).

Every way a config can be bad ends as a ConfigError, never another exception: `tierd run` keeps
its running config when a SIGHUP reload raises one, and `check-config` prints it as one line.
Messages quote a bad value through excerpt(), so a huge value is never echoed back whole.
"""

import json
import math
import os
import pwd
import re
import stat

BACKENDS = ("auto", "damon", "page_idle")
TIERING_MODES = ("auto", "tierd", "kernel_promotes")  # see mode.py
DEMOTE_WITH = ("auto", "move_pages", "reclaim", "lru_gen")  # see reclaim.py
DIRECTIONS = ("promote", "demote", "both")
# At most 19 digits: int() refuses longer digit strings only past 4300 digits, and no size needs more.
SIZE_RE = re.compile(r"^\s*(\d{1,19})\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

DEFAULTS = {
    "comment": None,  # free text for people and tools (e.g. "Ansible managed"); ignored
    "interval_seconds": 5.0,
    "backend": "auto",
    "tiering_mode": "auto",
    "nodes": {"dram": None, "pmem": None},
    "dram_budget": None,
    # {DRAM node: size}: what the managed workloads together may hold on that node (two sockets:
    # leave each socket's DRAM to what runs there unmanaged); a node left out has no budget of its own.
    "dram_budget_per_node": {},
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
              "placement_refresh_intervals": 120, "max_pages_per_interval": None, "demote_with": "auto",
              "lru_gen_idle_seconds": 20.0},
    "metrics": {"textfile": None, "http_port": None},
    "state_file": "/run/tierd/state.json",
    "workloads": [],
}
WORKLOAD_KEYS = ("name", "match", "vmas", "policy")
MATCH_KEYS = ("cgroup", "pid", "comm", "cmdline")
VMA_KEYS = ("names", "min_size")
POLICY_KEYS = ("pmem_max_percent", "dram_min_percent", "pmem_max_bytes", "dram_min_bytes",
               "priority", "direction")

# A config file is a few KiB; one workload takes about 300 bytes of the role's pretty JSON, so
# 1 MiB holds thousands of them while a mistaken 50 MB file is refused before it is read.
MAX_CONFIG_BYTES = 1 << 20
_LIMIT_MIB = "%g MiB" % (MAX_CONFIG_BYTES / float(1 << 20))
# A valid config nests 5 levels (config, workloads, a workload, its vmas, vmas.names). The limit
# is checked on the text before json.loads, whose recursion a deep [[[[...]]]] would exhaust.
MAX_NESTING = 32
# Longer regular expressions are refused: a cmdline pattern naming a few hundred VMs is shorter,
# and sre_parse's recursion is then bounded too.
MAX_REGEX_CHARS = 4096
MAX_NODE = 1023  # the kernel's MAX_NUMNODES at its largest (NODES_SHIFT 10)
MAX_NAME_CHARS = 128  # workload names are in every log line and metrics label
EXCERPT_CHARS = 80


class ConfigError(ValueError):
    pass


def cut(text, limit=EXCERPT_CHARS):
    """``text`` in at most ``limit`` characters, ending in "…" when something was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def excerpt(value, limit=EXCERPT_CHARS):
    """repr(value) cut to ``limit`` characters: a message names a bad value without echoing a big one."""
    return cut(repr(value), limit)


def parse_size(value, key):
    """Bytes from an integer or a string such as '512M' / '2GiB'."""
    if isinstance(value, bool):
        raise ConfigError("%s: %s is not a size; use bytes or a string like '512M' or '2G'" % (key, excerpt(value)))
    if isinstance(value, int):
        if value < 0:
            raise ConfigError("%s: %s must not be negative; use bytes >= 0 or a string like '512M' or '2G'"
                              % (key, excerpt(value)))
        return value
    if isinstance(value, str):
        match = SIZE_RE.match(value)
        if match:
            return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]
    raise ConfigError("%s: %s is not a size; use bytes or a string like '512M' or '2G'" % (key, excerpt(value)))


def _unknown(section, data, allowed, key):
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise ConfigError("%s: unknown key %s; valid keys: %s" % (key, excerpt(extra[0]), ", ".join(sorted(allowed))))


def _number(data, name, key, low=None, high=None, integer=False, low_open=False):
    value = data[name]
    full = "%s.%s" % (key, name) if key else name
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
            or (isinstance(value, float) and not math.isfinite(value))):  # 1e400 reads as inf
        bounds = []
        if low is not None:
            bounds.append("%s %s" % (">" if low_open else ">=", low))
        if high is not None:
            bounds.append("<= %s" % high)
        raise ConfigError("%s: %s must be %s%s" % (full, excerpt(value), "an integer" if integer else "a number",
                                                   " " + " and ".join(bounds) if bounds else ""))
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError("%s: %s must be %s %s" % (full, excerpt(value), ">" if low_open else ">=", low))
    if high is not None and value > high:
        raise ConfigError("%s: %s must be <= %s" % (full, excerpt(value), high))
    return value


def _merge(defaults, data, key):
    if not isinstance(data, dict):
        raise ConfigError("%s: %s must be an object with keys: %s" % (key, excerpt(data), ", ".join(sorted(defaults))))
    _unknown(key, data, defaults, key)
    merged = dict(defaults)
    merged.update(data)
    return merged


def _node_list(value, key):
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise ConfigError("%s: %s must be a non-empty list of NUMA node numbers (integers >= 0), or null to detect"
                          % (key, excerpt(value)))
    return sorted(set(value))


def _node_budgets(value, key):
    """{node: bytes} from {node (an integer, or its digits as JSON keys are strings): size}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("%s: %s must be a mapping of DRAM node number to size, e.g. {\"0\": \"8G\", \"1\": \"8G\"}"
                          % (key, excerpt(value)))
    budgets = {}
    for node, size in value.items():
        number = node if isinstance(node, int) and not isinstance(node, bool) else None
        if isinstance(node, str) and re.fullmatch(r"\d{1,4}", node):
            number = int(node)
        if number is None or not 0 <= number <= MAX_NODE:
            raise ConfigError("%s: node %s is not a NUMA node number; use 0 to %d" % (key, excerpt(node), MAX_NODE))
        if number in budgets:
            raise ConfigError("%s: node %d is given twice" % (key, number))
        budgets[number] = parse_size(size, "%s.%d" % (key, number))
    return budgets


def _regex(value, key):
    if not isinstance(value, str) or not value:
        raise ConfigError("%s: %s must be a non-empty regular expression string" % (key, excerpt(value)))
    if len(value) > MAX_REGEX_CHARS:
        raise ConfigError("%s: %s is %d characters long; regular expressions may have at most %d"
                          % (key, excerpt(value), len(value), MAX_REGEX_CHARS))
    try:
        return re.compile(value)
    except (re.error, OverflowError, ValueError) as exc:  # OverflowError: e.g. a{99999999999}
        reason = str(exc)
    except RecursionError:  # sre_parse recurses once per nested group
        reason = "groups nested too deeply"
    raise ConfigError("%s: %s is not a valid regular expression (%s); Python re syntax, e.g. 'qemu.*-name vm1'"
                      % (key, excerpt(value), cut(reason, 120)))


def _workload(data, index, seen_names):
    key = "workloads[%d]" % index
    if not isinstance(data, dict):
        raise ConfigError("%s: %s must be an object with keys: %s" % (key, excerpt(data), ", ".join(WORKLOAD_KEYS)))
    _unknown(key, data, WORKLOAD_KEYS, key)
    name = data.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,%d}" % MAX_NAME_CHARS, name):
        raise ConfigError("%s.name: %s must be a name of 1 to %d letters, digits, _ . : -"
                          % (key, excerpt(name), MAX_NAME_CHARS))
    if name in seen_names:
        raise ConfigError("%s.name: %s is used by another workload; names must be unique" % (key, excerpt(name)))
    seen_names.add(name)
    key = "workloads[%s]" % name

    match = data.get("match")
    if not isinstance(match, dict) or not match:
        raise ConfigError("%s.match: %s must be an object with one of: %s" % (key, excerpt(match), ", ".join(MATCH_KEYS)))
    _unknown(key + ".match", match, MATCH_KEYS, key + ".match")
    out_match = {}
    if "cgroup" in match:
        if not isinstance(match["cgroup"], str) or not match["cgroup"].startswith("/") or ".." in match["cgroup"].split("/"):
            raise ConfigError("%s.match.cgroup: %s must be an absolute cgroup v2 path such as /machine.slice/vm1.scope"
                              % (key, excerpt(match["cgroup"])))
        out_match["cgroup"] = match["cgroup"]
    if "pid" in match:
        pid = match["pid"]
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ConfigError("%s.match.pid: %s must be a positive integer" % (key, excerpt(pid)))
        out_match["pid"] = pid
    for regex_key in ("comm", "cmdline"):
        if regex_key in match:
            out_match[regex_key] = _regex(match[regex_key], "%s.match.%s" % (key, regex_key))

    vmas = data.get("vmas", {})
    if not isinstance(vmas, dict):
        raise ConfigError("%s.vmas: %s must be an object with keys: %s" % (key, excerpt(vmas), ", ".join(VMA_KEYS)))
    _unknown(key + ".vmas", vmas, VMA_KEYS, key + ".vmas")
    names = vmas.get("names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names):
        raise ConfigError("%s.vmas.names: %s must be a non-empty list of mapping names such as \"[heap]\" or \"\" "
                          "(anonymous)" % (key, excerpt(names)))
    out_vmas = {"names": names, "min_size": parse_size(vmas.get("min_size", 0), key + ".vmas.min_size")}

    policy = data.get("policy")
    out_policy = None
    if policy is not None:
        if not isinstance(policy, dict):
            raise ConfigError("%s.policy: %s must be an object with keys: %s, or null to leave the workload alone"
                              % (key, excerpt(policy), ", ".join(POLICY_KEYS)))
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
            raise ConfigError("%s.direction: %s is not valid; choose one of: %s"
                              % (pkey, excerpt(out_policy["direction"]), ", ".join(DIRECTIONS)))
        if (out_policy["pmem_max_percent"] is not None and out_policy["dram_min_percent"] is not None
                and out_policy["pmem_max_percent"] + out_policy["dram_min_percent"] > 100):
            raise ConfigError("%s: pmem_max_percent %s + dram_min_percent %s exceed 100, so both cannot hold; "
                              "drop one or lower them"
                              % (pkey, excerpt(out_policy["pmem_max_percent"]), excerpt(out_policy["dram_min_percent"])))
    return {"name": name, "match": out_match, "vmas": out_vmas, "policy": out_policy}


def validate(data):
    """A checked, defaults-filled config dict from parsed JSON; raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("config: %s must be a JSON object ({...}) with keys such as: interval_seconds, workloads"
                          % excerpt(data))
    _unknown("", data, DEFAULTS, "config")
    cfg = dict(DEFAULTS)
    cfg.update(data)
    if cfg["comment"] is not None and not isinstance(cfg["comment"], str):
        raise ConfigError("comment: %s must be a string or null" % excerpt(cfg["comment"]))
    _number(cfg, "interval_seconds", "", 0.1, 3600)
    if cfg["backend"] not in BACKENDS:
        raise ConfigError("backend: %s is not valid; choose one of: %s" % (excerpt(cfg["backend"]), ", ".join(BACKENDS)))
    if cfg["tiering_mode"] not in TIERING_MODES:
        raise ConfigError("tiering_mode: %s is not valid; choose one of: %s"
                          % (excerpt(cfg["tiering_mode"]), ", ".join(TIERING_MODES)))

    nodes = _merge(DEFAULTS["nodes"], cfg["nodes"], "nodes")
    nodes["dram"] = _node_list(nodes["dram"], "nodes.dram")
    nodes["pmem"] = _node_list(nodes["pmem"], "nodes.pmem")
    if (nodes["dram"] is None) != (nodes["pmem"] is None):
        raise ConfigError("nodes: %s sets only one of dram/pmem; set both or neither (auto-detect)"
                          % excerpt(cfg["nodes"]))
    if nodes["dram"] and set(nodes["dram"]) & set(nodes["pmem"]):
        raise ConfigError("nodes: node %s is in both dram and pmem; a node is one or the other"
                          % excerpt(sorted(set(nodes["dram"]) & set(nodes["pmem"]))[0]))
    cfg["nodes"] = nodes

    if cfg["dram_budget"] is not None:
        cfg["dram_budget"] = parse_size(cfg["dram_budget"], "dram_budget")
    cfg["dram_budget_per_node"] = _node_budgets(cfg["dram_budget_per_node"], "dram_budget_per_node")
    if cfg["nodes"]["dram"] and set(cfg["dram_budget_per_node"]) - set(cfg["nodes"]["dram"]):
        raise ConfigError("dram_budget_per_node: node %d is not one of nodes.dram %s"
                          % (min(set(cfg["dram_budget_per_node"]) - set(cfg["nodes"]["dram"])), cfg["nodes"]["dram"]))
    _number(cfg, "dram_free_reserve_percent", "", 0, 90)

    heat = _merge(DEFAULTS["heat"], cfg["heat"], "heat")
    _number(heat, "decay", "heat", 0, 0.99)
    _number(heat, "hot_threshold", "heat", 0, 2, low_open=True)
    _number(heat, "cold_threshold", "heat", 0, 2)
    _number(heat, "write_weight", "heat", 0, 1)
    _number(heat, "warmup_intervals", "heat", 0, 1000, integer=True)
    if not isinstance(heat["soft_dirty"], bool):
        raise ConfigError("heat.soft_dirty: %s must be true or false" % excerpt(heat["soft_dirty"]))
    if heat["cold_threshold"] >= heat["hot_threshold"]:
        raise ConfigError("heat.cold_threshold: %s must be below heat.hot_threshold %s (the gap is the hysteresis "
                          "that stops pages bouncing)" % (excerpt(heat["cold_threshold"]), excerpt(heat["hot_threshold"])))
    cfg["heat"] = heat

    damon = _merge(DEFAULTS["damon"], cfg["damon"], "damon")
    _number(damon, "sample_us", "damon", 100, 10 ** 7, integer=True)
    _number(damon, "aggr_us", "damon", 100, 10 ** 8, integer=True)
    _number(damon, "min_nr_regions", "damon", 3, 10 ** 6, integer=True)
    _number(damon, "max_nr_regions", "damon", 3, 10 ** 6, integer=True)
    _number(damon, "min_idle_aggregations", "damon", 0, 10 ** 6, integer=True)
    _number(damon, "warmup_aggregations", "damon", 0, 10 ** 6, integer=True)
    if damon["aggr_us"] < damon["sample_us"]:
        raise ConfigError("damon.aggr_us: %s must be >= damon.sample_us %s"
                          % (excerpt(damon["aggr_us"]), excerpt(damon["sample_us"])))
    if damon["max_nr_regions"] < damon["min_nr_regions"]:
        raise ConfigError("damon.max_nr_regions: %s must be >= damon.min_nr_regions %s"
                          % (excerpt(damon["max_nr_regions"]), excerpt(damon["min_nr_regions"])))
    if damon["aggr_us"] > cfg["interval_seconds"] * 1e6:
        raise ConfigError("damon.aggr_us: %s is longer than interval_seconds %s; tierd reads one aggregation per "
                          "interval, so it must be <= %d" % (excerpt(damon["aggr_us"]), excerpt(cfg["interval_seconds"]),
                                                             cfg["interval_seconds"] * 1e6))
    cfg["damon"] = damon

    mover = _merge(DEFAULTS["mover"], cfg["mover"], "mover")
    _number(mover, "batch_pages", "mover", 512, 1 << 20, integer=True)
    _number(mover, "rate_limit_mbps", "mover", 0, 10 ** 6, low_open=True)  # 1 TB/s: beyond any memory bus
    _number(mover, "min_residency_intervals", "mover", 0, 10000, integer=True)
    _number(mover, "placement_refresh_intervals", "mover", 1, 100000, integer=True)
    if mover["max_pages_per_interval"] is not None:  # null: no budget beyond rate_limit_mbps
        _number(mover, "max_pages_per_interval", "mover", 1, 1 << 40, integer=True)
    if mover["block_pages"] != "auto":
        if isinstance(mover["block_pages"], bool) or not isinstance(mover["block_pages"], int):
            raise ConfigError("mover.block_pages: %s must be \"auto\" (the transparent huge page size) or an integer "
                              ">= 1 and <= %d" % (excerpt(mover["block_pages"]), 1 << 18))
        _number(mover, "block_pages", "mover", 1, 1 << 18, integer=True)
    _number(mover, "lru_gen_idle_seconds", "mover", 0, 86400)  # 0: aged every interval
    if mover["demote_with"] not in DEMOTE_WITH:
        raise ConfigError("mover.demote_with: %s is not valid; choose one of: %s"
                          % (excerpt(mover["demote_with"]), ", ".join(DEMOTE_WITH)))
    cfg["mover"] = mover

    metrics = _merge(DEFAULTS["metrics"], cfg["metrics"], "metrics")
    if metrics["textfile"] is not None and (not isinstance(metrics["textfile"], str)
                                            or not metrics["textfile"].startswith("/")
                                            or not metrics["textfile"].endswith(".prom")):
        raise ConfigError("metrics.textfile: %s must be an absolute path ending in .prom (node_exporter's "
                          "textfile collector reads only *.prom), or null" % excerpt(metrics["textfile"]))
    if metrics["http_port"] is not None:
        _number(metrics, "http_port", "metrics", 1, 65535, integer=True)
    cfg["metrics"] = metrics

    if not isinstance(cfg["state_file"], str) or not cfg["state_file"].startswith("/"):
        raise ConfigError("state_file: %s must be an absolute path such as /run/tierd/state.json"
                          % excerpt(cfg["state_file"]))

    if not isinstance(cfg["workloads"], list):
        raise ConfigError("workloads: %s must be a list of workload objects" % excerpt(cfg["workloads"]))
    seen = set()
    cfg["workloads"] = [_workload(w, i, seen) for i, w in enumerate(cfg["workloads"])]
    return cfg


# Strings are skipped whole (brackets inside them are text); an unterminated one runs to the end.
_JSON_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _check_nesting(text, source):
    depth = 0
    for token in _JSON_STRUCTURE.finditer(text):
        char = text[token.start()]
        if char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, token.start()) + 1
                raise ConfigError("%s: nested deeper than %d levels (line %d); a tierd config nests at most 5 "
                                  "(config, workloads, a workload, its vmas, vmas.names)" % (source, MAX_NESTING, line))
        elif char in "]}":
            depth -= 1


def _reject_constant(name):
    raise ConfigError("%s is not a number tierd accepts; use a finite number" % name)


def _object_without_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            # json.loads would keep the last one silently; which one the author meant is not known.
            raise ConfigError("key %s appears twice in one object; keep one of them" % excerpt(key))
        obj[key] = value
    return obj


def loads(text, source="config"):
    """The checked config from JSON ``text``; ``source`` names it in messages."""
    if len(text) > MAX_CONFIG_BYTES:  # characters: at least as many bytes
        raise _too_large(source, len(text), "characters")
    _check_nesting(text, source)
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (source, exc))
    except RecursionError:  # not reached below MAX_NESTING; kept so no input can end the agent
        raise ConfigError("%s: nested too deeply to parse" % source)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise ConfigError("%s: not valid JSON: %s" % (source, cut(str(exc), 160)))
    try:
        return validate(data)
    except ConfigError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        # A validator bug must not stop the agent on a reload: report it as an invalid config.
        raise ConfigError("%s: tierd could not check this config (%s: %s); please report it"
                          % (source, type(exc).__name__, cut(str(exc))))


def _too_large(source, size, unit="bytes"):
    return ConfigError("%s: %s %s, over tierd's limit of %d bytes (%s); a config is a few KiB "
                       "(about 300 bytes per workload)" % (source, size, unit, MAX_CONFIG_BYTES, _LIMIT_MIB))


def loads_bytes(raw, source="config"):
    """The checked config from the file contents ``raw`` (UTF-8 JSON)."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise _too_large(source, len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("%s: not UTF-8 (byte 0x%02x at offset %d, line %d); save the file as UTF-8"
                          % (source, raw[exc.start], exc.start, line))
    return loads(text, source)


def read_stream(stream, source):
    """At most MAX_CONFIG_BYTES + 1 bytes of a binary stream: enough to tell that it is too large."""
    try:
        raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("%s: cannot read: %s" % (source, exc.strerror or exc))
    if len(raw) > MAX_CONFIG_BYTES:  # a pipe has no size to report: only that it holds more
        raise _too_large(source, "more than %d" % MAX_CONFIG_BYTES)
    return raw


def _owner(uid):
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def check_trusted(path, info, euid):
    """Refuse, when tierd runs as root, a config file that a user other than root can write.

    Such a user could steer the page migration of every process. As another user tierd moves
    nothing it could not move anyway (run and once refuse to start), so the check applies as
    root only: tests and users check configs they wrote themselves. The directory is not checked:
    Ansible's validate step checks its copy in the connecting user's temporary directory.
    """
    if euid != 0:
        return
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != 0 or mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError("%s: mode %04o, owner %s: tierd runs as root and takes its orders from this file, so "
                          "only root may be able to write it; make it owned by root and not writable by group or "
                          "others (e.g. chown root:root and chmod 0644)" % (path, mode, _owner(info.st_uid)))


def load(path, euid=None):
    """The checked config in the file at ``path``; every way it can be bad raises ConfigError.

    ``euid`` (default: this process's) decides whether check_trusted applies.
    """
    if euid is None:
        euid = os.geteuid()
    try:
        # O_NONBLOCK: a FIFO put in the config's place would otherwise block open() and the agent.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise ConfigError("%s: cannot read: %s" % (path, getattr(exc, "strerror", None) or exc))
    try:
        info = os.fstat(fd)  # of the file opened, so a rename in between cannot swap it
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("%s: not a regular file (%s); the config must be a JSON file"
                              % (path, _file_kind(info.st_mode)))
        check_trusted(path, info, euid)
        if info.st_size > MAX_CONFIG_BYTES:
            raise _too_large(path, info.st_size)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = read_stream(handle, path)
    finally:
        os.close(fd)
    return loads_bytes(raw, path)


def _file_kind(mode):
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "mode %o" % mode
