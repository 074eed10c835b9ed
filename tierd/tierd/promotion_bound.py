"""Owner of kernel.numa_balancing_promote_rate_limit_MBps while tierd bounds the kernel's promotions.

With the kernel promoting (tiering_mode kernel_promotes), a DRAM budget or limit held by tierd is
undone by NUMA balancing, which knows no cgroup or quota: in bench/peers W3 it promoted the
low-priority tenant's hot pages that tierd had just demoted for the budget, 4,096 pages over an
8,192-page budget at a time, and tierd demoted them again the next interval. Linux has no
per-cgroup or per-task limit on those promotions; its one lever is this host-wide rate limit
(pages promoted per DRAM node per second). So while tierd demotes pages for a quota, it lowers
the limit to what lets the kernel add at most one move batch (mover.batch_pages) per interval
over all DRAM nodes, and puts back the value it found after RELEASE_INTERVALS intervals without
such demotions, when the mode changes, on stop, and at the next start after a crash (from the
record beside the state file). Every other workload's promotions are slowed as long as the bound
holds: the price of the quota.

It lowers only a limit nobody chose (the kernel's default): a value an operator set (the
kernel_tiering role's kernel_tiering_promote_rate_limit_mbps) is left alone, with one warning,
and a value changed by someone else while the bound holds ends the bound without a restore.
"""

import json
import os

from .kernel import PAGE_SIZE

KERNEL_DEFAULT_MBPS = 65536
RELEASE_INTERVALS = 12
SETTINGS = ("auto", "off")
MIB = 1 << 20


def bound_mbps(batch_pages, interval_seconds, dram_nodes):
    """The limit in MB/s under which the kernel promotes at most ``batch_pages`` per interval over
    ``dram_nodes`` DRAM nodes; at least 1 (0 would stop its promotions altogether)."""
    per_node_bytes = batch_pages * PAGE_SIZE / max(1, dram_nodes)
    return max(1, int(per_node_bytes / max(interval_seconds, 0.001) / MIB))


def record_path(state_file):
    return os.path.join(os.path.dirname(state_file) or ".", "promote-rate-limit.json")


class PromotionBound:
    def __init__(self, kernel, logger, state_file):
        self.kernel = kernel
        self.logger = logger
        self.record = record_path(state_file)
        self.original = None  # the value found before the bound, while it holds
        self.written = None  # the bound written, while it holds
        self.quiet_intervals = 0
        self.operator_value_warned = False

    def recover(self):
        """Put back the value a tierd that did not stop cleanly left bounded."""
        try:
            with open(self.record) as handle:
                saved = json.load(handle)
            original, written = int(saved["original_mbps"]), int(saved["bound_mbps"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        current = self.kernel.promote_rate_limit()
        if current == written:
            self._write(original)
            self.logger.info("kernel_promotions_unbounded", promote_rate_limit_mbps=original,
                             reason="left bounded by a tierd that did not stop cleanly")
        self._forget_record()

    def update(self, setting, mode, contended, batch_pages, interval_seconds, dram_nodes):
        """Once per interval: ``contended`` is whether tierd demoted pages for a quota this interval."""
        if self.written is not None and self.kernel.promote_rate_limit() != self.written:
            self.logger.warning("kernel_promotions_unbounded", promote_rate_limit_mbps=self.kernel.promote_rate_limit(),
                                reason="changed by someone else while tierd bounded it at %d" % self.written,
                                action="left as it is")
            self.original = self.written = None
            self._forget_record()
        if setting == "off" or mode != "kernel_promotes":
            self.release("kernel_promotion_bound off" if setting == "off" else "tiering mode %s" % mode)
            return
        if not contended:
            self.quiet_intervals += 1
            if self.written is not None and self.quiet_intervals >= RELEASE_INTERVALS:
                self.release("no demotion for a quota in %d intervals" % self.quiet_intervals)
            return
        self.quiet_intervals = 0
        bound = bound_mbps(batch_pages, interval_seconds, dram_nodes)
        if self.written is not None:
            if bound != self.written and self._write(bound):
                self.written = bound
                self._save_record()
            return
        current = self.kernel.promote_rate_limit()
        if current is None or current <= bound:
            return
        if current != KERNEL_DEFAULT_MBPS:
            if not self.operator_value_warned:
                self.operator_value_warned = True
                self.logger.warning("kernel_promotions_not_bounded", promote_rate_limit_mbps=current,
                                    reason="set by the operator (not the kernel's default %d)" % KERNEL_DEFAULT_MBPS,
                                    action="leaving it: the kernel may promote past a quota until tierd's next "
                                    "interval; kernel_tiering_promote_rate_limit_mbps null lets tierd bound it")
            return
        self.original, self.written = current, bound
        self._save_record()  # before the write: a crash right after it must still find the value to put back
        if not self._write(bound):
            self.original = self.written = None
            self._forget_record()
            return
        self.logger.info("kernel_promotions_bounded", promote_rate_limit_mbps=bound, was=current,
                         reason="tierd demotes for a quota and the kernel promotes: at most %d pages per interval"
                         % batch_pages)

    def release(self, reason):
        if self.written is None:
            return
        if self.kernel.promote_rate_limit() == self.written:
            self._write(self.original)
            self.logger.info("kernel_promotions_unbounded", promote_rate_limit_mbps=self.original, reason=reason)
        self.original = self.written = None
        self._forget_record()

    def state(self):
        return {"bound_mbps": self.written, "original_mbps": self.original}

    def _write(self, mbps):
        try:
            self.kernel.set_promote_rate_limit(mbps)
        except OSError as exc:
            self.logger.warning("promote_rate_limit_not_written", value=mbps, error=exc.strerror or str(exc))
            return False
        return True

    def _save_record(self):
        try:
            with open(self.record, "w") as out:
                json.dump({"original_mbps": self.original, "bound_mbps": self.written}, out)
        except OSError as exc:
            self.logger.warning("promote_rate_limit_record_not_written", path=self.record, error=exc.strerror)

    def _forget_record(self):
        try:
            os.unlink(self.record)
        except OSError:
            pass
