"""tierd run | once | status | check-config."""

import argparse
import json
import os
import signal
import sys

from . import __version__, config as config_mod, status as status_mod
from .kernel import Kernel, KernelError
from .log import Logger

DEFAULT_CONFIG = "/etc/tierd/config.json"


STDIN_SOURCE = "<stdin>"


def _load_or_exit(path, stdin_allowed=False):
    """The checked config, or exit 2 with one line naming the problem (never a traceback)."""
    try:
        if stdin_allowed and path == "-":
            # The role checks its rendered config this way on the controller, before installing anything.
            return config_mod.loads_bytes(config_mod.read_stream(sys.stdin.buffer, STDIN_SOURCE), STDIN_SOURCE)
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print("tierd: invalid config: %s" % exc, file=sys.stderr)
    except Exception as exc:  # pylint: disable=broad-except
        print("tierd: invalid config: %s: tierd could not check it (%s: %s)"
              % (path, type(exc).__name__, config_mod.cut(str(exc))), file=sys.stderr)
    sys.exit(2)


def cmd_check_config(args):
    cfg = _load_or_exit(args.path, stdin_allowed=True)
    managed = sum(1 for w in cfg["workloads"] if w["policy"] is not None)
    # stdout is strict UTF-8: a path from argv may hold undecodable bytes (surrogate escapes).
    shown = STDIN_SOURCE if args.path == "-" else args.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    print("%s: ok (%d workloads, %d with a policy, backend %s)"
          % (shown, len(cfg["workloads"]), managed, cfg["backend"]))
    return 0


def _need_root(what):
    if os.geteuid() != 0:
        print("tierd: %s needs root: it reads other processes' page tables and moves their pages" % what,
              file=sys.stderr)
        sys.exit(1)


def _agent(args, logger):
    from .agent import Agent  # imported late so check-config/status work on any Python
    cfg = _load_or_exit(args.config)
    if args.interval is not None:
        cfg["interval_seconds"] = args.interval
    try:
        return Agent(Kernel(args.root), cfg, logger, dry_run=getattr(args, "dry_run", False))
    except KernelError as exc:
        logger.error("refused", reason=exc)
        print("tierd: %s" % exc, file=sys.stderr)
        sys.exit(1)


class ConfigReloader:
    """SIGHUP sets a flag; at the next interval the file is read again. An invalid file is logged
    and None returned, so the agent keeps running with the config it has: config.load raises only
    ConfigError, and anything else is caught too, since no config file may end the agent."""

    def __init__(self, path, logger):
        self.path = path
        self.logger = logger
        self.requested = False

    def request(self):
        self.requested = True

    def __call__(self):
        if not self.requested:
            return None
        self.requested = False
        try:
            return config_mod.load(self.path)
        except config_mod.ConfigError as exc:
            reason = str(exc)
        except Exception as exc:  # pylint: disable=broad-except
            reason = "%s: tierd could not check it (%s: %s)" % (self.path, type(exc).__name__, config_mod.cut(str(exc)))
        self.logger.error("reload_rejected", reason=reason, action="keeping the running config")
        return None


def cmd_run(args):
    _need_root("run")
    logger = Logger(debug=args.debug)
    agent = _agent(args, logger)
    reloader = ConfigReloader(args.config, logger)

    def on_term(signum, _frame):
        logger.info("signal", name=signal.Signals(signum).name, action="stop after the current batch")
        agent.stop_event.set()

    def on_hup(_signum, _frame):
        reloader.request()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        agent.run(reload_source=reloader)
    except KernelError as exc:
        logger.error("failed", reason=exc)
        return 1
    return 0


def cmd_once(args):
    _need_root("once")
    logger = Logger(debug=args.debug)
    agent = _agent(args, logger)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop_event.set())
    try:
        agent.run(max_intervals=args.intervals)
    except KernelError as exc:
        logger.error("failed", reason=exc)
        return 1
    if args.json:
        print(json.dumps(agent.state, indent=1, sort_keys=True))
    else:
        print(status_mod.render(agent.state))
    return 0


def cmd_status(args):
    path = args.state
    if path is None:
        path = _load_or_exit(args.config)["state_file"]
    try:
        state = status_mod.load_state(path)
    except (OSError, ValueError) as exc:
        print("tierd: no state in %s (%s): is tierd running?" % (path, getattr(exc, "strerror", None) or exc),
              file=sys.stderr)
        return 1
    print(json.dumps(state, indent=1, sort_keys=True) if args.json else status_mod.render(state))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tierd", description="Move each workload's pages between DRAM and "
                                     "PMEM NUMA nodes by how hot they are.")
    parser.add_argument("--version", action="version", version="tierd %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def agent_options(p):
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="JSON config (default %(default)s)")
        p.add_argument("--interval", type=float, help="override interval_seconds")
        p.add_argument("--debug", action="store_true")
        p.add_argument("--root", default="/", help=argparse.SUPPRESS)

    p = sub.add_parser("run", help="run the agent until SIGTERM (SIGHUP reloads the config)")
    agent_options(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("once", help="run a few intervals, print the status, exit")
    agent_options(p)
    p.add_argument("-n", "--intervals", type=int, default=3, help="intervals to run (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="plan but move nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_once)
    p = sub.add_parser("status", help="show the running agent's last interval")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    p.add_argument("--state", help="state file (default: state_file from the config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("check-config", help="validate a config file; exit 2 with the reason if invalid")
    p.add_argument("path", help="the JSON config, or - to read it from stdin (no file ownership check then)")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)
