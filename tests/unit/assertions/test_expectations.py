"""Verdict logic of every supported expectation kind, on synthetic evidence (no mesh).

Evidence is built the way the runner builds it: client ``Record``s, Envoy counter deltas keyed by the
stat names the expectations read, the demo apps' attempt histograms, the nodes, and the policy in force
on each edge. Counters and records are simulated from the true model with a seeded ``random.Random``,
so the pass cases look like what a healthy mesh produces and the fail cases like what a broken one does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any, ClassVar

import pytest
from pydantic import TypeAdapter, ValidationError

from harness.assertions.base import Outcome, bound_verdict
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.registry import evaluate, window_of
from harness.mesh.policy import resolve
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.model.environment import EdgePolicy
from harness.model.suite import Expectation
from harness.traffic.load import Record

__all__: list[str] = []

CONFIDENCE = 0.99
SEEDS = range(20)
EXPECTATION = TypeAdapter(Expectation)

# The bundled demo's instances, one replica each, plus the gateway Envoy.
NODES: dict[str, NodeInfo] = {
    n.id: n
    for n in (
        NodeInfo("gateway", "gateway", ""),
        NodeInfo("productpage-v1-0", "productpage", "v1"),
        NodeInfo("details-v1-0", "details", "v1"),
        NodeInfo("reviews-v1-0", "reviews", "v1"),
        NodeInfo("reviews-v2-0", "reviews", "v2"),
        NodeInfo("reviews-v3-0", "reviews", "v3"),
        NodeInfo("ratings-v1-0", "ratings", "v1"),
    )
}
SPLIT = {"v1": 34.0, "v2": 33.0, "v3": 33.0}


# ------------------------------------------------------------------------------------------ helpers
def expectation(**fields: Any) -> Any:
    """An expectation model exactly as a suite document would produce it."""
    return EXPECTATION.validate_python(fields)


def policies(**retries_by_edge: int) -> dict[str, Any]:
    """Resolved policies for the demo's edges; keyword ``a__b=n`` gives edge a->b n retries."""
    out = {e: resolve(None) for e in ("gateway->productpage", "productpage->details",
                                      "productpage->reviews", "reviews->ratings")}
    for key, n in retries_by_edge.items():
        caller, callee = key.split("__")
        out[f"{caller}->{callee}"] = resolve(EdgePolicy.model_validate({"retries": {"attempts": n}}))
    return out


def window(records: Iterable[Record] = (), envoy: dict[str, dict[str, float]] | None = None,
           apps: dict[str, dict[str, Any]] | None = None, pol: dict[str, Any] | None = None,
           name: str = "fault", start: float = 100.0, end: float = 110.0,
           nodes: dict[str, NodeInfo] | None = None) -> WindowEvidence:
    return WindowEvidence(name, start, end, list(records), Snapshot(end, envoy=envoy or {}, apps=apps or {}),
                          dict(nodes or NODES), pol if pol is not None else policies(productpage__reviews=2))


def judge(exp_fields: dict[str, Any], *windows: WindowEvidence, confidence: float = CONFIDENCE) -> Outcome:
    exp = expectation(**exp_fields)
    return evaluate(exp, Evidence({w.name: w for w in windows}, confidence))


def pick(rng: random.Random, split: dict[str, float]) -> str:
    versions = list(split)
    return rng.choices(versions, weights=[split[v] for v in versions])[0]


def client_records(rng: random.Random, n: int, success: float = 1.0, mean_latency_ms: float = 10.0,
                   split: dict[str, float] | None = None, start: float = 100.0, end: float = 110.0) -> list[Record]:
    """Client records: status 200 with probability ``success``, exponential latency, demo traces."""
    out = []
    for i in range(n):
        version = pick(rng, split or SPLIT)
        ok = rng.random() < success
        trace = f"productpage-v1,details-v1,reviews-{version},ratings-v1"
        out.append(Record(start + (end - start) * i / max(n, 1), rng.expovariate(1 / mean_latency_ms),
                          200 if ok else 503, "productpage-v1", trace))
    return out


def simulate_retries(rng: random.Random, requests: int, p: float, retries: int,
                     callers: tuple[str, ...] = ("productpage-v1-0",), callee: str = "reviews",
                     versions: tuple[str, ...] = ("v1", "v2", "v3"),
                     p_by_version: dict[str, float] | None = None, weights: dict[str, float] | None = None,
                     ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """Envoy and app counters for ``requests`` requests whose attempts each fail with probability ``p``
    (or ``p_by_version[v]`` on version v).

    Each request is routed to one callee version (by ``weights``, else evenly) and tried there until it
    succeeds or ``1 + retries`` attempts were made: what Envoy does, since weighted_clusters picks the
    cluster once per request and retries stay in it. Aborted attempts (the fault sits on the callee's
    inbound side) never reach the app, so the app's histograms (all callers, and per calling service
    from the x-harness-caller header) count the attempts that got through.
    """
    envoy: dict[str, dict[str, float]] = {c: {} for c in callers}
    apps: dict[str, dict[str, Any]] = {f"{callee}-{v}-0": {"attempts": {}, "attempts_by_caller": {}}
                                       for v in versions}

    def bump(node: str, stat: str) -> None:
        envoy[node][stat] = envoy[node].get(stat, 0.0) + 1

    for i in range(requests):
        caller = callers[i % len(callers)]
        version = rng.choices(versions, weights=[(weights or {}).get(v, 1.0) for v in versions])[0]
        p_here = (p_by_version or {}).get(version, p)
        for attempt in range(1, retries + 2):
            cluster = f"cluster.out_{callee}_{version}"
            bump(caller, f"{cluster}.upstream_rq_total")
            if attempt > 1:
                bump(caller, f"{cluster}.upstream_rq_retry")
            if rng.random() >= p_here:
                bump(caller, f"{cluster}.upstream_rq_2xx")
                seen_at(apps[f"{callee}-{version}-0"], caller.rsplit("-", 2)[0], attempt)
                break
            bump(caller, f"{cluster}.upstream_rq_5xx")
            if attempt == retries + 1 and retries > 0:
                bump(caller, f"{cluster}.upstream_rq_retry_limit_exceeded")
    return envoy, apps


def seen_at(app: dict[str, Any], caller_service: str, attempt: int, count: int = 1) -> None:
    """Count ``count`` requests the app saw at ``attempt`` from ``caller_service``'s sidecars."""
    key = str(attempt)
    app.setdefault("attempts", {})[key] = app.get("attempts", {}).get(key, 0) + count
    by = app.setdefault("attempts_by_caller", {}).setdefault(caller_service, {})
    by[key] = by.get(key, 0) + count


def hcm_counters(prefix: str, completed: int, xx5: int, xx4: int = 0) -> dict[str, float]:
    return {
        f"http.{prefix}.downstream_rq_completed": float(completed),
        f"http.{prefix}.downstream_rq_2xx": float(completed - xx5 - xx4),
        f"http.{prefix}.downstream_rq_4xx": float(xx4),
        f"http.{prefix}.downstream_rq_5xx": float(xx5),
    }


def split_records(counts: dict[str, int]) -> list[Record]:
    """Records whose traces show exactly ``counts`` answers from each reviews version, interleaved."""
    order = [v for v, c in counts.items() for _ in range(c)]
    random.Random(7).shuffle(order)
    return [Record(100.0 + i * 1e-3, 5.0, 200, "productpage-v1",
                   f"productpage-v1,details-v1,reviews-{v},ratings-v1") for i, v in enumerate(order)]


def verdicts(outcomes: Iterable[Outcome]) -> list[str]:
    return [o.verdict for o in outcomes]


# ------------------------------------------------------------------------------------- bound rule
class TestBoundVerdict:
    def test_interval_inside_bounds_passes(self) -> None:
        """An interval entirely within [min, max] passes."""
        assert bound_verdict((0.96, 0.98), 0.95, 0.99) == "pass"

    def test_interval_outside_a_bound_fails(self) -> None:
        """An interval entirely below min, or entirely above max, fails."""
        assert bound_verdict((0.90, 0.94), 0.95, None) == "fail"
        assert bound_verdict((0.20, 0.30), None, 0.10) == "fail"

    def test_straddling_interval_is_inconclusive(self) -> None:
        """An interval that contains the bound cannot tell."""
        assert bound_verdict((0.94, 0.96), 0.95, None) == "inconclusive"
        assert bound_verdict((0.94, 0.96), None, 0.95) == "inconclusive"

    def test_fail_on_one_bound_beats_inconclusive_on_the_other(self) -> None:
        """A definite miss of one bound is a fail even if the other bound is undecided."""
        assert bound_verdict((0.5, 0.9), 0.95, 0.7) == "fail"


# ------------------------------------------------------------------------------------------- slo
class TestSloSuccessRateClient:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "slo", "signal": "success_rate", "scope": "client", "window": "fault", "min": 0.95,
    }

    def test_healthy_client_passes(self) -> None:
        """99% successes over 2000 requests meet min 0.95, with the observed rate and CI reported."""
        out = judge(self.EXP, window(client_records(random.Random(1), 2000, success=0.99)))
        assert out.verdict == "pass", out.message
        assert out.samples == 2000
        assert out.observed == pytest.approx(0.99, abs=0.01)
        assert out.interval is not None
        assert out.interval[0] >= 0.95
        assert out.interval[0] <= out.observed

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds at 97% true success vs min 0.95: at most 1 fails (a false fail is <=0.5%/seed, one CI tail)."""
        results = [judge(self.EXP, window(client_records(random.Random(s), 2000, success=0.97))).verdict
                   for s in SEEDS]
        assert results.count("fail") <= 1, results
        assert results.count("pass") >= 18, results

    def test_broken_client_fails(self) -> None:
        """90% successes over 2000 requests miss min 0.95."""
        out = judge(self.EXP, window(client_records(random.Random(2), 2000, success=0.90)))
        assert out.verdict == "fail", out.message
        assert out.interval is not None
        assert out.interval[1] < 0.95

    def test_no_samples_is_inconclusive(self) -> None:
        """An empty window gives inconclusive with 0 samples, never pass."""
        out = judge(self.EXP, window([]))
        assert (out.verdict, out.samples, out.observed) == ("inconclusive", 0, None)

    def test_few_samples_near_the_bound_is_inconclusive(self) -> None:
        """96 successes out of 100 cannot tell 'above 0.95' at 99% confidence."""
        recs = [Record(100.0 + i / 10, 5.0, 200 if i >= 4 else 503, "productpage-v1", "") for i in range(100)]
        out = judge(self.EXP, window(recs))
        assert out.verdict == "inconclusive", out.message
        assert out.interval is not None
        assert out.interval[0] < 0.95 < out.interval[1]

    def test_success_means_a_response_that_is_not_5xx(self) -> None:
        """As at the sidecars (Istio's convention): 2xx/3xx/4xx succeed; 5xx and 0 (no response) fail."""
        statuses = [200, 204, 301, 404, 500, 503, 0]
        recs = [Record(100.0 + i, 1.0, s, "", "") for i, s in enumerate(statuses * 100)]
        out = judge({**self.EXP, "min": 0.1}, window(recs))
        assert out.observed == pytest.approx(4 / 7)

    def test_reads_only_its_own_window(self) -> None:
        """A failing baseline does not affect the verdict on a healthy fault window."""
        base = window(client_records(random.Random(3), 1000, success=0.1), name="baseline")
        fault = window(client_records(random.Random(3), 1000, success=1.0), name="fault")
        assert judge(self.EXP, base, fault).verdict == "pass"
        assert judge({**self.EXP, "window": "baseline"}, base, fault).verdict == "fail"

    def test_expectation_id_is_carried_to_the_outcome(self) -> None:
        """An expectation's id appears on its outcome (and in its JSON)."""
        out = judge({**self.EXP, "id": "client-ok"}, window(client_records(random.Random(1), 500)))
        assert out.id == "client-ok"
        assert out.to_json()["id"] == "client-ok"


class TestSloErrorRateClient:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "slo", "signal": "error_rate", "scope": "client", "window": "fault", "max": 0.05,
    }

    def test_low_error_rate_passes(self) -> None:
        """1% errors over 2000 requests meet max 0.05, and the observed value is the ERROR rate."""
        out = judge(self.EXP, window(client_records(random.Random(4), 2000, success=0.99)))
        assert out.verdict == "pass", out.message
        assert out.observed == pytest.approx(0.01, abs=0.01)

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds at 3% true errors vs max 0.05: at most 1 fails (a false fail is <=0.5%/seed)."""
        results = [judge(self.EXP, window(client_records(random.Random(s), 2000, success=0.97))).verdict
                   for s in SEEDS]
        assert results.count("fail") <= 1, results

    def test_high_error_rate_fails(self) -> None:
        """20% errors miss max 0.05."""
        out = judge(self.EXP, window(client_records(random.Random(5), 1000, success=0.80)))
        assert out.verdict == "fail", out.message
        assert out.observed == pytest.approx(0.2, abs=0.04)

    def test_min_error_rate_checks_that_a_fault_shows(self) -> None:
        """min: on an error rate passes when the injected errors are visible, fails when they are not."""
        exp = {**self.EXP, "max": None, "min": 0.2}
        assert judge(exp, window(client_records(random.Random(6), 2000, success=0.7))).verdict == "pass"
        assert judge(exp, window(client_records(random.Random(6), 2000, success=1.0))).verdict == "fail"

    def test_no_samples_is_inconclusive(self) -> None:
        """An empty window gives inconclusive."""
        assert judge(self.EXP, window([])).verdict == "inconclusive"


class TestSloLatencyClient:
    # Exponential latency with mean 10ms: the true p90 is 10*ln(10) = 23.03ms.
    P90 = 10 * math.log(10)

    def exp(self, **bounds: str) -> dict[str, Any]:
        return {"kind": "slo", "signal": "latency", "quantile": 0.9, "scope": "client", "window": "fault", **bounds}

    def test_fast_service_passes_max(self) -> None:
        """A true p90 of 23ms meets max 40ms with 2000 samples; observed is the point estimate in ms."""
        out = judge(self.exp(max="40ms"), window(client_records(random.Random(8), 2000)))
        assert out.verdict == "pass", out.message
        assert out.observed == pytest.approx(self.P90, rel=0.15)
        assert out.interval is not None
        assert out.interval[0] <= out.observed <= out.interval[1] <= 40

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds, true p90 23ms vs max 30ms: at most 1 fails (order-statistic CI, <=0.5% per tail)."""
        results = [judge(self.exp(max="30ms"), window(client_records(random.Random(s), 2000))).verdict
                   for s in SEEDS]
        assert results.count("fail") <= 1, results

    def test_slow_service_fails_max(self) -> None:
        """A true p90 of 23ms misses max 15ms."""
        out = judge(self.exp(max="15ms"), window(client_records(random.Random(9), 2000)))
        assert out.verdict == "fail", out.message

    def test_min_bound_shows_an_injected_delay(self) -> None:
        """min: 100ms passes when the p90 is ~230ms and fails when it is ~23ms; units convert (0.1s == 100ms)."""
        slow = window(client_records(random.Random(10), 2000, mean_latency_ms=100.0))
        fast = window(client_records(random.Random(10), 2000, mean_latency_ms=10.0))
        assert judge(self.exp(min="100ms"), slow).verdict == "pass"
        assert judge(self.exp(min="0.1s"), slow).verdict == "pass"
        assert judge(self.exp(min="100ms"), fast).verdict == "fail"

    def test_too_few_samples_for_the_quantile_is_inconclusive(self) -> None:
        """A p99 from 50 samples cannot be bounded at 99% confidence: inconclusive, interval None."""
        exp = {**self.exp(max="1s"), "quantile": 0.99}
        out = judge(exp, window(client_records(random.Random(11), 50)))
        assert out.verdict == "inconclusive", out.message
        assert out.interval is None
        assert out.samples == 50

    def test_bound_at_the_true_quantile_is_inconclusive(self) -> None:
        """300 samples with the bound at the true p90 straddle it: inconclusive."""
        out = judge(self.exp(max=f"{self.P90:.2f}ms"), window(client_records(random.Random(12), 300)))
        assert out.verdict == "inconclusive", out.message

    def test_no_samples_is_inconclusive(self) -> None:
        """An empty window gives inconclusive."""
        assert judge(self.exp(max="1s"), window([])).verdict == "inconclusive"

    def test_bare_number_bound_is_refused_by_the_model(self) -> None:
        """A latency bound without a unit is a validation error, not a guess."""
        with pytest.raises(ValidationError, match="unit"):
            expectation(**self.exp(), max=100)


class TestSloThroughputClient:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "slo", "signal": "throughput", "scope": "client", "window": "fault",
    }

    def test_rate_above_min_passes(self) -> None:
        """1000 requests in 10s (100 req/s) meet min 80 req/s."""
        out = judge({**self.EXP, "min": 80}, window(client_records(random.Random(13), 1000), start=0, end=10))
        assert out.verdict == "pass", out.message
        assert out.observed == pytest.approx(100.0)

    def test_rate_below_min_fails(self) -> None:
        """1000 requests in 10s miss min 150 req/s; the window's own duration is the denominator."""
        out = judge({**self.EXP, "min": 150}, window(client_records(random.Random(13), 1000), start=0, end=10))
        assert out.verdict == "fail", out.message
        out = judge({**self.EXP, "min": 150}, window(client_records(random.Random(13), 1000), start=0, end=5))
        assert out.verdict == "pass", out.message

    def test_rate_near_the_bound_is_inconclusive(self) -> None:
        """100 requests in 10s cannot tell whether the rate is above 10 req/s."""
        out = judge({**self.EXP, "min": 10}, window(client_records(random.Random(13), 100), start=0, end=10))
        assert out.verdict == "inconclusive", out.message

    def test_max_rate(self) -> None:
        """max: passes well below the cap and fails well above it."""
        w = window(client_records(random.Random(13), 1000), start=0, end=10)
        assert judge({**self.EXP, "max": 200}, w).verdict == "pass"
        assert judge({**self.EXP, "max": 50}, w).verdict == "fail"

    def test_sidecar_throughput_is_over_the_span_between_its_scrapes(self) -> None:
        """A window judged at a look ends 0.5 s before its scrape: 1000 requests counted by reviews' sidecars
        between scrapes 2.5 s apart are 400 req/s, not 500 over the 2 s of client records."""
        envoy = {"reviews-v1-0": hcm_counters("inbound", 1000, 0)}
        w = window(envoy=envoy, start=0, end=2.0)
        w.counter_span = 2.5
        out = judge({**self.EXP, "scope": "service:reviews", "min": 1}, w)
        assert out.observed == pytest.approx(400.0)

    def test_no_requests_fails_a_min(self) -> None:
        """Zero requests in 10s is conclusive evidence against min 100 req/s."""
        assert judge({**self.EXP, "min": 100}, window([], start=0, end=10)).verdict == "fail"


class TestSloServiceScope:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "slo", "signal": "success_rate", "scope": "service:reviews", "window": "fault", "min": 0.95,
    }

    def envoy(self, per_version_5xx: int, noise: bool = True) -> dict[str, dict[str, float]]:
        out = {f"reviews-{v}-0": hcm_counters("inbound", 1000, per_version_5xx) for v in ("v1", "v2", "v3")}
        if noise:  # other services' sidecars and the callers' outbound listeners must not be counted
            out["ratings-v1-0"] = hcm_counters("inbound", 1000, 1000)
            out["productpage-v1-0"] = hcm_counters("outbound_reviews", 1000, 1000)
        return out

    def test_healthy_service_passes_summed_over_its_versions(self) -> None:
        """3x1000 requests received by reviews with 1% 5xx pass; ratings' failures are not counted."""
        out = judge(self.EXP, window(envoy=self.envoy(10)))
        assert out.verdict == "pass", out.message
        assert out.samples == 3000
        assert out.observed == pytest.approx(0.99)

    def test_failing_service_fails(self) -> None:
        """20% 5xx at reviews' inbound miss min 0.95."""
        out = judge(self.EXP, window(envoy=self.envoy(200)))
        assert out.verdict == "fail", out.message

    def test_no_traffic_is_inconclusive(self) -> None:
        """No counters for the service give inconclusive."""
        assert judge(self.EXP, window(envoy={})).verdict == "inconclusive"

    def test_more_5xx_than_completed_is_every_request_failed(self) -> None:
        """Envoy reads a listener's counters one after the other: a request ending between the reads of
        ``completed`` and ``5xx`` is in one only, so a window of nothing but 5xx can read 201 of 200 (seen through
        Prometheus on Consul). That is 0 successes, a verdict, not a crash."""
        env = {"reviews-v1-0": hcm_counters("inbound", 200, 200) | {"http.inbound.downstream_rq_5xx": 201.0}}
        out = judge({**self.EXP, "min": 0.9}, window(envoy=env))
        assert (out.verdict, out.observed, out.samples) == ("fail", 0.0, 200)

    def test_near_the_bound_is_inconclusive(self) -> None:
        """96/100 at the service cannot tell 'above 0.95'."""
        env = {"reviews-v1-0": hcm_counters("inbound", 100, 4)}
        assert judge(self.EXP, window(envoy=env)).verdict == "inconclusive"

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds of binomial 5xx counts at a true 3% vs min 0.95: at most 1 fails."""
        results = []
        for s in SEEDS:
            rng = random.Random(s)
            env = {f"reviews-{v}-0": hcm_counters("inbound", 700, sum(rng.random() < 0.03 for _ in range(700)))
                   for v in ("v1", "v2", "v3")}
            results.append(judge(self.EXP, window(envoy=env)).verdict)
        assert results.count("fail") <= 1, results


class TestSloEdgeScope:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "slo", "signal": "success_rate", "scope": "edge:productpage->reviews", "window": "fault",
        "min": 0.95,
    }

    def test_edge_reads_the_callers_outbound_listener(self) -> None:
        """The edge's rate is what productpage's outbound_reviews listener answered; other listeners ignored."""
        env = {"productpage-v1-0": {**hcm_counters("outbound_reviews", 2000, 10),
                                    **hcm_counters("outbound_details", 2000, 2000),
                                    **hcm_counters("inbound", 2000, 2000)},
               "reviews-v1-0": hcm_counters("outbound_ratings", 2000, 2000)}
        out = judge(self.EXP, window(envoy=env))
        assert out.verdict == "pass", out.message
        assert out.samples == 2000

    def test_edge_sums_every_calling_replica(self) -> None:
        """Two productpage replicas are summed: 1000 ok + 1000 with 30% 5xx is 85%, below 0.95."""
        nodes = {**NODES, "productpage-v1-1": NodeInfo("productpage-v1-1", "productpage", "v1")}
        env = {"productpage-v1-0": hcm_counters("outbound_reviews", 1000, 0),
               "productpage-v1-1": hcm_counters("outbound_reviews", 1000, 300)}
        out = judge(self.EXP, window(envoy=env, nodes=nodes))
        assert out.verdict == "fail", out.message
        assert out.samples == 2000
        assert out.observed == pytest.approx(0.85)

    def test_failing_edge_fails(self) -> None:
        """30% 5xx on the edge miss min 0.95."""
        env = {"productpage-v1-0": hcm_counters("outbound_reviews", 2000, 600)}
        assert judge(self.EXP, window(envoy=env)).verdict == "fail"

    def test_no_traffic_is_inconclusive(self) -> None:
        """An edge with no completed requests is inconclusive."""
        env = {"productpage-v1-0": hcm_counters("outbound_details", 2000, 0)}
        assert judge(self.EXP, window(envoy=env)).verdict == "inconclusive"

    def test_four_xx_is_not_a_failure_at_a_sidecar(self) -> None:
        """At a sidecar only 5xx count as failures (Istio's convention): 10% 404s still pass min 0.95."""
        env = {"productpage-v1-0": hcm_counters("outbound_reviews", 2000, 0, xx4=200)}
        assert judge(self.EXP, window(envoy=env)).verdict == "pass"


# --------------------------------------------------------------------------------------- retries
class TestRetriesOracle:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "retries", "route": {"from": "productpage", "to": "reviews"}, "window": "fault",
        "model": "oracle",
    }

    def evidence(self, seed: int, p: float, actual_retries: int, declared: int, requests: int = 2000,
                 callers: tuple[str, ...] = ("productpage-v1-0",)) -> WindowEvidence:
        envoy, apps = simulate_retries(random.Random(seed), requests, p, actual_retries, callers=callers)
        return window(envoy=envoy, apps=apps, pol=policies(productpage__reviews=declared))

    def test_policy_that_holds_passes(self) -> None:
        """p=0.3 with the 2 declared retries in force: success ~1-0.3^3, amplification ~1.39, pass."""
        out = judge(self.EXP, self.evidence(1, 0.3, 2, 2))
        assert out.verdict == "pass", out.message
        assert out.samples == 2000
        assert out.observed == pytest.approx(1 - 0.3 ** 3, abs=0.015)
        assert out.details is not None
        assert out.details["p"] == pytest.approx(0.3, abs=0.03)
        assert out.details["amplification"] == pytest.approx(1 + 0.3 + 0.09, abs=0.05)
        assert out.details["retries_in_force"] == 2

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds: at most 1 fails; a false fail needs two disjoint 99% intervals, so it is rarer than 2%/seed."""
        results = [judge(self.EXP, self.evidence(s, 0.3, 2, 2)).verdict for s in SEEDS]
        assert results.count("fail") <= 1, results
        assert results.count("pass") >= 19, results

    def test_zero_retries_policy_that_holds_passes(self) -> None:
        """With retries switched off (attempts: 0) 30% aborts give success ~0.7 and that passes."""
        out = judge(self.EXP, self.evidence(2, 0.3, 0, 0))
        assert out.verdict == "pass", out.message
        assert out.observed == pytest.approx(0.7, abs=0.04)

    def test_summed_over_calling_replicas(self) -> None:
        """Counters of two calling sidecars are summed into one edge."""
        nodes_ok = dict(NODES, **{"productpage-v1-1": NodeInfo("productpage-v1-1", "productpage", "v1")})
        envoy, apps = simulate_retries(random.Random(3), 2000, 0.3, 2,
                                       callers=("productpage-v1-0", "productpage-v1-1"))
        out = judge(self.EXP, window(envoy=envoy, apps=apps, nodes=nodes_ok))
        assert out.verdict == "pass", out.message
        assert out.samples == 2000

    def test_a_fault_on_one_version_is_predicted_per_version(self) -> None:
        """40% aborts on v3 only (a third of the requests) behind 2 retries: Envoy keeps a request's
        retries in the version it was routed to, so success is the mixture 1/3 (1-0.4^3) + 2/3, not
        1-p̄^3 at the pooled p. The oracle passes, and its prediction is the mixture."""
        envoy, apps = simulate_retries(random.Random(11), 6000, 0.0, 2, p_by_version={"v3": 0.4})
        out = judge(self.EXP, window(envoy=envoy, apps=apps))
        truth = (2 + (1 - 0.4 ** 3)) / 3
        pooled_p = out.details["p"] if out.details else 0.0
        assert out.verdict == "pass", out.message
        assert out.details is not None
        lo, hi = out.details["predicted_success"]
        assert lo <= truth <= hi
        assert not lo <= 1 - pooled_p ** 3 <= hi, "the pooled prediction would have been accepted"
        assert out.details["versions"]["v3"]["p"] == pytest.approx(0.4, abs=0.03)
        assert out.details["versions"]["v1"]["p"] == 0.0
        assert "v3 0.4" in out.message

    def test_one_version_not_retrying_fails(self) -> None:
        """Retries happen on v1 and v2 but not on v3 (its 30% aborts are final): fail."""
        good, apps = simulate_retries(random.Random(12), 4000, 0.3, 2, versions=("v1", "v2"))
        bad, _ = simulate_retries(random.Random(13), 2000, 0.3, 0, versions=("v3",))
        envoy = {node: {**good.get(node, {}), **bad.get(node, {})} for node in set(good) | set(bad)}
        out = judge(self.EXP, window(envoy=envoy, apps=apps))
        assert out.verdict == "fail", out.message

    def test_retries_not_happening_fails(self) -> None:
        """2 retries declared, but final failures are as if there were none (p=0.3): fail."""
        out = judge(self.EXP, self.evidence(4, 0.3, 0, 2))
        assert out.verdict == "fail", out.message
        assert "2 retries" in out.message
        assert out.observed == pytest.approx(0.7, abs=0.04)

    def test_more_retries_than_declared_fails(self) -> None:
        """4 retries happening where 2 are declared make success too HIGH for the oracle: fail."""
        envoy, _ = simulate_retries(random.Random(5), 3000, 0.3, 4)
        out = judge(self.EXP, window(envoy=envoy, apps={}))  # no app histogram: the counters alone show it
        assert out.verdict == "fail", out.message

    def test_request_beyond_the_attempt_limit_fails(self) -> None:
        """One request seen by reviews at attempt 4 with 2 retries in force fails, naming the attempt."""
        ev = self.evidence(6, 0.3, 2, 2)
        seen_at(ev.counters.apps["reviews-v2-0"], "productpage", 4)
        out = judge(self.EXP, ev)
        assert out.verdict == "fail", out.message
        assert "attempt 4 > 1+2" in out.message

    def test_attempt_at_the_limit_is_fine(self) -> None:
        """Attempt 3 with 2 retries is within 1+2 and does not fail by itself."""
        ev = self.evidence(6, 0.3, 2, 2)
        assert ev.attempt_histogram("reviews").get(3, 0) > 0
        assert judge(self.EXP, ev).verdict == "pass"

    def test_other_services_histograms_are_ignored(self) -> None:
        """Attempt counts seen by another service (ratings) are not charged to the reviews route."""
        ev = self.evidence(6, 0.3, 2, 2)
        ev.counters.apps["ratings-v1-0"] = {}
        seen_at(ev.counters.apps["ratings-v1-0"], "productpage", 9, 5)
        assert judge(self.EXP, ev).verdict == "pass"

    def test_max_amplification_exceeded_fails(self) -> None:
        """~1.39 attempts per request exceed max_amplification 1.2 even though the oracle holds."""
        out = judge({**self.EXP, "max_amplification": 1.2}, self.evidence(7, 0.3, 2, 2))
        assert out.verdict == "fail", out.message
        assert "max_amplification" in out.message

    def test_max_amplification_respected_passes(self) -> None:
        """~1.39 attempts per request are within max_amplification 1.5."""
        assert judge({**self.EXP, "max_amplification": 1.5}, self.evidence(7, 0.3, 2, 2)).verdict == "pass"

    def test_retry_breaker_overflow_is_named_in_a_fail(self) -> None:
        """When retries were refused by the retry breaker, the failure message says so."""
        ev = self.evidence(8, 0.3, 0, 2)
        ev.counters.envoy["productpage-v1-0"]["cluster.out_reviews_v1.upstream_rq_retry_overflow"] = 500.0
        out = judge(self.EXP, ev)
        assert out.verdict == "fail"
        assert "retry circuit breaker" in out.message

    def test_in_flight_requests_at_the_window_edge_do_not_break_a_version(self) -> None:
        """A request in flight when the window opened counts as an attempt before it and as a success in it,
        so an unfaulted version can read 2 more successes than attempts: judged, not a crash."""
        envoy, apps = simulate_retries(random.Random(14), 3000, 0.0, 2, p_by_version={"v3": 0.4})
        envoy["productpage-v1-0"]["cluster.out_reviews_v1.upstream_rq_2xx"] += 2
        out = judge(self.EXP, window(envoy=envoy, apps=apps))
        assert out.verdict in ("pass", "fail"), out.message
        assert out.details is not None
        assert out.details["versions"]["v1"]["p"] == 0.0

    def test_no_failed_attempts_is_inconclusive(self) -> None:
        """p=0 never exercises the retry policy: inconclusive, with the request count."""
        out = judge(self.EXP, self.evidence(9, 0.0, 2, 2))
        assert out.verdict == "inconclusive", out.message
        assert out.samples == 2000
        assert "never exercised" in out.message

    def test_no_requests_is_inconclusive(self) -> None:
        """No counters on the edge: inconclusive with 0 samples."""
        out = judge(self.EXP, window(envoy={}, apps={}))
        assert (out.verdict, out.samples) == ("inconclusive", 0)

    def test_unknown_policy_is_inconclusive(self) -> None:
        """A route with no known policy in force cannot be judged."""
        envoy, apps = simulate_retries(random.Random(10), 500, 0.3, 2)
        out = judge(self.EXP, window(envoy=envoy, apps=apps, pol={}))
        assert out.verdict == "inconclusive"

    def test_other_callees_clusters_are_not_mixed_in(self) -> None:
        """productpage's details clusters (no retries, all failing) do not enter the reviews edge."""
        ev = self.evidence(11, 0.3, 2, 2)
        ev.counters.envoy["productpage-v1-0"] |= {"cluster.out_details_v1.upstream_rq_total": 5000.0,
                                                  "cluster.out_details_v1.upstream_rq_5xx": 5000.0}
        out = judge(self.EXP, ev)
        assert out.verdict == "pass", out.message
        assert out.samples == 2000

    def test_attempts_from_another_caller_do_not_fail_this_route(self) -> None:
        """ratings called by reviews (1 retry) and by details (3 retries): details' 4th attempts are not reviews'."""
        pol = policies(reviews__ratings=1, details__ratings=3)
        envoy, apps = simulate_retries(random.Random(12), 2000, 0.4, 1, callers=("reviews-v1-0",),
                                       callee="ratings", versions=("v1",))
        _, other_apps = simulate_retries(random.Random(13), 2000, 0.4, 3, callers=("details-v1-0",),
                                         callee="ratings", versions=("v1",))
        for k, v in other_apps["ratings-v1-0"]["attempts"].items():
            seen_at(apps["ratings-v1-0"], "details", int(k), v)
        assert max(int(k) for k in apps["ratings-v1-0"]["attempts"]) > 2  # details' 3rd/4th attempts are there
        out = judge({**self.EXP, "route": {"from": "reviews", "to": "ratings"}},
                    window(envoy=envoy, apps=apps, pol=pol))
        assert out.verdict == "pass", out.message

    def test_this_callers_attempt_beyond_its_limit_still_fails_among_others(self) -> None:
        """Among details' legitimate 4th attempts, ONE 3rd attempt by reviews (1 retry) fails the route."""
        pol = policies(reviews__ratings=1, details__ratings=3)
        envoy, apps = simulate_retries(random.Random(12), 2000, 0.4, 1, callers=("reviews-v1-0",),
                                       callee="ratings", versions=("v1",))
        seen_at(apps["ratings-v1-0"], "details", 4, 50)
        seen_at(apps["ratings-v1-0"], "reviews", 3)
        out = judge({**self.EXP, "route": {"from": "reviews", "to": "ratings"}},
                    window(envoy=envoy, apps=apps, pol=pol))
        assert out.verdict == "fail", out.message
        assert "attempt 3 > 1+1" in out.message


# --------------------------------------------------------------------------------- traffic split
class TestTrafficSplitGoodnessOfFit:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "traffic-split", "service": "reviews", "window": "fault", "split": SPLIT,
    }

    def test_declared_split_passes(self) -> None:
        """3000 requests drawn 34/33/33 agree with the declared split; counts are reported per version."""
        out = judge(self.EXP, window(client_records(random.Random(1), 3000)))
        assert out.verdict == "pass", out.message
        assert out.samples == 3000
        assert out.details is not None
        assert sum(out.details["counts"].values()) == 3000

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds at alpha=0.01: at most 1 fails (P(>=2 false fails of 20) = 1.7%, and the seeds are fixed)."""
        results = [judge(self.EXP, window(client_records(random.Random(s), 3000))).verdict for s in SEEDS]
        assert results.count("fail") <= 1, results

    def test_fifty_fifty_claimed_on_34_33_33_data_fails(self) -> None:
        """A 50/50 v1/v2 claim is contradicted by data that also reach v3 (34/33/33)."""
        exp = {**self.EXP, "split": {"v1": 50, "v2": 50}}
        out = judge(exp, window(split_records({"v1": 340, "v2": 330, "v3": 330})))
        assert out.verdict == "fail", out.message
        assert "contradicts" in out.message

    def test_wrong_weights_fail(self) -> None:
        """A 50/25/25 claim is contradicted by 34/33/33 data."""
        exp = {**self.EXP, "split": {"v1": 50, "v2": 25, "v3": 25}}
        assert judge(exp, window(split_records({"v1": 340, "v2": 330, "v3": 330}))).verdict == "fail"

    def test_two_version_split_holds(self) -> None:
        """A 90/10 canary split drawn 90/10 over 2000 requests passes; drawn 80/20 it fails."""
        exp = {**self.EXP, "split": {"v1": 90, "v2": 10}}
        good = client_records(random.Random(5), 2000, split={"v1": 90, "v2": 10})
        bad = client_records(random.Random(5), 2000, split={"v1": 80, "v2": 20})
        assert judge(exp, window(good)).verdict == "pass"
        assert judge(exp, window(bad)).verdict == "fail"

    def test_two_versions_with_too_few_requests_do_not_pass(self) -> None:
        """6 requests, all at v1, cannot confirm a 50/50 split: inconclusive (or fail), never pass."""
        exp = {**self.EXP, "split": {"v1": 50, "v2": 50}}
        out = judge(exp, window(split_records({"v1": 6})))
        assert out.verdict != "pass", out.message

    def test_single_version_service(self) -> None:
        """productpage with split v1: 100 passes when every request went through productpage-v1."""
        exp = {"kind": "traffic-split", "service": "productpage", "window": "fault", "split": {"v1": 100}}
        assert judge(exp, window(client_records(random.Random(2), 200))).verdict == "pass"

    def test_no_requests_is_inconclusive(self) -> None:
        """No trace names reviews: inconclusive, 0 samples."""
        out = judge(self.EXP, window([Record(100.0, 1.0, 503, "", "")]))
        assert (out.verdict, out.samples) == ("inconclusive", 0)

    def test_answers_without_the_demo_header_say_so(self) -> None:
        """Workloads that are not the harness's demo services (a datacenter's own) set no x-harness-trace: the
        split cannot be counted at the client, and the message says why rather than that nothing reached it."""
        out = judge(self.EXP, window([Record(100.0 + i / 10, 1.0, 200, "", "") for i in range(50)]))
        assert (out.verdict, out.samples) == ("inconclusive", 0)
        assert "none of the 50 answers in the fault window carries x-harness-trace" in out.message

    def test_too_few_requests_is_inconclusive(self) -> None:
        """10 requests over three versions (<5 expected each) are too few for chi-square."""
        out = judge(self.EXP, window(split_records({"v1": 4, "v2": 3, "v3": 3})))
        assert out.verdict == "inconclusive", out.message

    def test_service_name_prefixes_are_not_confused(self) -> None:
        """Hops of a service named 'reviews-db' are not counted as versions of 'reviews'."""
        recs = [r._replace(trace=r.trace + ",reviews-db-v1") for r in client_records(random.Random(3), 3000)]
        out = judge(self.EXP, window(recs))
        assert out.verdict == "pass", out.message
        assert out.details is not None
        assert set(out.details["counts"]) == {"v1", "v2", "v3"}

    def test_version_names_with_dashes_are_counted(self) -> None:
        """A 50/50 split between v1 and v2-canary, observed 50/50, passes."""
        exp = {**self.EXP, "split": {"v1": 50, "v2-canary": 50}}
        nodes = {**NODES, "reviews-v2-canary-0": NodeInfo("reviews-v2-canary-0", "reviews", "v2-canary")}
        recs = client_records(random.Random(4), 2000, split={"v1": 50, "v2-canary": 50})
        out = judge(exp, window(recs, nodes=nodes))
        assert out.verdict == "pass", out.message

    def test_a_rare_version_that_gets_far_too_much_fails_despite_few_expected(self) -> None:
        """49.5/49.5/1 over 400 requests with 80 at the 1% version (4 expected): an exact fail, not inconclusive."""
        exp = {**self.EXP, "split": {"v1": 49.5, "v2": 49.5, "v3": 1}}
        out = judge(exp, window(split_records({"v1": 160, "v2": 160, "v3": 80})))
        assert out.verdict == "fail", out.message

    def test_a_rare_version_near_its_share_with_few_expected_is_inconclusive(self) -> None:
        """The same split with 5 requests at the 1% version is too few to tell: inconclusive, never pass."""
        exp = {**self.EXP, "split": {"v1": 49.5, "v2": 49.5, "v3": 1}}
        out = judge(exp, window(split_records({"v1": 198, "v2": 197, "v3": 5})))
        assert out.verdict == "inconclusive", out.message

    def test_traffic_to_an_undeclared_version_fails_even_with_few_samples(self) -> None:
        """split v1: 100 with 3 requests at v1 and 1 at v2 is a definite fail."""
        exp = {**self.EXP, "split": {"v1": 100}}
        out = judge(exp, window(split_records({"v1": 3, "v2": 1})))
        assert out.verdict == "fail", out.message


class TestTrafficSplitEquivalence:
    EXP: ClassVar[dict[str, Any]] = {
        "kind": "traffic-split", "service": "reviews", "window": "all", "split": SPLIT, "tolerance": 5,
    }

    def test_split_within_tolerance_passes(self) -> None:
        """3000 requests at 34/33/33 have every share interval within ±5 points."""
        out = judge(self.EXP, window(client_records(random.Random(1), 3000), name="all"))
        assert out.verdict == "pass", out.message
        assert out.expected.endswith("±5")

    def test_pass_is_stable_across_seeds(self) -> None:
        """20 seeds: at most 1 is not a pass (each needs a Bonferroni 99.67% interval to stray by 2 points)."""
        results = [judge(self.EXP, window(client_records(random.Random(s), 3000), name="all")).verdict
                   for s in SEEDS]
        assert results.count("pass") >= 19, results

    def test_split_outside_tolerance_fails(self) -> None:
        """50/25/25 observed against 34/33/33 ±5 fails, naming the version."""
        out = judge(self.EXP, window(split_records({"v1": 500, "v2": 250, "v3": 250}), name="all"))
        assert out.verdict == "fail", out.message
        assert "v1" in out.message

    def test_small_difference_inside_tolerance_passes_where_gof_fails(self) -> None:
        """36/32/32 over 20000 requests: chi-square rejects 34/33/33, but ±5 points accepts it."""
        counts = {"v1": 7200, "v2": 6400, "v3": 6400}
        assert judge(self.EXP, window(split_records(counts), name="all")).verdict == "pass"
        gof = {**self.EXP, "tolerance": None}
        assert judge(gof, window(split_records(counts), name="all")).verdict == "fail"

    def test_too_few_samples_is_inconclusive(self) -> None:
        """100 requests give share intervals far wider than ±5 points: inconclusive."""
        out = judge(self.EXP, window(split_records({"v1": 34, "v2": 33, "v3": 33}), name="all"))
        assert out.verdict == "inconclusive", out.message

    def test_no_samples_is_inconclusive(self) -> None:
        """An empty window gives inconclusive."""
        assert judge(self.EXP, window([], name="all")).verdict == "inconclusive"

    def test_undeclared_version_beyond_tolerance_fails(self) -> None:
        """Traffic to v3 when the claim is v1: 50, v2: 50 (±5) fails."""
        exp = {**self.EXP, "split": {"v1": 50, "v2": 50}}
        assert judge(exp, window(split_records({"v1": 340, "v2": 330, "v3": 330}), name="all")).verdict == "fail"


# -------------------------------------------------------------------------------------- registry
class TestRegistry:
    def test_window_of_defaults(self) -> None:
        """traffic-split without window or step reads 'fault'; others read their window."""
        assert window_of(expectation(kind="traffic-split", service="reviews", split={"v1": 100})) == "fault"
        assert window_of(expectation(kind="slo", signal="success_rate", window="recovery", min=0.9)) == "recovery"
        assert window_of(expectation(kind="retries", route={"from": "a", "to": "b"})) == "fault"

    def test_missing_window_is_an_error_not_a_verdict(self) -> None:
        """Asking for a window the evidence lacks raises, instead of judging another window."""
        exp = expectation(kind="slo", signal="success_rate", window="recovery", min=0.9)
        with pytest.raises(KeyError):
            evaluate(exp, Evidence({"fault": window([])}, CONFIDENCE))

    def test_higher_confidence_widens_into_inconclusive(self) -> None:
        """970/1000 passes min 0.95 at 90% confidence but is inconclusive at 99.99%."""
        recs = [Record(100.0 + i / 100, 1.0, 200 if i >= 30 else 503, "", "") for i in range(1000)]
        exp = {"kind": "slo", "signal": "success_rate", "window": "fault", "min": 0.95}
        assert judge(exp, window(recs), confidence=0.90).verdict == "pass"
        assert judge(exp, window(recs), confidence=0.9999).verdict == "inconclusive"

    def test_every_outcome_serialises(self) -> None:
        """Outcomes of every kind turn into JSON with the contract's keys."""
        ev = window(client_records(random.Random(1), 500), envoy=simulate_retries(random.Random(1), 500, 0.3, 2)[0])
        exps = [
            {"kind": "slo", "signal": "success_rate", "min": 0.9},
            {"kind": "slo", "signal": "latency", "quantile": 0.5, "max": "1s"},
            {"kind": "retries", "route": {"from": "productpage", "to": "reviews"}},
            {"kind": "traffic-split", "service": "reviews", "split": SPLIT},
        ]
        for fields in exps:
            data = judge(fields, ev).to_json()
            assert {"kind", "verdict", "observed", "interval", "samples", "expected", "message"} <= set(data)
            assert data["verdict"] in ("pass", "fail", "inconclusive")


def test_a_window_with_its_own_confidence_is_judged_at_it() -> None:
    """An adaptive phase's window is judged at its per-look confidence, and the outcome says which."""
    records = client_records(random.Random(3), 400, success=0.97)
    exp = expectation(kind="slo", signal="success_rate", scope="client", window="fault", min=0.93)
    suite_level = evaluate(exp, Evidence({"fault": window(records)}, 0.99))
    per_look = evaluate(exp, Evidence({"fault": window(records)}, 0.99, {"fault": 0.9999}))
    assert suite_level.confidence == 0.99
    assert per_look.confidence == 0.9999
    assert suite_level.interval is not None
    assert per_look.interval is not None
    assert per_look.interval[0] < suite_level.interval[0] < suite_level.interval[1] < per_look.interval[1]
    assert "99.99% CI" in per_look.message
    assert per_look.to_json()["confidence"] == 0.9999
