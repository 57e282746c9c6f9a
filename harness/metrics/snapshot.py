"""Counter snapshots and the windowed deltas that expectations read.

A snapshot is every relevant counter of every Envoy (and every demo app) at one instant. A window's
evidence is the difference between the snapshot taken at its start and the one at its end, so a window
reads exactly the requests that happened inside it, whatever ran before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Bins = list[tuple[float, float, int]]
"""A histogram as Envoy's admin gives it with ``histogram_buckets=detailed``: (lower bound, width, count)."""

__all__ = ["Bins", "NodeInfo", "Snapshot", "delta", "total"]


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


def delta(before: Snapshot, after: Snapshot) -> Snapshot:
    """Counter increase from ``before`` to ``after``; a node restarted in between counts from zero.

    Only nodes present in both snapshots count. A scrape leaves out a node that did not answer; taking
    its counters as zero on one side would put its whole history (or nothing) into the window, so a
    node missed by either scrape is left out of the window instead: an undercount that the sample size
    shows, never an invented burst.
    """
    out = Snapshot(after.t)
    for node, stats in after.envoy.items():
        if node not in before.envoy:
            continue
        prior = before.envoy[node]
        out.envoy[node] = {k: (v - prior.get(k, 0.0) if v >= prior.get(k, 0.0) else v) for k, v in stats.items()}
    for node, hists in after.hist.items():
        if node not in before.hist:
            continue
        prior_h = before.hist[node]
        out.hist[node] = {name: _bins_delta(prior_h.get(name, []), bins) for name, bins in hists.items()}
    for inst, app in after.apps.items():  # app: the demo app's /__harness/stats JSON
        if inst not in before.apps:
            continue
        prior_app = before.apps[inst]
        entry: dict[str, Any] = {"requests": app.get("requests", 0) - prior_app.get("requests", 0)}
        for key in ("responses", "attempts"):
            now: dict[str, int] = dict(app.get(key) or {})
            then: dict[str, int] = dict(prior_app.get(key) or {})
            entry[key] = {k: v - then.get(k, 0) for k, v in now.items() if v - then.get(k, 0) > 0}
        by_caller: dict[str, dict[str, int]] = {}
        prior_callers = prior_app.get("attempts_by_caller") or {}
        for caller, hist in (app.get("attempts_by_caller") or {}).items():
            then_c = prior_callers.get(caller, {})
            by_caller[caller] = {k: v - then_c.get(k, 0) for k, v in hist.items() if v - then_c.get(k, 0) > 0}
        entry["attempts_by_caller"] = by_caller
        entry["max_inflight"] = app.get("max_inflight", 0)
        out.apps[inst] = entry
    return out


def _bins_delta(before: list[tuple[float, float, int]],
                after: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    then = {(lo, w): c for lo, w, c in before}
    diff = [(lo, w, c - then.get((lo, w), 0)) for lo, w, c in after]
    if any(c < 0 for _, _, c in diff):  # the Envoy restarted in between: its histogram began again
        return list(after)
    return [b for b in diff if b[2] > 0]


def total(snapshot: Snapshot, nodes: Iterable[str], name: str) -> float:
    """Sum of one counter over some Envoys."""
    return sum(snapshot.envoy.get(n, {}).get(name, 0.0) for n in nodes)
