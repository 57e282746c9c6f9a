"""Sidecar latency from Envoy's histogram bins: intervals that keep their coverage, verdicts that can fail."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import TypeAdapter

from harness.assertions import stats
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.suite import Expectation


def _bins(values: list[float], width: float = 1.0) -> list[tuple[float, float, int]]:
    counts: dict[float, int] = {}
    for v in values:
        lower = (v // width) * width
        counts[lower] = counts.get(lower, 0) + 1
    return [(lo, width, c) for lo, c in sorted(counts.items())]


class TestBinnedQuantile:
    def test_interval_contains_the_exact_interval(self) -> None:
        """Widening to bins never makes the interval narrower than the raw order-statistic one."""
        rng = random.Random(7)
        values = [rng.expovariate(1 / 20) for _ in range(2000)]
        raw = stats.quantile_interval(values, 0.9, 0.99)
        binned = stats.binned_quantile_interval(_bins(values), 0.9, 0.99)
        assert raw is not None
        assert binned is not None
        assert binned[0] <= raw[0]
        assert binned[1] >= raw[1]
        assert binned[1] - binned[0] <= raw[1] - raw[0] + 2.0

    def test_coverage_by_simulation(self) -> None:
        """Over 300 samples of n=500, the binned p90 interval covers the true p90 at least 99% - 3 MC errors."""
        rng = random.Random(11)
        true_p90 = -20 * math.log(0.1)
        hits = 0
        trials = 300
        for _ in range(trials):
            values = [rng.expovariate(1 / 20) for _ in range(500)]
            iv = stats.binned_quantile_interval(_bins(values, 2.0), 0.9, 0.99)
            assert iv is not None
            hits += iv[0] <= true_p90 <= iv[1]
        assert hits / trials >= 0.99 - 3 * (0.99 * 0.01 / trials) ** 0.5

    def test_too_few_is_none(self) -> None:
        """Three observations cannot bound a p99."""
        assert stats.binned_quantile_interval([(0.0, 1.0, 3)], 0.99, 0.99) is None


def _evidence(bins: list[tuple[float, float, int]]) -> Evidence:
    nodes = {"ratings-v1-0": NodeInfo("ratings-v1-0", "ratings", "v1"),
             "reviews-v1-0": NodeInfo("reviews-v1-0", "reviews", "v1")}
    snap = Snapshot(0.0, hist={"ratings-v1-0": {"http.inbound.downstream_rq_time": bins},
                               "reviews-v1-0": {"http.outbound_ratings.downstream_rq_time": bins}})
    return Evidence({"fault": WindowEvidence("fault", 0.0, 10.0, [], snap, nodes)}, 0.99)


def _exp(scope: str, **bound: str) -> Expectation:
    data = {"kind": "slo", "signal": "latency", "quantile": 0.9, "scope": scope, "window": "fault", **bound}
    return TypeAdapter(Expectation).validate_python(data)


class TestSidecarLatencySlo:
    @pytest.mark.parametrize("scope", ["service:ratings", "edge:reviews->ratings"])
    def test_pass_and_fail(self, scope: str) -> None:
        """A 100 ms delay on half the requests: p90 >= 100ms passes, p90 <= 50ms fails, at either sidecar."""
        rng = random.Random(3)
        values = [rng.uniform(1, 5) if rng.random() < 0.5 else rng.uniform(101, 106) for _ in range(2000)]
        ev = _evidence(_bins(values))
        assert evaluate(_exp(scope, min="100ms"), ev).verdict == "pass"
        failed = evaluate(_exp(scope, max="50ms"), ev)
        assert failed.verdict == "fail"
        assert "histogram" in failed.message

    def test_no_requests_is_inconclusive(self) -> None:
        """An empty histogram cannot judge anything."""
        assert evaluate(_exp("service:ratings", max="50ms"), _evidence([])).verdict == "inconclusive"
