"""Which access-tracking backend runs: the one config names, else the best this kernel has.

The backends are ``tracker_damon`` and ``tracker_page_idle`` (the contract they meet is
``tracker.Tracker``); soft-dirty write tracking (``tracker_soft_dirty``) comes on top of either,
when ``heat.soft_dirty`` is set.
"""

import os

from .tracker import BackendUnavailable
from .tracker_damon import DamonBackend
from .tracker_page_idle import PageIdleBackend


def choose_backend(kernel, cfg, logger):
    """The backend named in config, or DAMON when the kernel has it, else page_idle; refuse with neither."""
    wanted = cfg["backend"]
    damon_ok, damon_why = DamonBackend.available(kernel)
    idle_ok, idle_why = PageIdleBackend.available(kernel)
    if wanted == "damon" and not damon_ok:
        raise BackendUnavailable("backend damon requested but unavailable: %s" % damon_why)
    if wanted == "page_idle" and not idle_ok:
        raise BackendUnavailable("backend page_idle requested but unavailable: %s" % idle_why)
    if wanted == "auto" and not damon_ok and not idle_ok:
        raise BackendUnavailable("no access-tracking backend: DAMON: %s; page_idle: %s. tierd needs a kernel "
                                 "with CONFIG_DAMON_SYSFS+CONFIG_DAMON_VADDR or CONFIG_IDLE_PAGE_TRACKING"
                                 % (damon_why, idle_why))
    if wanted == "page_idle" or (wanted == "auto" and not damon_ok):
        return PageIdleBackend(kernel, logger)
    owner_file = os.path.join(os.path.dirname(cfg["state_file"]), "damon-owner.json")
    return DamonBackend(kernel, cfg["damon"], logger, owner_file)
