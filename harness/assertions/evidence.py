"""Evidence: what one window of one experiment saw, in the only form expectations may read.

Expectations never talk to a mesh. They get client records (one per request Locust made), counter
deltas per Envoy and per demo app, which Envoy fronts what, and the policy in force on each edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.mesh.policy import ResolvedPolicy
from harness.metrics.snapshot import NodeInfo, Snapshot, total
from harness.traffic.load import Record

__all__ = ["EdgeCounts", "Evidence", "HcmCounts", "WindowEvidence", "is_success"]


def is_success(status: int) -> bool:
    """A response arrived and was not a 5xx: the meaning of success at every scope (as in Istio's
    success-rate metrics), so client and sidecar numbers are comparable. Status 0 is a connection error."""
    return 0 < status < 500


@dataclass(frozen=True)
class EdgeCounts:
    """Upstream side of an edge, summed over every calling sidecar and every callee version."""

    attempts: float
    retries: float
    successes: float
    final_5xx: float
    retry_overflow: float
    retry_limit_exceeded: float
    overflow: float
    timeouts: float

    @property
    def requests(self) -> float:
        """Requests the callers sent (each may have made several attempts)."""
        return self.attempts - self.retries

    @property
    def failed_attempts(self) -> float:
        """Attempts that did not succeed. Clamped at 0: a request in flight when the window opened is
        counted as an attempt before the window and as a success inside it, so a version that did not
        fail at all can read -1 or -2."""
        return max(0.0, self.attempts - self.successes)


@dataclass(frozen=True)
class HcmCounts:
    """Downstream side of a listener: what callers were finally answered."""

    total: float
    ok: float
    xx5: float


@dataclass
class WindowEvidence:
    name: str
    start: float
    end: float
    records: list[Record]
    counters: Snapshot
    nodes: dict[str, NodeInfo]
    policies: dict[str, ResolvedPolicy] = field(default_factory=dict)
    counter_span: float | None = None
    """Seconds between the two scrapes behind ``counters``, when it differs from the records' window (a
    window judged at a look ends half a second before its scrape, so that every client record is in)."""

    @property
    def duration(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def counters_duration(self) -> float:
        return max(self.counter_span, 1e-9) if self.counter_span is not None else self.duration

    def versions_of(self, service: str) -> list[str]:
        return sorted({n.version for n in self.nodes.values() if n.service == service})

    def nodes_of(self, service: str, version: str | None = None) -> list[str]:
        return [n.id for n in self.nodes.values() if n.service == service and version in (None, n.version)]

    def sum(self, nodes: Iterable[str], prefix: str, suffix: str) -> float:
        """Sum of every counter ``<prefix>*<suffix>`` (e.g. each version's cluster) over ``nodes``."""
        out = 0.0
        for node in nodes:
            for name, value in self.counters.envoy.get(node, {}).items():
                if name.startswith(prefix) and name.endswith(suffix) and "." not in name[len(prefix):-len(suffix)]:
                    out += value
        return out

    def edge(self, caller: str, callee: str, version: str | None = None) -> EdgeCounts:
        """The callers' upstream counters towards ``callee``: every version's cluster, or one version's."""
        callers = self.nodes_of(caller)
        prefix = f"cluster.out_{callee}_"

        def s(suffix: str) -> float:
            if version is not None:
                return total(self.counters, callers, f"{prefix}{version}{suffix}")
            return self.sum(callers, prefix, suffix)

        return EdgeCounts(
            attempts=s(".upstream_rq_total"),
            retries=s(".upstream_rq_retry"),
            successes=s(".upstream_rq_2xx"),
            final_5xx=s(".upstream_rq_5xx"),
            retry_overflow=s(".upstream_rq_retry_overflow"),
            retry_limit_exceeded=s(".upstream_rq_retry_limit_exceeded"),
            overflow=s(".upstream_rq_pending_overflow") + s(".upstream_rq_active_overflow"),
            timeouts=s(".upstream_rq_timeout") + s(".upstream_rq_per_try_timeout"),
        )

    def hcm(self, nodes: Iterable[str], prefix: str) -> HcmCounts:
        nodes = list(nodes)
        done = total(self.counters, nodes, f"http.{prefix}.downstream_rq_completed")
        xx = {c: total(self.counters, nodes, f"http.{prefix}.downstream_rq_{c}xx") for c in "12345"}
        return HcmCounts(total=done, ok=xx["2"] + xx["3"] + xx["1"], xx5=xx["5"])

    def latency_bins(self, nodes: Iterable[str], prefix: str) -> list[tuple[float, float, int]]:
        """The window's ``http.<prefix>.downstream_rq_time`` bins (ms), merged over ``nodes``."""
        merged: dict[tuple[float, float], int] = {}
        for node in nodes:
            for lower, width, count in self.counters.hist.get(node, {}).get(f"http.{prefix}.downstream_rq_time", []):
                merged[(lower, width)] = merged.get((lower, width), 0) + count
        return [(lo, w, c) for (lo, w), c in sorted(merged.items())]

    def attempt_histogram(self, service: str, caller: str | None = None) -> dict[int, int]:
        """How many requests the callee's apps saw at each ``x-envoy-attempt-count``.

        With ``caller``, only the attempts made by that service's sidecars (another edge's retries into
        the same callee are not this edge's business).
        """
        out: dict[int, int] = {}
        for inst, stats in self.counters.apps.items():
            info = self.nodes.get(inst)
            if info is None or info.service != service:
                continue
            hist = stats.get("attempts", {}) if caller is None else stats.get("attempts_by_caller", {}).get(caller, {})
            for k, v in hist.items():
                out[int(k)] = out.get(int(k), 0) + int(v)
        return out


@dataclass
class Evidence:
    """All windows of one experiment, by name (``baseline``, ``fault``, ``recovery``, ``all``)."""

    windows: dict[str, WindowEvidence]
    confidence: float
    window_confidence: dict[str, float] = field(default_factory=dict)
    """Windows judged at another confidence than the suite's: an adaptive phase's, whose looks share
    the suite's error budget."""

    def window(self, name: str) -> WindowEvidence:
        return self.windows[name]

    def confidence_for(self, name: str) -> float:
        return self.window_confidence.get(name, self.confidence)
