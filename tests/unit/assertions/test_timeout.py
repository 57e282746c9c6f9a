"""``timeout`` verdicts on synthetic evidence: every path, each shown failing where the promise is broken.

The calling apps' records are built with the demo service's own ``CallStats`` (the structure and the
latency bins the real app serves), so the evidence is what a window of a real run holds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate
from harness.assertions.timeout import tolerance_ms
from harness.mesh.local.demo_service import CallStats
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.suite import Expectation
from harness.traffic.load import Record

CONFIDENCE = 0.99
NODES = {n.id: n for n in (
    NodeInfo("gateway", "gateway", ""),
    NodeInfo("productpage-v1-0", "productpage", "v1"),
    NodeInfo("reviews-v1-0", "reviews", "v1"),
    NodeInfo("reviews-v2-0", "reviews", "v2"),
    NodeInfo("ratings-v1-0", "ratings", "v1"),
)}
EXP = {"kind": "timeout", "route": {"from": "reviews", "to": "ratings"}, "window": "fault", "at": "100ms"}


def calls(timeouts: Sequence[float] = (), ok: Sequence[float] = (), overloaded: Sequence[float] = ()) -> dict[str, Any]:
    """One app's record of its calls to ratings, as /__harness/stats serves it."""
    c = CallStats()
    for ms in timeouts:
        c.record(504, "timeout", ms)
    for ms in ok:
        c.record(200, "ok", ms)
    for ms in overloaded:
        c.record(503, "overloaded", ms)
    return c.snapshot()


def window(apps: dict[str, dict[str, Any]], envoy: dict[str, dict[str, float]] | None = None,
           records: Sequence[Record] = ()) -> WindowEvidence:
    snap = Snapshot(110.0, envoy=envoy or {},
                    apps={inst: {"calls": {"ratings": c}} for inst, c in apps.items()})
    return WindowEvidence("fault", 100.0, 110.0, list(records), snap, dict(NODES), {})


def judge(ev: WindowEvidence, **fields: Any) -> Any:
    exp: Expectation = TypeAdapter(Expectation).validate_python(EXP | fields)
    return evaluate(exp, Evidence({"fault": ev}, CONFIDENCE))


def around(rng: random.Random, centre: float, spread: float, n: int) -> list[float]:
    return [centre + rng.uniform(0, spread) for _ in range(n)]


class TestTimeout:
    def test_tolerance_is_ten_percent_or_twenty_ms(self) -> None:
        """The band of SUITE-FORMAT §2: ±20ms up to 200ms, ±10% beyond."""
        assert (tolerance_ms(100), tolerance_ms(200), tolerance_ms(3000)) == (20.0, 20.0, 300.0)

    def test_calls_cut_at_the_declared_time_pass(self) -> None:
        """300 calls ending at 100-104ms with 504 (over two calling instances), none slower succeeded: pass,
        with the median ending time and its interval inside the band."""
        rng = random.Random(1)
        ev = window({"reviews-v1-0": calls(around(rng, 100, 4, 150), ok=around(rng, 2, 3, 500)),
                     "reviews-v2-0": calls(around(rng, 100, 4, 150))},
                    envoy={"reviews-v1-0": {"cluster.out_ratings_v1.upstream_rq_timeout": 150.0},
                           "reviews-v2-0": {"cluster.out_ratings_v1.upstream_rq_timeout": 150.0}})
        out = judge(ev)
        assert out.verdict == "pass", out.message
        assert out.samples == 300
        assert out.interval is not None
        assert 80 <= out.interval[0] <= out.observed <= out.interval[1] <= 120
        assert out.details["timeouts_counted"] == 300
        assert "504" in out.message

    def test_a_few_slow_successes_among_many_timeouts_still_pass(self) -> None:
        """3 successes measured at 130ms next to 500 timeouts at 101ms are measurement noise, not a longer
        timeout: the share of slow calls that succeeded stays far below 10%."""
        rng = random.Random(2)
        out = judge(window({"reviews-v1-0": calls(around(rng, 100, 3, 500), ok=[130.0, 131.0, 135.0])}))
        assert out.verdict == "pass", out.message

    def test_timeout_longer_than_declared_fails(self) -> None:
        """No call timed out and 200 calls succeeded after ~300ms: the timeout in force is longer than 100ms."""
        rng = random.Random(3)
        out = judge(window({"reviews-v1-0": calls(ok=around(rng, 300, 10, 200))}))
        assert out.verdict == "fail", out.message
        assert "longer than 100ms" in out.message
        assert out.details["overlong_successes"] == 200

    def test_timeout_at_another_time_fails(self) -> None:
        """Calls cut at ~200ms where 100ms was declared: the ending time is outside the band."""
        rng = random.Random(4)
        out = judge(window({"reviews-v1-0": calls(around(rng, 200, 4, 100))}))
        assert out.verdict == "fail", out.message
        assert "about 20" in out.message
        assert out.observed is not None
        assert out.observed > 120

    def test_timeout_shorter_than_declared_fails(self) -> None:
        """Calls cut at ~50ms where 300ms was declared fail too."""
        rng = random.Random(5)
        out = judge(window({"reviews-v1-0": calls(around(rng, 50, 2, 100))}), at="300ms")
        assert out.verdict == "fail", out.message

    def test_no_slow_call_is_inconclusive_and_says_how_many(self) -> None:
        """Fast calls only: the timeout was never reached; 8 slow calls are the least that could settle it
        (a median interval at 99%), and the message says to delay the callee."""
        out = judge(window({"reviews-v1-0": calls(ok=[2.0] * 300)}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 8
        assert "delay ratings" in out.message

    def test_a_few_timeouts_are_inconclusive_with_time_at_the_rate(self) -> None:
        """5 timeouts at 100ms in 10s: more are needed, at this window's 0.5 per second."""
        out = judge(window({"reviews-v1-0": calls([101.0] * 5)}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] > 0
        assert out.details["more_seconds"] > 0
        assert "more slow calls" in out.message

    def test_ending_time_at_the_edge_of_the_band_is_inconclusive(self) -> None:
        """Calls ending across 110-130ms straddle the band's upper edge (120ms) at 12 samples."""
        out = judge(window({"reviews-v1-0": calls([110.0, 112.0, 114.0, 116.0, 118.0, 119.0, 121.0, 122.0, 124.0,
                                                   126.0, 128.0, 130.0])}))
        assert out.verdict == "inconclusive", out.message
        assert "more_requests" in out.details

    def test_the_gateway_edge_reads_the_client(self) -> None:
        """From the gateway, the client's 504s are the timed-out calls."""
        rng = random.Random(6)
        recs = [Record(100 + i / 30, ms, 504, "", "") for i, ms in enumerate(around(rng, 100, 4, 200))]
        out = judge(window({}, records=recs), route={"from": "gateway", "to": "productpage"})
        assert out.verdict == "pass", out.message

    def test_a_caller_that_is_no_demo_app_cannot_be_timed(self) -> None:
        """Only the mesh's counter, no call records: inconclusive, and more requests would not help."""
        out = judge(window({}, envoy={"reviews-v1-0": {"cluster.out_ratings_v1.upstream_rq_timeout": 50.0}}))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] is None
        assert "counted 50 timeouts" in out.message
