"""``abort_if``: stop the faults as soon as live evidence crosses a line for long enough.

Each tick evaluates every condition on the trailing second; a condition that has held on every tick for
its ``for`` duration aborts the experiment. ``scope: client`` reads the client's own records, which
arrive within a fraction of a second. ``service:`` and ``edge:`` scopes read the sidecars' counters and
latency bins, scraped every half second while such a condition is watched (a scrape of every Envoy takes
about 20 ms), so the reaction stays within a second of the condition holding. That holds for the
``envoy`` source; through Prometheus a second holds no two samples of a sidecar, so ``validate`` refuses
those scopes with the ``prometheus`` source rather than watch a condition that could never fire.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.assertions import stats
from harness.assertions.evidence import WindowEvidence, is_success
from harness.assertions.slo import proportion_of, sidecar_latency_bins
from harness.metrics.snapshot import Snapshot
from harness.model.durations import parse_duration
from harness.model.suite import AbortCondition
from harness.traffic.load import Record

__all__ = ["SCRAPE_S", "AbortWatch", "SidecarWindow"]

TRAILING_S = 1.0
LAG_S = 0.3
"""Records arrive about 0.1–0.2 s after their request started; the last LAG_S is not yet complete."""
SCRAPE_S = 0.5
"""How often sidecars are scraped while a ``service:`` or ``edge:`` condition is watched."""
DEFAULT_QUANTILE = 0.99

SidecarWindow = Callable[[Snapshot, Snapshot], WindowEvidence]
"""Builds the evidence between two scrapes (the runner knows the nodes and policies)."""


class AbortWatch:
    def __init__(self, conditions: list[AbortCondition], sidecar_window: SidecarWindow | None = None) -> None:
        self.conditions = conditions
        self.since: dict[int, float] = {}
        self.sidecar_window = sidecar_window
        self.snapshots: list[Snapshot] = []

    @property
    def needs_sidecars(self) -> bool:
        return any(c.scope != "client" for c in self.conditions)

    def due(self, now: float) -> bool:
        """Whether the sidecars should be scraped now for this watch."""
        return self.needs_sidecars and (not self.snapshots or now - self.snapshots[-1].t >= SCRAPE_S)

    def observe(self, snapshot: Snapshot) -> None:
        """Keep a scrape for the trailing window; a scrape that missed an Envoy is not compared with one
        that did not (that would read a node's whole history, or nothing, as the last second)."""
        if self.snapshots:
            have, had = set(snapshot.envoy), set(self.snapshots[-1].envoy)
            if have < had:
                return
            if have > had:
                self.snapshots.clear()
        self.snapshots.append(snapshot)
        keep_from = snapshot.t - 3 * TRAILING_S
        while len(self.snapshots) > 2 and self.snapshots[1].t <= keep_from:
            self.snapshots.pop(0)

    def _sidecar_evidence(self) -> WindowEvidence | None:
        """The counters of about the trailing second: the newest scrape against the last one a second older."""
        if self.sidecar_window is None or len(self.snapshots) < 2:
            return None
        after = self.snapshots[-1]
        older = [s for s in self.snapshots[:-1] if s.t <= after.t - TRAILING_S]
        before = older[-1] if older else self.snapshots[0]
        return self.sidecar_window(before, after)

    @staticmethod
    def sidecar_value(cond: AbortCondition, ev: WindowEvidence | None) -> float | None:
        if ev is None:
            return None
        if cond.signal == "latency":
            bins, _ = sidecar_latency_bins(ev, cond.scope)
            if not sum(c for _, _, c in bins):
                return None
            return stats.binned_quantile(bins, cond.quantile or DEFAULT_QUANTILE)
        ok, n, _ = proportion_of(ev, cond.scope)
        if cond.signal == "throughput":
            return n / ev.counters_duration
        if n == 0:
            return None
        return ok / n if cond.signal == "success_rate" else 1 - ok / n

    @staticmethod
    def value(cond: AbortCondition, recent: list[Record]) -> float | None:
        if not recent:
            return None
        if cond.signal == "throughput":
            return len(recent) / TRAILING_S
        if cond.signal == "latency":
            return stats.quantile([r.latency_ms for r in recent], cond.quantile or DEFAULT_QUANTILE)
        ok = sum(1 for r in recent if is_success(r.status)) / len(recent)
        return ok if cond.signal == "success_rate" else 1 - ok

    @staticmethod
    def _bound(cond: AbortCondition, bound: float | str) -> float:
        return parse_duration(bound) * 1000 if isinstance(bound, str) else float(bound)

    def check(self, records: list[Record], now: float) -> str | None:
        """The reason to abort, or None. ``records`` is every client record so far, in arrival order."""
        start, end = now - LAG_S - TRAILING_S, now - LAG_S
        recent: list[Record] = []
        for record in reversed(records):  # records arrive in roughly time order: stop at the window start
            if record.t < start - 1.0:
                break
            if start <= record.t < end:
                recent.append(record)
        sidecars = self._sidecar_evidence() if self.needs_sidecars else None
        for i, cond in enumerate(self.conditions):
            value = self.value(cond, recent) if cond.scope == "client" else self.sidecar_value(cond, sidecars)
            holds = False
            if value is not None:
                if cond.below is not None:
                    holds = value < self._bound(cond, cond.below)
                elif cond.above is not None:
                    holds = value > self._bound(cond, cond.above)
            if not holds:
                self.since.pop(i, None)
                continue
            started = self.since.setdefault(i, now)
            if now - started >= cond.for_:
                bound = f"below {cond.below}" if cond.below is not None else f"above {cond.above}"
                return (f"{cond.signal} ({cond.scope}) was {value:.4g}, {bound}, for "
                        f"{max(now - started, 0):.1f}s (limit {cond.for_:g}s)")
        return None
