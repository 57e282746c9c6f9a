"""``circuit-breaker`` verdicts on synthetic evidence: every path, each shown failing where the promise is broken.

Counters use the local mesh's Envoy names (what the scrape holds); the calling apps' records of their
calls come from the demo service's own ``CallStats``; the callee apps' in-flight peaks are per window.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from harness.assertions.circuit_breaker import requests_to_show
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate
from harness.mesh.local.demo_service import CallStats
from harness.mesh.policy import resolve
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.environment import EdgePolicy
from harness.model.suite import Expectation

CONFIDENCE = 0.99
CALLERS = ("reviews-v1-0", "reviews-v2-0", "reviews-v3-0")
NODES = {n.id: n for n in (
    NodeInfo("productpage-v1-0", "productpage", "v1"),
    NodeInfo("reviews-v1-0", "reviews", "v1"),
    NodeInfo("reviews-v2-0", "reviews", "v2"),
    NodeInfo("reviews-v3-0", "reviews", "v3"),
    NodeInfo("ratings-v1-0", "ratings", "v1"),
)}
EXP = {"kind": "circuit-breaker", "route": {"from": "reviews", "to": "ratings"}, "window": "fault", "opens": True}


def sidecar(completed: int, active_overflow: int = 0, pending_overflow: int = 0) -> dict[str, float]:
    """One calling sidecar's counters for the edge to ratings."""
    return {
        "http.outbound_ratings.downstream_rq_completed": float(completed),
        "http.outbound_ratings.downstream_rq_5xx": float(active_overflow + pending_overflow),
        "cluster.out_ratings_v1.upstream_rq_total": float(completed - active_overflow - pending_overflow),
        "cluster.out_ratings_v1.upstream_rq_active_overflow": float(active_overflow),
        "cluster.out_ratings_v1.upstream_rq_pending_overflow": float(pending_overflow),
    }


def caller_app(ok: Sequence[float] = (), overloaded: Sequence[float] = ()) -> dict[str, Any]:
    c = CallStats()
    for ms in ok:
        c.record(200, "ok", ms)
    for ms in overloaded:
        c.record(503, "overloaded", ms)
    return {"calls": {"ratings": c.snapshot()}}


def window(envoy: dict[str, dict[str, float]], apps: dict[str, dict[str, Any]] | None = None,
           max_requests: int = 2) -> WindowEvidence:
    pol = {"reviews->ratings": resolve(EdgePolicy.model_validate({"circuit_breaker": {"max_requests": max_requests}}))}
    return WindowEvidence("fault", 100.0, 110.0, [], Snapshot(110.0, envoy=envoy, apps=apps or {}), dict(NODES), pol)


def judge(ev: WindowEvidence, **fields: Any) -> Any:
    exp: Expectation = TypeAdapter(Expectation).validate_python(EXP | fields)
    return evaluate(exp, Evidence({"fault": ev}, CONFIDENCE))


def open_breaker(rng: random.Random, overloaded_ms: float = 0.5, peak: int = 2) -> WindowEvidence:
    """Three sidecars at max_requests 2 shedding most of 1000 requests each, answered in ~overloaded_ms,
    while successful calls take ~200ms."""
    envoy = {node: sidecar(1000, active_overflow=900) for node in CALLERS}
    apps: dict[str, dict[str, Any]] = {
        node: caller_app(ok=[200 + rng.uniform(0, 10) for _ in range(100)],
                         overloaded=[overloaded_ms + rng.uniform(0, 1) for _ in range(900)])
        for node in CALLERS}
    apps["ratings-v1-0"] = {"max_inflight": peak}
    return window(envoy, apps)


class TestCircuitBreaker:
    def test_requests_to_show_an_open_breaker(self) -> None:
        """459 requests at 99%: an open breaker (shedding >= 1%) would have shown an overflow."""
        assert requests_to_show(0.99) == 459

    def test_open_breaker_that_sheds_fast_and_caps_concurrency_passes(self) -> None:
        """2700 of 3000 requests overflowed, answered in ~1ms against ~200ms, ratings peaked at 2 in flight
        (limit 2 × 3 callers): pass, with the overflow share and its interval."""
        out = judge(open_breaker(random.Random(1)), max_concurrency=2)
        assert out.verdict == "pass", out.message
        assert out.samples == 3000
        assert out.observed is not None
        assert abs(out.observed - 0.9) < 1e-9
        assert out.interval is not None
        assert out.interval[0] < 0.9 < out.interval[1]
        assert out.details["overloaded_median_ms"] < 2
        assert "opened" in out.message

    def test_breaker_that_never_opens_fails(self) -> None:
        """1500 requests and no overflow: a high limit never opened the breaker (opens: true fails)."""
        out = judge(window({node: sidecar(500) for node in CALLERS}, max_requests=1000))
        assert out.verdict == "fail", out.message
        assert "never opened" in out.message
        assert "max_requests 1000" in out.message

    def test_too_few_requests_to_tell_is_inconclusive(self) -> None:
        """100 requests and no overflow cannot show a breaker shut: 359 more would."""
        out = judge(window({"reviews-v1-0": sidecar(100)}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 359
        assert out.details["more_seconds"] == 35.9

    def test_no_requests_is_inconclusive(self) -> None:
        """No traffic on the edge: inconclusive, 459 requests needed."""
        out = judge(window({}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 459

    def test_slow_overloaded_answers_fail(self) -> None:
        """Overflowed requests answered after ~190ms, as slow as the callee: not the mesh's fast answer."""
        out = judge(open_breaker(random.Random(2), overloaded_ms=190.0))
        assert out.verdict == "fail", out.message
        assert "not fast" in out.message

    def test_concurrency_above_the_limit_fails(self) -> None:
        """ratings saw 9 requests in flight where 2 × 3 callers allow 6."""
        out = judge(open_breaker(random.Random(3), peak=9), max_concurrency=2)
        assert out.verdict == "fail", out.message
        assert "9 requests in flight" in out.message

    def test_default_concurrency_limit_is_the_policy(self) -> None:
        """Without max_concurrency the limit in force (max_requests 2) applies."""
        out = judge(open_breaker(random.Random(3), peak=9))
        assert out.verdict == "fail", out.message
        assert out.details["concurrency_limit"] == 2

    def test_too_few_overloaded_answers_to_time_is_inconclusive(self) -> None:
        """Overflow counted, but only 3 overloaded answers reached the apps: too few to time them."""
        envoy = {"reviews-v1-0": sidecar(1000, active_overflow=3)}
        out = judge(window(envoy, {"reviews-v1-0": caller_app(ok=[200.0] * 50, overloaded=[1.0] * 3)}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 5

    def test_callee_latency_from_its_sidecars_when_no_call_succeeded(self) -> None:
        """Every call overflowed: the callee's own sidecars tell how slow it is."""
        envoy = {"reviews-v1-0": sidecar(1000, active_overflow=1000),
                 "ratings-v1-0": {}}
        snap_hist = {"ratings-v1-0": {"http.inbound.downstream_rq_time": [(200.0, 10.0, 50)]}}
        ev = window(envoy, {"reviews-v1-0": caller_app(overloaded=[1.0] * 100)})
        ev.counters.hist = snap_hist
        out = judge(ev)
        assert out.verdict == "pass", out.message
        assert "sidecars" in out.message

    def test_closed_breaker_passes_with_enough_traffic(self) -> None:
        """opens: false and no overflow in 1500 requests: pass."""
        out = judge(window({node: sidecar(500) for node in CALLERS}), opens=False)
        assert out.verdict == "pass", out.message

    def test_any_overflow_fails_a_closed_breaker(self) -> None:
        """opens: false with 5 overflows (pending queue) fails, naming them."""
        out = judge(window({"reviews-v1-0": sidecar(1000, pending_overflow=5)}), opens=False)
        assert out.verdict == "fail", out.message
        assert "5 from the pending queue" in out.message

    def test_closed_breaker_with_too_few_requests_is_inconclusive(self) -> None:
        """opens: false with 200 requests: inconclusive, 259 more."""
        out = judge(window({"reviews-v1-0": sidecar(200)}), opens=False)
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 259

    def test_other_edges_overflows_are_not_this_edges(self) -> None:
        """productpage's overflow towards reviews does not open the reviews->ratings breaker."""
        envoy = {node: sidecar(500) for node in CALLERS}
        envoy["productpage-v1-0"] = {"cluster.out_reviews_v1.upstream_rq_active_overflow": 500.0}
        out = judge(window(envoy), opens=False)
        assert out.verdict == "pass", out.message
