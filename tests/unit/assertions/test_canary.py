"""The ``canary`` expectation and the statistics behind it, on synthetic sidecar evidence (no processes).

Evidence is built as the runner builds it: per instance of the service, the inbound listener's counters
(completed, 2xx, 5xx) and its latency histogram in Envoy's detailed bins, under the local mesh's stat
names. Latencies are drawn from a lognormal (median 10 ms, the spread of a real service) with a seeded
``random.Random`` and binned the way Envoy's histograms bin them: two significant digits, so 10–11 ms,
100–110 ms, 1.0–1.1 ms. References for the statistics do not share their code: scipy's
``mannwhitneyu`` on the expanded values, DeLong's variance by brute force over every pair, Newcombe's
published table, and seeded simulation of coverage and error rates with binomial bounds.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from pydantic import TypeAdapter

from harness.assertions import SUPPORTED_KINDS, stats
from harness.assertions.base import Outcome
from harness.assertions.canary import (
    ERROR_MARGIN_POINTS,
    LATENCY_MARGIN,
    MIN_RANK_SAMPLES,
    canary_signals,
    error_margin,
)
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate, window_name, window_of
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.suite import Expectation
from harness.traffic.load import Record

__all__: list[str] = []

EXPECTATION: TypeAdapter[Any] = TypeAdapter(Expectation)
HIST = "http.inbound.downstream_rq_time"
Bins = list[tuple[float, float, int]]


# ------------------------------------------------------------------------------------------ helpers
def envoy_bin(value: float) -> tuple[float, float]:
    """The (lower bound, width) of Envoy's detailed bin holding ``value``: two significant digits."""
    width = 10.0 ** (math.floor(math.log10(value)) - 1)
    return round(math.floor(value / width) * width, 9), round(width, 9)


def binned(values: list[float]) -> Bins:
    out: dict[tuple[float, float], int] = {}
    for v in values:
        key = envoy_bin(v)
        out[key] = out.get(key, 0) + 1
    return [(lo, w, c) for (lo, w), c in sorted(out.items())]


def latencies(rng: random.Random, n: int, factor: float = 1.0) -> list[float]:
    """n latencies (ms) of a service with median 10 ms × ``factor`` and a lognormal spread of 0.5."""
    return [factor * rng.lognormvariate(math.log(10.0), 0.5) for _ in range(n)]


def instance(rng: random.Random, n: int, error_rate: float = 0.005, factor: float = 1.0,
             ) -> tuple[dict[str, float], Bins]:
    """One sidecar's inbound counters and latency bins for n requests."""
    errors = sum(1 for _ in range(n) if rng.random() < error_rate)
    counters = {"http.inbound.downstream_rq_completed": float(n), "http.inbound.downstream_rq_2xx": float(n - errors),
                "http.inbound.downstream_rq_5xx": float(errors)}
    return counters, binned(latencies(rng, n, factor))


def window(instances: dict[str, tuple[dict[str, float], Bins]], name: str = "fault",
           extra_nodes: tuple[str, ...] = ()) -> WindowEvidence:
    """A window holding the given instances (ids ``reviews-v2-0``...), plus nodes without counters."""
    nodes = {}
    for node in (*instances, *extra_nodes):
        service, version, _ = node.rsplit("-", 2)
        nodes[node] = NodeInfo(node, service, version)
    envoy = {node: counters for node, (counters, _) in instances.items()}
    hist = {node: {HIST: bins} for node, (_, bins) in instances.items()}
    return WindowEvidence(name, 0.0, 10.0, [], Snapshot(10.0, envoy=envoy, hist=hist), nodes)


def versions(rng: random.Random, n_base: int, n_can: int, err_base: float = 0.005, err_can: float = 0.005,
             slower: float = 1.0, name: str = "fault") -> WindowEvidence:
    """Baseline reviews v1 and canary reviews v2, one instance each."""
    return window({"reviews-v1-0": instance(rng, n_base, err_base),
                   "reviews-v2-0": instance(rng, n_can, err_can, slower)}, name)


def canary(**fields: Any) -> Any:
    return EXPECTATION.validate_python({"kind": "canary", "service": "reviews", "baseline": "v1",
                                        "canary": "v2", **fields})


def judge(ev: WindowEvidence, confidence: float = 0.99, **fields: Any) -> Outcome:
    return evaluate(canary(**fields), Evidence({ev.name: ev}, confidence))


# ----------------------------------------------------------------------------------- the statistics
class TestNewcombeInterval:
    @pytest.mark.parametrize(("k2", "n2", "k1", "n1", "low", "high"), [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
    ])
    def test_matches_newcombe_1998_table_ii(self, k2: int, n2: int, k1: int, n1: int, low: float,
                                            high: float) -> None:
        """The 95% hybrid score intervals of Newcombe (1998), Table II, method 10, to four decimals."""
        lo, hi = stats.newcombe_interval(k1, n1, k2, n2, 0.95)
        assert (round(lo, 4), round(hi, 4)) == (low, high)

    def test_coverage_at_mesh_error_rates(self) -> None:
        """At 1% vs 1.5% errors over 400 and 150 requests, the 95% interval covers the true difference in >= 93%."""
        rng = random.Random(11)
        reps, hits = 2000, 0
        for _ in range(reps):
            k1 = sum(1 for _ in range(400) if rng.random() < 0.01)
            k2 = sum(1 for _ in range(150) if rng.random() < 0.015)
            lo, hi = stats.newcombe_interval(k1, 400, k2, 150, 0.95)
            hits += lo <= 0.005 <= hi
        assert hits / reps >= 0.93


def _expand(bins: Bins) -> list[float]:
    return [lo for lo, _, c in bins for _ in range(c)]


class TestMannWhitneyBins:
    @pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
    def test_equals_scipy_on_the_expanded_values(self, alternative: str) -> None:
        """U and the tie-corrected p-value equal scipy's mannwhitneyu on every value of every bin."""
        rng = random.Random(5)
        x, y = binned(latencies(rng, 300, 1.1)), binned(latencies(rng, 200))
        got = stats.mann_whitney_bins(x, y, alternative)  # type: ignore[arg-type]
        ref = stats.mann_whitney_u(_expand(x), _expand(y), alternative)  # type: ignore[arg-type]
        assert got.u == pytest.approx(ref.u, rel=1e-12)
        assert got.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
        assert got.effect == pytest.approx(ref.u / (300 * 200), rel=1e-12)

    def test_delong_se_equals_brute_force(self) -> None:
        """DeLong's standard error from the bins equals the one computed pair by pair from the values."""
        rng = random.Random(6)
        x, y = binned(latencies(rng, 60, 1.2)), binned(latencies(rng, 45))
        xs, ys = _expand(x), _expand(y)

        def psi(a: float, b: float) -> float:
            return 1.0 if a > b else 0.5 if a == b else 0.0

        theta = sum(psi(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
        v10 = [sum(psi(a, b) for b in ys) / len(ys) for a in xs]
        v01 = [sum(psi(a, b) for a in xs) / len(xs) for b in ys]
        s10 = sum((v - theta) ** 2 for v in v10) / (len(xs) - 1)
        s01 = sum((v - theta) ** 2 for v in v01) / (len(ys) - 1)
        got = stats.mann_whitney_bins(x, y)
        assert got.effect == pytest.approx(theta, rel=1e-12)
        assert got.se == pytest.approx(math.sqrt(s10 / len(xs) + s01 / len(ys)), rel=1e-9)

    def test_p_value_is_calibrated_with_coarse_bins(self) -> None:
        """Equal versions, 85% of requests in one bin: p < 0.05 in 8..35 of 400 windows (binomial 0.1% bounds)."""
        # Without the tie correction the null variance would be about twice too large: ~2 of 400 reject.
        rng = random.Random(12)
        wide = [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
        weights = [0.05, 0.85, 0.1]

        def draw(n: int) -> Bins:
            counts = [0] * len(wide)
            for _ in range(n):
                counts[rng.choices(range(len(wide)), weights)[0]] += 1
            return [(lo, w, c) for (lo, w), c in zip(wide, counts, strict=True)]

        rejected = sum(1 for _ in range(400) if stats.mann_whitney_bins(draw(200), draw(80)).pvalue < 0.05)
        assert 8 <= rejected <= 35

    def test_all_tied_gives_no_evidence(self) -> None:
        """Both versions entirely in one bin: nothing to rank, p = 1 and the effect is 1/2."""
        got = stats.mann_whitney_bins([(10.0, 1.0, 50)], [(10.0, 1.0, 70)])
        assert (got.pvalue, got.effect) == (1.0, 0.5)


class TestRankEffectInterval:
    def test_coverage_near_the_margin(self) -> None:
        """A 12% slower canary (A ~ 0.56) over 2000 vs 200 requests: the 95% interval covers A in >= 93%."""
        rng = random.Random(3)
        truth = stats.mann_whitney_bins(binned(latencies(rng, 100_000, 1.12)), binned(latencies(rng, 100_000))).effect
        reps, hits = 600, 0
        for _ in range(reps):
            result = stats.mann_whitney_bins(binned(latencies(rng, 200, 1.12)), binned(latencies(rng, 2000)))
            lo, hi = stats.rank_effect_interval(result, 0.95)
            hits += lo <= truth <= hi
        assert hits / reps >= 0.93

    def test_no_overlap_with_few_values_is_still_uncertain(self) -> None:
        """Three requests each, every canary faster: the interval is wide, not the point 0."""
        result = stats.mann_whitney_bins([(1.0, 0.1, 3)], [(50.0, 1.0, 3)])
        lo, hi = stats.rank_effect_interval(result, 0.99)
        assert result.effect == 0.0
        assert lo == 0.0
        assert hi > 0.5


# --------------------------------------------------------------------------------------- evidence
class TestVersionEvidence:
    def test_counts_sum_over_one_versions_instances_only(self) -> None:
        """version_inbound adds both v2 instances' counters and none of v1's."""
        ev = window({"reviews-v1-0": ({"http.inbound.downstream_rq_completed": 7.0,
                                       "http.inbound.downstream_rq_5xx": 7.0}, []),
                     "reviews-v2-0": ({"http.inbound.downstream_rq_completed": 10.0,
                                       "http.inbound.downstream_rq_5xx": 1.0}, []),
                     "reviews-v2-1": ({"http.inbound.downstream_rq_completed": 5.0,
                                       "http.inbound.downstream_rq_5xx": 2.0}, [])})
        got = ev.version_inbound("reviews", "v2")
        assert (got.total, got.xx5) == (15.0, 3.0)

    def test_bins_merge_bin_by_bin_across_instances(self) -> None:
        """The same bin on two v2 instances is summed; a bin only one has is kept; v1's bins stay out."""
        ev = window({"reviews-v1-0": ({}, [(10.0, 1.0, 99)]),
                     "reviews-v2-0": ({}, [(10.0, 1.0, 4), (11.0, 1.0, 2)]),
                     "reviews-v2-1": ({}, [(10.0, 1.0, 3), (120.0, 10.0, 1)])})
        assert ev.version_inbound_latency("reviews", "v2") == [(10.0, 1.0, 7), (11.0, 1.0, 2), (120.0, 10.0, 1)]


# --------------------------------------------------------------------------------------- verdicts
class TestCanaryVerdicts:
    def test_slower_canary_fails_on_latency(self) -> None:
        """A canary 30% slower than its baseline (2000 requests each) fails, naming latency."""
        out = judge(versions(random.Random(1), 2000, 2000, slower=1.3))
        assert out.verdict == "fail", out.message
        assert out.details is not None
        assert out.details["signals"]["latency"]["verdict"] == "fail"
        assert out.details["signals"]["errors"]["verdict"] == "pass"
        assert "worse than v1 on latency" in out.message
        assert out.interval is not None
        assert out.interval[0] > LATENCY_MARGIN

    def test_canary_that_errs_more_fails_on_errors(self) -> None:
        """3% errors at the canary against 0.5% at the baseline (2000 requests each) fails, naming errors."""
        out = judge(versions(random.Random(2), 2000, 2000, err_base=0.005, err_can=0.03))
        assert out.verdict == "fail", out.message
        assert out.details is not None
        assert out.details["signals"]["errors"]["verdict"] == "fail"
        assert out.details["observed_signal"] == "errors"
        assert out.interval is not None
        assert out.interval[0] > 0

    def test_equal_canary_with_enough_requests_passes(self) -> None:
        """Same latency and 0.5% errors at both versions over 4000 requests each passes both signals."""
        out = judge(versions(random.Random(3), 4000, 4000))
        assert out.verdict == "pass", out.message
        assert out.details is not None
        assert {s["verdict"] for s in out.details["signals"].values()} == {"pass"}

    def test_faster_canary_with_fewer_errors_passes(self) -> None:
        """The tests are one-sided: a canary 30% faster and erring less than the baseline passes."""
        out = judge(versions(random.Random(4), 3000, 3000, err_base=0.02, err_can=0.002, slower=0.7))
        assert out.verdict == "pass", out.message

    @pytest.mark.parametrize(("confidence", "bound"), [(0.99, 11), (0.9, 60)])
    def test_false_fail_rate_of_an_equal_canary(self, confidence: float, bound: int) -> None:
        """400 equal-canary windows fail no more often than a false-fail rate of 1-confidence allows (binomial 0.1%)."""
        rng = random.Random(2024)
        fails = 0
        for _ in range(400):
            n_base, n_can = rng.randint(300, 3000), rng.randint(60, 3000)
            ev = versions(rng, n_base, n_can, err_base=0.02, err_can=0.02)
            fails += judge(ev, confidence).verdict == "fail"
        # With a false-fail rate of 1 - confidence, more than `bound` fails has probability < 0.1%.
        assert fails <= bound

    def test_significant_but_tiny_slowdown_passes(self) -> None:
        """3% slower over 30000 requests each: detectable (p tiny) but A < 0.56, so not a failure."""
        out = judge(versions(random.Random(5), 30000, 30000, slower=1.03), signals=["latency"])
        assert out.details is not None
        latency = out.details["signals"]["latency"]
        assert latency["pvalue"] < 1e-3
        assert out.verdict == "pass", out.message

    def test_more_errors_within_the_margin_still_fail(self) -> None:
        """1.6% vs 1.0% errors over 100000 requests each: shown worse, so fail, though inside the 1-point margin."""
        ev = window({"reviews-v1-0": ({"http.inbound.downstream_rq_completed": 100_000.0,
                                       "http.inbound.downstream_rq_5xx": 1000.0}, [(10.0, 1.0, 100_000)]),
                     "reviews-v2-0": ({"http.inbound.downstream_rq_completed": 100_000.0,
                                       "http.inbound.downstream_rq_5xx": 1600.0}, [(10.0, 1.0, 100_000)])})
        out = judge(ev, signals=["errors"])
        assert out.verdict == "fail", out.message
        assert out.interval is not None
        assert out.interval[1] < ERROR_MARGIN_POINTS

    def test_margin_is_half_a_high_baseline_rate(self) -> None:
        """The errors margin is 1 point, or half the baseline's rate when that is larger."""
        assert error_margin(0.005) == ERROR_MARGIN_POINTS
        assert error_margin(0.10) == pytest.approx(0.05)


class TestInconclusive:
    def test_too_few_requests_say_how_many_more(self) -> None:
        """40 requests per version of an equal canary: inconclusive, with more requests and seconds named."""
        out = judge(versions(random.Random(7), 40, 40))
        assert out.verdict == "inconclusive", out.message
        assert out.details is not None
        assert out.details["more_requests"] > 0
        assert "more requests to v1 and v2" in out.message
        assert out.details["more_seconds"] > 0

    def test_suggested_amount_settles_most_windows(self) -> None:
        """At the suggested total (same shares), an equal canary settles in >= 65% of windows (the aim is 80%)."""
        rng = random.Random(8)
        first = judge(versions(rng, 300, 100))
        assert first.verdict == "inconclusive"
        assert first.details is not None
        total = 400 + first.details["more_requests"]
        settled = sum(judge(versions(rng, total * 3 // 4, total // 4)).verdict != "inconclusive" for _ in range(60))
        assert settled >= 39

    def test_fewer_than_the_minimum_is_inconclusive_even_when_separated(self) -> None:
        """Below MIN_RANK_SAMPLES a canary far slower is not yet judged on latency."""
        n = MIN_RANK_SAMPLES - 1
        out = judge(versions(random.Random(9), n, n, slower=5.0), signals=["latency"])
        assert out.verdict == "inconclusive", out.message
        assert out.details is not None
        assert out.details["more_requests"] >= 2

    def test_a_version_without_traffic_is_named(self) -> None:
        """The canary's sidecar answered nothing: inconclusive, naming canary v2 and its share of the split."""
        ev = window({"reviews-v1-0": instance(random.Random(10), 500),
                     "reviews-v2-0": ({}, [])})
        out = judge(ev)
        assert out.verdict == "inconclusive"
        assert "canary v2 of reviews received no requests" in out.message
        assert out.details is not None
        assert out.details["more_requests"] is None

    def test_a_version_without_instances_is_named(self) -> None:
        """A baseline version with no instance in the evidence is named, with the versions that exist."""
        ev = window({"reviews-v2-0": instance(random.Random(10), 500)}, extra_nodes=("reviews-v3-0",))
        out = judge(ev)
        assert out.verdict == "inconclusive"
        assert "no instance of reviews v1" in out.message
        assert "v2, v3" in out.message


class TestSignalsAndBudget:
    def test_error_signal_names_are_one_signal(self) -> None:
        """errors, error_rate and success_rate are one comparison, counted once in the error budget."""
        exp = canary(signals=["latency", "error_rate", "success_rate", "errors"])
        assert canary_signals(exp) == ["latency", "errors"]
        out = judge(versions(random.Random(11), 1000, 1000), signals=["error_rate", "success_rate"])
        assert out.details is not None
        assert out.details["confidence_per_signal"] == pytest.approx(0.99)
        assert list(out.details["signals"]) == ["errors"]

    def test_budget_is_split_across_signals(self) -> None:
        """Two signals at 99% confidence: each is judged at 99.5%."""
        out = judge(versions(random.Random(12), 1000, 1000))
        assert out.details is not None
        assert out.details["confidence_per_signal"] == pytest.approx(0.995)
        assert out.details["signals"]["latency"]["alpha"] == pytest.approx(0.005)

    def test_only_the_chosen_signals_are_judged(self) -> None:
        """signals: [latency] passes a canary that errs more but is no slower."""
        out = judge(versions(random.Random(13), 3000, 3000, err_can=0.05), signals=["latency"])
        assert out.verdict == "pass", out.message

    def test_details_are_json(self) -> None:
        """The outcome, details included, serialises to JSON with p-values, effects and samples per version."""
        out = judge(versions(random.Random(14), 800, 800))
        data = json.loads(json.dumps(out.to_json()))
        latency = data["details"]["signals"]["latency"]
        assert {"pvalue", "effect", "interval", "median_difference_ms"} <= set(latency)
        assert latency["canary"]["requests"] == 800


# ---------------------------------------------------------------------------------- windows, steps
def _split_records(counts: dict[str, int]) -> list[Record]:
    return [Record(1.0, 5.0, 200, "productpage-v1", f"productpage-v1,reviews-{v}")
            for v, n in counts.items() for _ in range(n)]


class TestWindowName:
    def test_names(self) -> None:
        """step: N reads 'step N'; window: reads itself; neither reads 'fault'; window_of is the same function."""
        assert window_name(canary(step=2)) == "step 2"
        assert window_name(canary(window="recovery")) == "recovery"
        assert window_name(canary()) == "fault"
        split = {"kind": "traffic-split", "service": "reviews", "split": {"v1": 90, "v2": 10}}
        assert window_name(EXPECTATION.validate_python({**split, "step": 1})) == "step 1"
        assert window_name(EXPECTATION.validate_python(split)) == "fault"
        assert window_of is window_name

    def test_canary_reads_its_step(self) -> None:
        """A canary at step 2 is judged on the 'step 2' window (slower there), not on 'fault' (equal)."""
        rng = random.Random(15)
        evidence = Evidence({"fault": versions(rng, 2000, 2000), "step 2": versions(rng, 2000, 2000, slower=1.3,
                                                                                    name="step 2")}, 0.99)
        assert evaluate(canary(step=2), evidence).verdict == "fail"
        assert evaluate(canary(), evidence).verdict == "pass"

    def test_traffic_split_reads_its_step(self) -> None:
        """traffic-split with step: 1 judges the 'step 1' window (90/10 there) and window: fault its own (50/50)."""
        nodes = {n: NodeInfo(n, "reviews", n.split("-")[1]) for n in ("reviews-v1-0", "reviews-v2-0")}

        def w(name: str, counts: dict[str, int]) -> WindowEvidence:
            return WindowEvidence(name, 0.0, 10.0, _split_records(counts), Snapshot(10.0), nodes)

        evidence = Evidence({"fault": w("fault", {"v1": 1000, "v2": 1000}),
                             "step 1": w("step 1", {"v1": 1800, "v2": 200})}, 0.99)
        exp = {"kind": "traffic-split", "service": "reviews", "split": {"v1": 90, "v2": 10}}
        assert evaluate(EXPECTATION.validate_python({**exp, "step": 1}), evidence).verdict == "pass"
        assert evaluate(EXPECTATION.validate_python({**exp, "window": "fault"}), evidence).verdict == "fail"

    def test_a_step_that_never_ran_is_inconclusive(self) -> None:
        """Step 3 of a shift halted after step 1: inconclusive, naming the step, not an error."""
        evidence = Evidence({"fault": versions(random.Random(16), 100, 100),
                             "step 1": versions(random.Random(16), 100, 100, name="step 1")}, 0.99)
        out = evaluate(canary(step=3, id="gate"), evidence)
        assert out.verdict == "inconclusive"
        assert "step 3" in out.message
        assert "step 1" in out.message
        assert out.id == "gate"

    def test_canary_is_a_supported_kind(self) -> None:
        """plan and run accept canary expectations."""
        assert "canary" in SUPPORTED_KINDS
