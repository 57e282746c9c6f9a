"""``abort_if``: stop the faults as soon as live client evidence crosses a line for long enough.

Each tick evaluates every condition on the client requests of the trailing second; a condition that
has held on every tick for its ``for`` duration aborts the experiment. Reading client records (not
scraped counters) keeps the reaction within a fraction of a second.
"""

from __future__ import annotations

from harness.assertions import stats
from harness.assertions.evidence import is_success
from harness.model.durations import parse_duration
from harness.model.suite import AbortCondition
from harness.traffic.load import Record

__all__ = ["AbortWatch"]

TRAILING_S = 1.0
LAG_S = 0.3
"""Records arrive about 0.1–0.2 s after their request started; the last LAG_S is not yet complete."""


class AbortWatch:
    def __init__(self, conditions: list[AbortCondition]) -> None:
        self.conditions = conditions
        self.since: dict[int, float] = {}

    @staticmethod
    def value(cond: AbortCondition, recent: list[Record]) -> float | None:
        if not recent:
            return None
        if cond.signal == "throughput":
            return len(recent) / TRAILING_S
        if cond.signal == "latency":
            return stats.quantile([r.latency_ms for r in recent], cond.quantile or 0.99)
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
        for i, cond in enumerate(self.conditions):
            value = self.value(cond, recent)
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
