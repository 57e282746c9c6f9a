"""Counter snapshots and the windowed deltas that expectations read.

A snapshot is every relevant counter of every Envoy (and every demo app) at one instant, in the metric
source's own names, stamped with the :class:`~harness.metrics.envoy_names.Naming` that maps them into
the harness's vocabulary. A window's evidence is the difference between the snapshot taken at its
start and the one at its end, so a window reads exactly the requests that happened inside it, whatever
ran before; what a difference cannot show (a gauge over time: was the instance ejected *while* it was
called?) is read from the snapshots taken in between, which the delta keeps as its ``series``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.metrics.envoy_names import LOCAL, Naming

Bins = list[tuple[float, float, int]]
"""A histogram as Envoy's admin gives it with ``histogram_buckets=detailed``: (lower bound, width, count)."""

__all__ = ["Bins", "NodeInfo", "Snapshot", "delta", "total", "window_max_inflight"]


@dataclass(frozen=True)
class NodeInfo:
    """What an Envoy fronts: ``service``/``version`` of its instance, or ``gateway``."""

    id: str
    service: str
    version: str


@dataclass
class Snapshot:
    t: float
    envoy: dict[str, dict[str, float]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    hist: dict[str, dict[str, list[tuple[float, float, int]]]] = field(default_factory=dict)
    """Per Envoy, per histogram: bins (lower bound, width, count), cumulative like counters."""
    hosts: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    """Per Envoy, per cluster, per host address: ``rq_total``, ``rq_error`` (cumulative) and ``ejected``."""
    naming: Naming = field(default=LOCAL, repr=False, compare=False)
    """How this snapshot's names map into the vocabulary (set by the source that took it)."""
    history: Sequence[Snapshot] | None = field(default=None, repr=False, compare=False)
    """The source's history this snapshot was appended to, so that a window can find the snapshots
    taken between its two ends."""
    series: list[Snapshot] = field(default_factory=list, repr=False, compare=False)
    """For a delta: the raw snapshots from its start to its end, both included, oldest first."""
    at: dict[str, float] = field(default_factory=dict, repr=False, compare=False)
    """Per Envoy, when its counters were read, where that is not ``t``: a source that samples on its own
    schedule (Prometheus) gives each node's last sample at or before ``t``."""
    opening: Snapshot | None = field(default=None, repr=False, compare=False)
    """The view of this instant as the *start* of a window, where it differs from its end view: for a
    sampling source, each node's first sample after ``t``, so that a window starting here never reads
    a counter increase that happened before it (Prometheus: scrape lag handled, not slept away)."""
    span: float | None = field(default=None, repr=False, compare=False)
    """For a delta of sampled counters: the typical time between each node's two samples (shorter than
    the window by up to two scrape intervals), so that rates divide by the time the counts cover."""


def delta(before: Snapshot, after: Snapshot) -> Snapshot:
    """Counter increase from ``before`` to ``after``; a node restarted in between counts from zero.

    Only nodes present in both snapshots count. A scrape leaves out a node that did not answer; taking
    its counters as zero on one side would put its whole history (or nothing) into the window, so a
    node missed by either scrape is left out of the window instead: an undercount that the sample size
    shows, never an invented burst. Gauges subtract to nothing meaningful: read them from ``series``.
    """
    out = Snapshot(after.t, naming=after.naming, series=_between(before, after))
    start = before.opening if before.opening is not None else before
    inside: set[str] | None = None  # sampled sources only: the nodes with a sample inside the window
    if start.at or after.at:
        # A node whose first sample after the start is not older than its last sample before the end had
        # no sample inside the window: it says nothing about it (and subtracting would go backwards).
        spans = {node: after.at.get(node, after.t) - start.at.get(node, before.t) for node in after.envoy}
        inside = {node for node, span in spans.items() if span > 0}
        ordered = sorted(spans[n] for n in inside if n in start.envoy)
        out.span = ordered[len(ordered) // 2] if ordered else None
    before = replace(before, envoy=start.envoy, hist=start.hist, hosts=start.hosts)
    for node, stats in after.envoy.items():
        if node not in before.envoy or (inside is not None and node not in inside):
            continue
        prior = before.envoy[node]
        out.envoy[node] = {k: (v - prior.get(k, 0.0) if v >= prior.get(k, 0.0) else v) for k, v in stats.items()}
    for node, hists in after.hist.items():
        if node not in before.hist or (inside is not None and node not in inside):
            continue
        prior_h = before.hist[node]
        out.hist[node] = {name: _bins_delta(prior_h.get(name, []), bins) for name, bins in hists.items()}
    for node, clusters in after.hosts.items():
        if node not in before.hosts or (inside is not None and node not in inside):
            continue
        out.hosts[node] = {cluster: {host: _host_delta(before.hosts[node].get(cluster, {}).get(host, {}), s)
                                     for host, s in by_host.items()}
                           for cluster, by_host in clusters.items()}
    for inst, app in after.apps.items():  # app: the demo app's /__harness/stats JSON
        if inst not in before.apps:
            continue
        out.apps[inst] = _app_delta(before.apps[inst], app, before.t, after.t, out.series, inst)
    return out


def _between(before: Snapshot, after: Snapshot) -> list[Snapshot]:
    """The snapshots of ``after``'s history from ``before`` to ``after``; just the two without one."""
    history = after.history
    inside: list[Snapshot] = []
    if history is not None:
        for _ in range(3):  # the scraper thread may append while we copy; a retry sees a stable deque
            try:
                # Sorted: two threads (the runner's boundary scrapes, the background ones) append to it.
                inside = sorted((s for s in tuple(history) if before.t < s.t < after.t), key=lambda s: s.t)
                break
            except RuntimeError:
                continue
    return [before, *inside, after] if after is not before else [after]


def _host_delta(prior: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    out = {}
    for key, value in now.items():
        then = prior.get(key, 0.0)
        out[key] = value if key == "ejected" or value < then else value - then
    return out


def _app_delta(prior_app: dict[str, Any], app: dict[str, Any], t0: float, t1: float,
               series: list[Snapshot], inst: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"requests": app.get("requests", 0) - prior_app.get("requests", 0)}
    for key in ("responses", "attempts"):
        entry[key] = _count_delta(prior_app.get(key), app.get(key))
    by_caller: dict[str, dict[str, int]] = {}
    prior_callers = prior_app.get("attempts_by_caller") or {}
    for caller, hist in (app.get("attempts_by_caller") or {}).items():
        by_caller[caller] = _count_delta(prior_callers.get(caller), hist)
    entry["attempts_by_caller"] = by_caller
    calls: dict[str, dict[str, Any]] = {}
    prior_calls = prior_app.get("calls") or {}
    for callee, now in (app.get("calls") or {}).items():
        then = prior_calls.get(callee) or {}
        then_lat = then.get("latency") or {}
        calls[callee] = {
            "status": _count_delta(then.get("status"), now.get("status")),
            "outcomes": _count_delta(then.get("outcomes"), now.get("outcomes")),
            "latency": {kind: _bins_delta([tuple(b) for b in then_lat.get(kind, [])], [tuple(b) for b in bins])
                        for kind, bins in (now.get("latency") or {}).items()},
        }
    entry["calls"] = calls
    entry["max_inflight"] = window_max_inflight(prior_app, app, t0, t1, series, inst)
    return entry


def _count_delta(then: dict[str, int] | None, now: dict[str, int] | None) -> dict[str, int]:
    prior = dict(then or {})
    return {k: v - prior.get(k, 0) for k, v in (now or {}).items() if v - prior.get(k, 0) > 0}


def window_max_inflight(prior_app: dict[str, Any], app: dict[str, Any], t0: float, t1: float,
                        series: Sequence[Snapshot] = (), inst: str = "") -> int:
    """The most requests the app had in flight at once between ``t0`` and ``t1``.

    The app logs a peak per quarter second in which a request arrived; in a quarter second without
    arrivals the count only falls, so the maximum is the level at ``t0`` (the first snapshot's
    ``inflight``) or a logged peak inside the window. A quarter second that straddles ``t0`` counts
    whole (an overestimate of at most a quarter second's arrivals, never an underestimate). The log
    keeps a minute; the snapshots in between carry the earlier part of a longer window. An app that
    keeps no log (an older demo service) gives its since-start maximum.
    """
    logs = [app.get("inflight_peaks")] + [s.apps.get(inst, {}).get("inflight_peaks") for s in series]
    if app.get("inflight_peaks") is None:
        return int(app.get("max_inflight", 0))
    best = int(prior_app.get("inflight", 0))
    width = float(app.get("inflight_peak_s", 0.25))
    for log in logs:
        for start, peak in log or ():
            if start + width > t0 and start <= t1:
                best = max(best, int(peak))
    return best


def _bins_delta(before: Sequence[tuple[float, float, int]],
                after: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    then = {(lo, w): c for lo, w, c in before}
    diff = [(lo, w, c - then.get((lo, w), 0)) for lo, w, c in after]
    if any(c < 0 for _, _, c in diff):  # the Envoy restarted in between: its histogram began again
        return [(lo, w, c) for lo, w, c in after]
    return [b for b in diff if b[2] > 0]


def total(snapshot: Snapshot, nodes: Iterable[str], name: str) -> float:
    """Sum of one counter over some Envoys."""
    return sum(snapshot.envoy.get(n, {}).get(name, 0.0) for n in nodes)
