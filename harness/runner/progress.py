"""What a run shows while it runs: the experiment, its phase and time left, and what the load sees now.

A chaos run is minutes of waiting; the people watching it (a CI log, a game day's facilitator) want to
see the fault bite and the mesh recover as it happens, not only the verdict at the end. The runner
hands a :class:`Progress` to its ``on_progress`` callback a few times a second; how it is shown (a live
line on a terminal, a plain line now and then in a log) is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.assertions.evidence import is_success
from harness.traffic.load import Record

__all__ = ["RECENT_S", "Progress", "recent", "timeline"]

RECENT_S = 2.0
"""The figures are over the requests that ended in the last this many seconds."""


@dataclass(frozen=True)
class Progress:
    """One look at a running experiment."""

    experiment: str
    phase: str
    """``baseline``, ``fault``, ``recovery``, or ``step N`` of a traffic shift."""
    left_s: float
    """Seconds until the phase (or step) ends at the latest."""
    rps: float
    success: float | None
    """Share of recent client requests that succeeded (None: no request yet)."""
    p99_ms: float | None
    faults: tuple[str, ...]
    """The kinds of the faults in force now."""

    def line(self) -> str:
        """One plain line, for a log."""
        ok = "—" if self.success is None else f"{self.success:.1%}"
        p99 = "—" if self.p99_ms is None else f"{self.p99_ms:.0f} ms"
        faults = ", ".join(self.faults) or "none"
        return (f"{self.experiment} · {self.phase} ({self.left_s:.0f}s left) · {self.rps:.0f} req/s · "
                f"success {ok} · p99 {p99} · faults: {faults}")


def _p99(sorted_ms: Sequence[float]) -> float:
    """The nearest-rank 99th percentile of sorted values (the largest for up to 100 of them)."""
    return sorted_ms[max(0, math.ceil(0.99 * len(sorted_ms)) - 1)]


def recent(records: Sequence[Record], now: float, span_s: float = RECENT_S) -> tuple[float, float | None,
                                                                                     float | None]:
    """(requests per second, success share, p99 latency in ms) over the requests that *ended* in the last
    ``span_s`` seconds: what is happening now. (By start time, a fault that delays every request would show
    nothing at all until the delay is over.) Records arrive roughly by completion, so the scan of the tail
    stops only once completions are well before the span."""
    start = now - span_s
    tail: list[Record] = []
    for record in reversed(records):
        ended = record.t + record.latency_ms / 1000
        if ended < start - span_s:
            break
        if start <= ended <= now:
            tail.append(record)
    if not tail:
        return 0.0, None, None
    ok = sum(1 for r in tail if is_success(r.status))
    return len(tail) / span_s, ok / len(tail), _p99(sorted(r.latency_ms for r in tail))


def timeline(records: Sequence[Record], t0: float, bucket_s: float = 1.0) -> list[dict[str, float]]:
    """The client's view second by second (by request start, from ``t0``): requests, the success share,
    p50 and p99 latency in ms. What the report's timeline picture draws; kept in the results so that the
    picture can be redrawn from them alone. Empty seconds are left out."""
    buckets: dict[int, list[Record]] = {}
    for record in records:
        buckets.setdefault(int((record.t - t0) // bucket_s), []).append(record)
    out: list[dict[str, float]] = []
    for index in sorted(buckets):
        group = buckets[index]
        latencies = sorted(r.latency_ms for r in group)
        out.append({
            "t": round(index * bucket_s, 3),
            "requests": len(group),
            "success": round(sum(1 for r in group if is_success(r.status)) / len(group), 4),
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(_p99(latencies), 2),
        })
    return out
