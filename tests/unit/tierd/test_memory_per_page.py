"""Memory per tracked page on the per-page path (page_idle + soft-dirty), measured with tracemalloc.

The unit's MemoryMax is derived from these bounds (tierd/README.md, "Memory"), so they are
asserted, not only printed.
"""

import sys
import tracemalloc
from array import array

from tierd.kernel import PAGE_SIZE, PAGEMAP_PRESENT, PAGEMAP_SOFT_DIRTY, Kernel
from tierd.log import Logger
from tierd.tracker import PagemapReads
from tierd.tracker_page_idle import PageIdleBackend
from tierd.tracker_soft_dirty import SoftDirtyTracker

from conftest import ListStream

PAGES = 256 * 1024  # 1 GiB of 4 KiB pages
# Kept from one interval to the next: the PFNs marked idle, one array('Q') entry per page.
RETAINED_BYTES_PER_PAGE = 9
# Held at once during a sample: that, this interval's pagemap entries and PFNs, the idle
# sample and the idle words (array entries, no Python int per page).
PEAK_BYTES_PER_PAGE = 48


class InMemoryKernel(Kernel):
    """Pagemap, page_idle and clear_refs of one process in memory: every page present, frames
    scattered one per idle-bitmap word (the worst case for the word tables), written in runs of
    64 pages (soft-dirty's runs are its output: one per change, see the README)."""

    def __init__(self, pages):
        Kernel.__init__(self, "/nonexistent")
        self.pages = pages

    def read_pagemap(self, pid, start, npages):
        first = start // PAGE_SIZE
        return array("Q", (PAGEMAP_PRESENT | (PAGEMAP_SOFT_DIRTY if (i // 64) % 2 else 0) | ((first + i) * 64)
                           for i in range(npages)))

    def page_idle_available(self):
        return True

    def read_text(self, path, default=None):
        return default

    def read_idle_words(self, word_indexes):
        return {}

    def write_idle_words(self, words):
        pass

    def read_kpageflags(self, pfns):
        return {}

    def clear_soft_dirty(self, pid):
        return True


def test_bytes_per_tracked_page_are_bounded():
    kernel = InMemoryKernel(PAGES)
    backend = PageIdleBackend(kernel, Logger(ListStream()))
    writes = SoftDirtyTracker(kernel)
    start = 0x7F0000000000
    targets = {4242: [(start, start + PAGES * PAGE_SIZE, "")]}
    tracemalloc.start()
    try:
        for _interval in range(3):
            tracemalloc.reset_peak()
            base, _peak_before = tracemalloc.get_traced_memory()
            pagemap = PagemapReads(kernel)
            samples = backend.sample(targets, pagemap)
            written = writes.sample(targets, pagemap)
            del pagemap
            _current, peak = tracemalloc.get_traced_memory()
        del samples, written
        retained, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_page_peak = (peak - base) / PAGES
    per_page_retained = retained / PAGES
    sys.stdout.write("bytes per tracked page: peak %.1f, retained %.1f\n" % (per_page_peak, per_page_retained))
    assert per_page_retained <= RETAINED_BYTES_PER_PAGE
    assert per_page_peak <= PEAK_BYTES_PER_PAGE
