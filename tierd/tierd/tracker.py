"""What an access-tracking backend must do for the agent: the ``Tracker`` contract.

A backend reports, once per interval, how often each page range of the tracked mappings was
used since its previous report. ``heat.HeatMap`` turns those reports into heat; the backends
(``tracker_damon``, ``tracker_page_idle``, and ``tracker_soft_dirty`` for writes) differ only in
how they learn it from the kernel. ``tracking.choose_backend`` picks the access backend.
"""

import abc

from .kernel import PAGE_SIZE, KernelError

UNKNOWN = -1.0


class BackendUnavailable(KernelError):
    """This kernel lacks what a backend needs; the message names the missing file and option."""


class Tracker(abc.ABC):
    """An access-tracking backend.

    Given (at construction) the ``Kernel``, through which all its /proc and /sys access goes so
    that tests replay recorded guest trees, and where it needs them a ``Logger`` and its config
    section.

    Per interval ``sample(targets, pagemap)`` is given ``targets``, ``{pid: [(start, end, name)]}``
    (the page-aligned mappings discovery selected this interval), and ``pagemap``, this interval's
    ``PagemapReads``, which per-page backends read through so that each mapping's pagemap is read
    once however many backends need it. It returns ``{pid: {mapping start: runs}}``: per mapping a
    sorted list of non-overlapping runs ``(start, end, value)`` inside it, ``value`` being what was
    seen since the previous ``sample``: an access frequency 0..1 (for the write tracker 1 = written,
    0 = not), or ``UNKNOWN``. Addresses no run covers are unknown too, and so is every mapping of a
    PID left out (its process exited, or the backend has no reading for it yet): unknown leaves
    the heat as it was, so a backend must never guess 0 for a page it did not see.

    ``sample`` follows the targets it is given: it starts tracking new PIDs and forgets those
    that are gone (``track(pids)`` is that step alone). A process that exits between discovery
    and the sample is normal, not an error: it is left out of the result.

    Threading and cost: the agent calls ``sample`` from its one thread, once per interval,
    between the interval's waits (``Agent.run``); a backend never sleeps or waits for the kernel and
    starts no threads (DAMON's kdamonds are the kernel's): it reads what accumulated since its
    previous call. Its work per interval should follow the regions the kernel keeps (DAMON);
    page_idle and soft-dirty are per page by nature (a pagemap entry and an idle bit per page).

    Cannot run here: ``available(kernel)`` says so before the backend is made, as ``(False, why)``
    naming the missing file and kernel option; ``choose_backend`` turns that into
    ``BackendUnavailable`` and tierd refuses to start. Once running, a ``KernelError`` from
    ``sample`` (DAMON taken by another tool) stops the agent with that message. ``close()``
    releases what the backend holds in the kernel; it is called once when the agent stops, also
    after such an error, and does not raise.
    """

    name = None  # in the start line, the state file and the metrics
    # PIDs whose readings started over at the last ``track``/``sample`` although tierd tracked
    # them before (DAMON moved them to another target): the agent restarts their warm-up.
    restarted = frozenset()

    @classmethod
    def available(cls, _kernel):
        """``(True, "ok")``, or ``(False, why)`` when this kernel cannot run the backend."""
        return True, "ok"

    def warmup_intervals(self, _interval_seconds):
        """Intervals before a new mapping's readings are trusted enough to demote pages
        (until then its heat only orders quota promotions); 0 when each page has a reading of
        its own from the first interval on."""
        return 0

    def track(self, pids):
        """Make the set of tracked PIDs equal ``pids``."""

    @abc.abstractmethod
    def sample(self, targets, pagemap=None):
        """``{pid: {mapping start: runs}}`` since the previous call (see the class docstring)."""

    def close(self):
        """Release what the backend holds in the kernel."""


class PagemapReads:
    """One interval's pagemap entries per mapping, read once: page_idle (PFNs) and soft-dirty
    (bit 55) both need them, and a pagemap read is one entry per page."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.entries = {}

    def read(self, pid, start, end):
        """Pagemap entries of a mapping, or None when the process is gone."""
        key = (pid, start, end)
        if key not in self.entries:
            self.entries[key] = self.kernel.read_pagemap(pid, start, (end - start) // PAGE_SIZE)
        return self.entries[key]

    def mappings(self, pid, vmas):
        """{mapping start: pagemap entries} of each of ``vmas``, or None when the process is gone."""
        per_vma = {}
        for start, end, _name in vmas:
            entries = self.read(pid, start, end)
            if entries is None:
                return None
            per_vma[start] = entries
        return per_vma


def pages_to_runs(start, values, missing=None):
    """Runs of equal values from one value per page starting at ``start`` (``missing`` = no run;
    an array of bytes can say -1 where a list would say None)."""
    runs = []
    run_start = None
    current = missing
    for index, value in enumerate(values):
        if value != current:
            if current != missing:
                runs.append((run_start, start + index * PAGE_SIZE, current))
            run_start = start + index * PAGE_SIZE
            current = value
    if current != missing:
        runs.append((run_start, start + len(values) * PAGE_SIZE, current))
    return runs
