"""'How much more would settle it': the estimates are in the right ballpark, and every kind gives one.

The ballpark is checked the way a user relies on it: take an inconclusive window, ask for the suggested
size, draw fresh windows of that size from the same truth, and count how often the verdict is then
settled. The estimate aims at 80% if the truth were exactly what the first window showed; since that
window's estimate is itself noisy, the average over many first windows lands a little lower or higher.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter

from harness.assertions import more, stats
from harness.assertions.base import bound_verdict
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate
from harness.mesh.policy import resolve
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.suite import Expectation
from harness.traffic.load import Record

CONFIDENCE = 0.99
NODES = {"productpage-v1-0": NodeInfo("productpage-v1-0", "productpage", "v1"),
         "reviews-v1-0": NodeInfo("reviews-v1-0", "reviews", "v1"),
         "reviews-v2-0": NodeInfo("reviews-v2-0", "reviews", "v2")}


def judge(fields: dict[str, Any], ev: WindowEvidence) -> Any:
    exp: Expectation = TypeAdapter(Expectation).validate_python(fields)
    return evaluate(exp, Evidence({ev.name: ev}, CONFIDENCE))


def records(statuses_latencies: list[tuple[int, float]], span: float = 10.0) -> list[Record]:
    n = len(statuses_latencies)
    return [Record(100.0 + span * i / n, ms, status, "productpage-v1", "productpage-v1,reviews-v1")
            for i, (status, ms) in enumerate(statuses_latencies)]


def window(recs: list[Record], envoy: dict[str, dict[str, float]] | None = None, span: float = 10.0) -> WindowEvidence:
    pol = {"productpage->reviews": resolve(None)}
    return WindowEvidence("fault", 100.0, 100.0 + span, recs, Snapshot(100.0 + span, envoy=envoy or {}),
                          dict(NODES), pol)


def settled_share(first: Callable[[random.Random], tuple[bool, int | None]],
                  again: Callable[[random.Random, int], bool], trials: int, repeats: int, seed: int) -> float:
    """Mean share of fresh windows, at each inconclusive first window's suggested size, that settle."""
    rng = random.Random(seed)
    shares = []
    for _ in range(trials):
        inconclusive, size = first(rng)
        if not inconclusive or size is None:
            continue
        shares.append(sum(again(rng, size) for _ in range(repeats)) / repeats)
    assert len(shares) >= trials // 3, "too few inconclusive first windows to judge the estimate"
    return sum(shares) / len(shares)


class TestBallpark:
    def test_rate_settles_most_of_the_time_at_the_suggested_size(self) -> None:
        """Success 96% against min 0.95 from 800 requests: at the suggested size, most fresh windows settle,
        and at a quarter of it clearly fewer do (the estimate is neither a guess low nor absurdly high)."""
        truth, bound, n = 0.96, 0.95, 800

        def draw(rng: random.Random, size: int) -> int:
            return round(rng.gauss(size * truth, (size * truth * (1 - truth)) ** 0.5))

        def first(rng: random.Random) -> tuple[bool, int | None]:
            k = draw(rng, n)
            inconclusive = bound_verdict(stats.wilson_interval(k, n, CONFIDENCE), bound, None) == "inconclusive"
            return inconclusive, more.proportion_needed(k, n, CONFIDENCE, bound, None)

        def again(rng: random.Random, size: int) -> bool:
            k = min(size, max(0, draw(rng, size)))
            return bound_verdict(stats.wilson_interval(k, size, CONFIDENCE), bound, None) != "inconclusive"

        at_size = settled_share(first, again, trials=40, repeats=60, seed=1)
        at_quarter = settled_share(first, lambda rng, size: again(rng, max(n, size // 4)), trials=40, repeats=60,
                                   seed=1)
        assert 0.55 <= at_size <= 0.97, at_size
        assert at_quarter < at_size - 0.2, (at_quarter, at_size)

    def test_quantile_settles_most_of_the_time_at_the_suggested_size(self) -> None:
        """A p90 of exponential latency (true 23.0ms) against max 26ms from 300 requests: at the suggested
        size most fresh windows settle."""
        q, bound, n = 0.9, 26.0, 300

        def sample(rng: random.Random, size: int) -> list[float]:
            return [rng.expovariate(0.1) for _ in range(size)]

        def first(rng: random.Random) -> tuple[bool, int | None]:
            values = sample(rng, n)
            iv = stats.quantile_interval(values, q, CONFIDENCE)
            inconclusive = iv is None or bound_verdict(iv, None, bound) == "inconclusive"
            return inconclusive, more.quantile_needed_values(values, q, CONFIDENCE, None, bound)

        def again(rng: random.Random, size: int) -> bool:
            iv = stats.quantile_interval(sample(rng, size), q, CONFIDENCE)
            return iv is not None and bound_verdict(iv, None, bound) != "inconclusive"

        assert 0.55 <= settled_share(first, again, trials=20, repeats=15, seed=2) <= 0.99

    def test_binned_quantile_matches_the_raw_one(self) -> None:
        """Envoy's 1ms bins ask for about as much as the raw values do when the bound is many bins away."""
        rng = random.Random(3)
        values = [rng.expovariate(0.1) for _ in range(300)]
        bins: dict[float, int] = {}
        for v in values:
            bins[float(int(v))] = bins.get(float(int(v)), 0) + 1
        raw = more.quantile_needed_values(values, 0.9, CONFIDENCE, None, 30.0)
        binned = more.quantile_needed_bins([(lo, 1.0, c) for lo, c in sorted(bins.items())], 0.9, CONFIDENCE,
                                           None, 30.0)
        assert raw is not None
        assert binned is not None
        assert 0.5 * raw <= binned <= 2 * raw

    def test_poisson_rate_window_length(self) -> None:
        """95 requests in 10s against min 8 req/s: the suggested window is longer, and a window of that
        length at the same rate gives an interval clear of the bound."""
        needed = more.rate_seconds_needed(95, 10.0, CONFIDENCE, 8.0, None)
        assert needed is not None
        assert needed > 10.0
        z = stats.normal_ppf(0.5 + CONFIDENCE / 2)
        count = 9.5 * needed
        assert (count - z * count ** 0.5) / needed > 8.0


class TestEdges:
    def test_on_the_bound_cannot_be_settled(self) -> None:
        """An observed value exactly on the bound: no amount of the same traffic settles it."""
        assert more.proportion_needed(95, 100, CONFIDENCE, 0.95, None) is None
        assert more.quantile_needed_values([1.0, 2.0, 3.0, 4.0] * 25, 0.5, CONFIDENCE, 2.5, None) is None
        assert more.quantile_needed_bins([(0.0, 10.0, 100)], 0.5, CONFIDENCE, None, 5.0) is None

    def test_settled_bounds_ask_for_nothing_more(self) -> None:
        """A bound the interval already clears adds no requirement."""
        assert more.proportion_needed(990, 1000, CONFIDENCE, 0.5, None) == 1000

    def test_smallest_quantile_samples(self) -> None:
        """The documented minimum sample sizes: 459 for a p99 and 44 for a p90 at 99%, 8 for a median."""
        assert more.min_quantile_sample(0.99, 0.99) == 459
        assert more.min_quantile_sample(0.9, 0.99) == 44
        assert more.min_quantile_sample(0.5, 0.99) == 8

    def test_nothing_observed_gives_the_least_that_could_pass(self) -> None:
        """With no samples, min 0.95 needs at least the n at which all-success would pass."""
        n = more.proportion_needed(0, 0, CONFIDENCE, 0.95, None)
        assert n is not None
        z = stats.normal_ppf(0.5 + CONFIDENCE / 2)
        assert more._wilson(1.0, n, z)[0] >= 0.95 > more._wilson(1.0, n - 1, z)[0]

    def test_more_text_names_seconds_at_the_rate(self) -> None:
        """The extra count and the time it takes at the window's rate are both reported."""
        hint = more.more(1500, 1000, 100.0)
        assert (hint.requests, hint.seconds) == (500, 5.0)
        assert "500 more requests" in hint.text
        assert hint.details() == {"more_requests": 500, "more_seconds": 5.0}


class TestEveryKindSaysHowMuchMore:
    """Each inconclusive verdict of the existing kinds carries ``more_requests`` and says it in words."""

    def test_success_rate(self) -> None:
        """96/100 against min 0.95: more requests, with seconds at the window's 10 req/s."""
        out = judge({"kind": "slo", "signal": "success_rate", "min": 0.95},
                    window(records([(200, 5.0)] * 96 + [(503, 5.0)] * 4)))
        assert out.verdict == "inconclusive"
        assert out.details["more_requests"] > 1000
        assert out.details["more_seconds"] == pytest.approx(out.details["more_requests"] / 10, rel=0.01)
        assert "more client requests" in out.message

    def test_no_samples(self) -> None:
        """An empty window says the least number of requests that could settle it."""
        out = judge({"kind": "slo", "signal": "success_rate", "min": 0.95}, window([]))
        assert out.verdict == "inconclusive"
        assert out.details["more_requests"] > 0
        assert "at least" in out.message

    def test_client_latency_too_few(self) -> None:
        """A p99 from 50 requests: at least 409 more (459 in all)."""
        out = judge({"kind": "slo", "signal": "latency", "quantile": 0.99, "max": "1s"},
                    window(records([(200, 5.0)] * 50)))
        assert out.verdict == "inconclusive"
        assert out.details["more_requests"] == 409

    def test_client_latency_straddling(self) -> None:
        """A p50 right next to its bound needs more requests than it has."""
        rng = random.Random(4)
        out = judge({"kind": "slo", "signal": "latency", "quantile": 0.5, "max": "7.5ms"},
                    window(records([(200, rng.expovariate(0.1)) for _ in range(200)])))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] > 0

    def test_sidecar_latency(self) -> None:
        """Binned latency at a service with too few requests for a p99."""
        snap = Snapshot(110.0, hist={"reviews-v1-0": {"http.inbound.downstream_rq_time": [(5.0, 1.0, 40)]}})
        ev = WindowEvidence("fault", 100.0, 110.0, [], snap, dict(NODES), {})
        out = judge({"kind": "slo", "signal": "latency", "quantile": 0.99, "scope": "service:reviews",
                     "max": "50ms"}, ev)
        assert out.verdict == "inconclusive"
        assert out.details["more_requests"] == 419

    def test_throughput(self) -> None:
        """95 requests in 10s against min 8 req/s: a longer window, in seconds."""
        out = judge({"kind": "slo", "signal": "throughput", "min": 8}, window(records([(200, 1.0)] * 95)))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_seconds"] > 0
        assert "longer" in out.message

    def test_traffic_split_too_few(self) -> None:
        """6 requests against a 90/10 split: 50 are needed for 5 expected in the 10% version."""
        recs = [Record(100.0 + i, 1.0, 200, "", "productpage-v1,reviews-v1") for i in range(6)]
        out = judge({"kind": "traffic-split", "service": "reviews", "split": {"v1": 90, "v2": 10}}, window(recs))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] == 44

    def test_traffic_split_tolerance(self) -> None:
        """A 50/50 split seen as 52/48 over 400 with ±5 points cannot yet tell: more requests."""
        recs = [Record(100.0 + i / 40, 1.0, 200, "", f"productpage-v1,reviews-{'v1' if i < 208 else 'v2'}")
                for i in range(400)]
        out = judge({"kind": "traffic-split", "service": "reviews", "split": {"v1": 50, "v2": 50}, "tolerance": 5},
                    window(recs))
        assert out.verdict == "inconclusive", out.message
        assert out.details["more_requests"] > 0
        assert out.details["more_seconds"] == pytest.approx(out.details["more_requests"] / 40, rel=0.01)

    def test_retries_never_exercised(self) -> None:
        """No failed attempt: how many more requests would show one at the largest failure rate allowed."""
        envoy = {"productpage-v1-0": {"cluster.out_reviews_v1.upstream_rq_total": 1000.0,
                                      "cluster.out_reviews_v1.upstream_rq_2xx": 1000.0}}
        out = judge({"kind": "retries", "route": {"from": "productpage", "to": "reviews"}},
                    window([], envoy=envoy))
        assert out.verdict == "inconclusive"
        assert out.details["more_requests"] > 0
        assert "without a fault, none will" in out.message
