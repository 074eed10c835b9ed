"""page_idle backend: mark each present page's frame idle, read the flag back an interval later."""

from array import array

from .kernel import KPF_THP, PAGE_SIZE, PAGEMAP_PFN_MASK, PAGEMAP_PRESENT
from .tracker import UNKNOWN, PagemapReads, Tracker, pages_to_runs

# Pages whose idle-bitmap words are looked up at a time: the word tables (a dict entry per word,
# ~100 bytes, up to one word per page when frames are scattered) stay this small.
CHUNK_PAGES = 16384


def fold_huge_pages(kernel, start, pfns, huge_pages):
    """``pfns`` with every frame of a transparent huge page replaced by its head frame.

    page_idle keeps a huge page's idle flag on its head frame only: a tail frame can be neither
    marked nor read (it always reads as accessed). A huge page mapped whole sits on an aligned
    virtual block with aligned, consecutive frames; /proc/kpageflags confirms it is one.
    """
    if huge_pages <= 1:
        return pfns
    first = (-(start // PAGE_SIZE)) % huge_pages
    candidates = [i for i in range(first, len(pfns) - huge_pages + 1, huge_pages)
                  if pfns[i] and pfns[i] % huge_pages == 0 and pfns[i + huge_pages - 1] == pfns[i] + huge_pages - 1]
    if not candidates:
        return pfns
    flags = kernel.read_kpageflags([pfns[i] for i in candidates])
    folded = array("Q", pfns)
    for i in candidates:
        if flags.get(pfns[i], 0) & KPF_THP:
            folded[i:i + huge_pages] = array("Q", [pfns[i]]) * huge_pages
    return folded


class PageIdleBackend(Tracker):
    """page_idle: mark each present page's frame idle, read the flag back one interval later.

    Pages of a transparent huge page are tracked through its head frame (see fold_huge_pages).
    """

    name = "page_idle"

    def __init__(self, kernel, logger):
        self.kernel = kernel
        self.logger = logger
        self.marked = {}  # pid -> {vma start: array('Q') of PFNs marked last interval (0 = none)}
        size = kernel.read_text("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", default="0")
        self.huge_pages = max(1, int(size) // PAGE_SIZE) if size.isdigit() else 1

    @classmethod
    def available(cls, kernel):
        if not kernel.page_idle_available():
            return False, "/sys/kernel/mm/page_idle/bitmap missing (kernel without CONFIG_IDLE_PAGE_TRACKING)"
        return True, "ok"

    def track(self, pids):
        for pid in list(self.marked):
            if pid not in pids:
                del self.marked[pid]

    def sample(self, targets, pagemap=None):
        self.track(targets)
        pagemap = pagemap or PagemapReads(self.kernel)
        frames = {}  # pid -> {vma start: array('Q') of current PFNs}
        for pid, vmas in targets.items():
            entries = pagemap.mappings(pid, vmas)
            if entries is None:
                continue
            per_vma = {}
            for start, end, _name in vmas:
                pfns = array("Q", (e & PAGEMAP_PFN_MASK if e & PAGEMAP_PRESENT else 0 for e in entries[start]))
                if len(pfns) < (end - start) // PAGE_SIZE:
                    pfns.extend([0] * ((end - start) // PAGE_SIZE - len(pfns)))
                per_vma[start] = fold_huge_pages(self.kernel, start, pfns, self.huge_pages)
            frames[pid] = per_vma
        # All reads before any mark (a frame shared by two processes is read for both before
        # it is marked again), each pass in chunks so that its word tables stay small.
        result = {}
        for pid, per_vma in frames.items():
            old = self.marked.get(pid, {})
            samples = {}
            for start, pfns in per_vma.items():
                before = old.get(start)
                sample = array("d", [UNKNOWN]) * len(pfns)
                if before is not None:
                    for low in range(0, len(pfns), CHUNK_PAGES):
                        high = min(len(pfns), low + CHUNK_PAGES)
                        words = self.kernel.read_idle_words(sorted({pfn >> 6 for pfn in pfns[low:high] if pfn}))
                        for i in range(low, min(high, len(before))):
                            pfn = pfns[i]
                            if pfn and before[i] == pfn:
                                sample[i] = 0.0 if (words.get(pfn >> 6, 0) >> (pfn & 63)) & 1 else 1.0
                samples[start] = pages_to_runs(start, sample)
            result[pid] = samples
        for per_vma in frames.values():
            for pfns in per_vma.values():
                for low in range(0, len(pfns), CHUNK_PAGES):
                    mark = {}
                    for pfn in pfns[low:low + CHUNK_PAGES]:
                        if pfn:
                            mark[pfn >> 6] = mark.get(pfn >> 6, 0) | (1 << (pfn & 63))
                    self.kernel.write_idle_words(mark)
        self.marked = frames
        return result

    def close(self):
        self.marked = {}
