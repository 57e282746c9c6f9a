"""The Istio cluster's metric source through a real Prometheus (Debian's), scraping pods that expose the
series Istio's sidecars export (tests/istiometrics.py): every count a window reads is the known number of
requests played between its two ends, and the verdicts read from them are the true ones.

Each pod's counters move only between the two snapshots of a window, so the window's truth is exact:
nothing but what the test played. Beside the mesh's pods sit a pod of another namespace and another
workload of the namespace, with far larger counts, so a source that read them would be visibly wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from istiometrics import Exporter, Pod, Workload
from meshtools import prometheus_serving

from harness.assertions.circuit_breaker import evaluate_circuit_breaker
from harness.assertions.evidence import WindowEvidence
from harness.assertions.retries import evaluate_retries
from harness.mesh.local import prometheus as prom
from harness.mesh.policy import ResolvedPolicy
from harness.metrics.istio_telemetry import IstioTelemetrySource
from harness.metrics.snapshot import delta
from harness.model.suite import CircuitBreakerExpectation, RetriesExpectation

pytestmark = pytest.mark.mesh

GATEWAY = Workload("istio-ingressgateway", "istio-system", "istio-ingressgateway", "unknown")
PRODUCTPAGE = Workload("productpage-v1", "shop", "productpage", "v1")
REVIEWS_V1 = Workload("reviews-v1", "shop", "reviews", "v1")
REVIEWS_V2 = Workload("reviews-v2", "shop", "reviews", "v2")
OTHER = Workload("batch-job", "shop", "batch-job", "v1")
ELSEWHERE = Workload("reviews-v1", "staging", "reviews", "v1")
SCRAPE_S = 0.5


@dataclass
class Cluster:
    pods: dict[str, Pod]
    exporter: Exporter
    source: IstioTelemetrySource


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    pods = {name: Pod(name, ns) for name, ns in [
        ("istio-ingressgateway-7d4f", "istio-system"), ("productpage-v1-5b8c", "shop"),
        ("reviews-v1-6c9d", "shop"), ("reviews-v2-8e1a", "shop"), ("batch-job-2f3g", "shop"),
        ("reviews-v1-0a0b", "staging")]}
    exporter = Exporter(list(pods.values()))
    try:
        with prometheus_serving(exporter.scrape_config(prom.promql_duration(SCRAPE_S)), tmp_path) as url:
            source = IstioTelemetrySource(url, "shop", ["productpage", "reviews", "ratings"], "productpage", SCRAPE_S)
            try:
                with exporter.lock:
                    _traffic_before(pods)
                _wait_for_series(source)
                yield Cluster(pods, exporter, source)
            finally:
                source.close()
    finally:
        exporter.close()


def _traffic_before(pods: dict[str, Pod]) -> None:
    """History before the window (any amount: a window reads only its own increase), plus the pods that
    are not the mesh's."""
    pods["istio-ingressgateway-7d4f"].count("source", GATEWAY, PRODUCTPAGE, 200, 1000)
    pods["productpage-v1-5b8c"].count("source", PRODUCTPAGE, REVIEWS_V1, 200, 1000)
    pods["reviews-v2-8e1a"].count("destination", PRODUCTPAGE, REVIEWS_V2, 200, 1000)
    pods["reviews-v1-6c9d"].count("destination", PRODUCTPAGE, REVIEWS_V1, 200, 1000)
    pods["batch-job-2f3g"].count("source", OTHER, REVIEWS_V1, 503, 50_000)
    pods["reviews-v1-0a0b"].count("destination", PRODUCTPAGE, ELSEWHERE, 503, 50_000)


def _wait_for_series(source: IstioTelemetrySource) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if len(source.query('count(istio_requests_total{namespace="shop"})', time.time()) or []) and \
                len(source.scrape().envoy) >= 4:
            return
        time.sleep(0.3)
    pytest.fail("Prometheus never scraped the pods")


def _play(pods: dict[str, Pod], *, envoy_stats: bool = True) -> None:
    """One window's traffic: 200 users' requests at the gateway, 2 retries on productpage -> reviews.

    reviews-v1 fails 20% of its attempts; productpage sends 120 requests to v1 and 80 to v2 (v2 never
    fails). v1: 120 requests; attempts a geometric count at p = 0.2 with 2 retries: 120 first tries,
    24 failed → 24 retries, 5 failed → 5 retries, 1 failed for good: 149 attempts, 30 failed, 1 final 503
    (URX). So 119 successes, 1 final 5xx. Exactly as Envoy counts, played in the caller's Envoy stats
    (attempts, retries, final classes) and in both reporters' standard metrics.
    """
    gw, pp, r1, r2 = (pods[n] for n in ("istio-ingressgateway-7d4f", "productpage-v1-5b8c", "reviews-v1-6c9d",
                                         "reviews-v2-8e1a"))
    gw.count("source", GATEWAY, PRODUCTPAGE, 200, 199, ms=20)
    gw.count("source", GATEWAY, PRODUCTPAGE, 503, 1, ms=20)
    pp.count("destination", GATEWAY, PRODUCTPAGE, 200, 199, ms=18)
    pp.count("destination", GATEWAY, PRODUCTPAGE, 503, 1, ms=18)
    pp.count("source", PRODUCTPAGE, REVIEWS_V1, 200, 119, ms=7)
    pp.count("source", PRODUCTPAGE, REVIEWS_V1, 503, 1, flags="URX", ms=7)
    pp.count("source", PRODUCTPAGE, REVIEWS_V2, 200, 80, ms=4)
    if not envoy_stats:  # Istio's default proxyStatsMatcher: no cluster.outbound stats
        pp.envoy.clear()
    else:
        _caller_envoy_stats(pp)
    r1.count("destination", PRODUCTPAGE, REVIEWS_V1, 200, 119, ms=5)
    r1.count("destination", PRODUCTPAGE, REVIEWS_V1, 503, 30, ms=1)
    r2.count("destination", PRODUCTPAGE, REVIEWS_V2, 200, 80, ms=3)
    # not the mesh's: another workload of the namespace, the same service in another namespace
    pods["batch-job-2f3g"].count("source", OTHER, REVIEWS_V1, 503, 9000)
    pods["reviews-v1-0a0b"].count("destination", PRODUCTPAGE, ELSEWHERE, 503, 9000)


def _caller_envoy_stats(pp: Pod) -> None:
    """productpage's sidecar's own cluster stats of the same traffic (exported with cluster.outbound)."""
    pp.envoy_stat("envoy_cluster_upstream_rq_total", REVIEWS_V1, 149)
    pp.envoy_stat("envoy_cluster_upstream_rq_retry", REVIEWS_V1, 29)
    pp.envoy_stat("envoy_cluster_upstream_rq", REVIEWS_V1, 119, response_code_class="2xx")
    pp.envoy_stat("envoy_cluster_upstream_rq", REVIEWS_V1, 1, response_code_class="5xx")
    pp.envoy_stat("envoy_cluster_upstream_rq_retry_limit_exceeded", REVIEWS_V1, 1)
    pp.envoy_stat("envoy_cluster_upstream_rq_total", REVIEWS_V2, 80)
    pp.envoy_stat("envoy_cluster_upstream_rq", REVIEWS_V2, 80, response_code_class="2xx")


def _window(cluster: Cluster, *, envoy_stats: bool = True) -> WindowEvidence:
    before = cluster.source.scrape()
    with cluster.exporter.lock:
        _play(cluster.pods, envoy_stats=envoy_stats)
    time.sleep(3 * SCRAPE_S)  # a window ends at its last samples before its end: let every pod be scraped
    after = cluster.source.scrape()
    return WindowEvidence("w", before.t, after.t, [], delta(before, after), cluster.source.node_info)


def test_every_count_is_the_traffic_played_in_the_window(cluster: Cluster) -> None:
    ev = _window(cluster)
    assert {n: (i.service, i.version) for n, i in cluster.source.node_info.items()} == {
        "istio-system/istio-ingressgateway-7d4f": ("gateway", "gateway"), "productpage-v1-5b8c": ("productpage", "v1"),
        "reviews-v1-6c9d": ("reviews", "v1"), "reviews-v2-8e1a": ("reviews", "v2")}
    v1 = ev.edge("productpage", "reviews", "v1")
    assert (v1.attempts, v1.retries, v1.requests, v1.successes, v1.final_5xx, v1.retry_limit_exceeded) == (
        149, 29, 120, 119, 1, 1)
    v2 = ev.edge("productpage", "reviews", "v2")
    assert (v2.attempts, v2.requests, v2.successes, v2.final_5xx) == (80, 80, 80, 0)
    answered = ev.answered("productpage", "reviews")
    assert (answered.total, answered.ok, answered.xx5) == (200, 199, 1)
    inbound = ev.inbound("reviews")
    assert (inbound.total, inbound.ok, inbound.xx5) == (229, 199, 30)
    assert ev.version_inbound("reviews", "v1").xx5 == 30
    ingress = ev.answered("gateway", "productpage")
    assert (ingress.total, ingress.xx5) == (200, 1)
    latency = ev.edge_latency("productpage", "reviews")
    assert sum(n for _, _, n in latency) == 200
    assert sum(n for lo, _, n in latency if lo >= 5) == 120  # v1's 7 ms requests in the 5-10 bin


def test_the_retry_oracle_judges_the_window_and_can_fail(cluster: Cluster) -> None:
    ev = _window(cluster)
    exp = RetriesExpectation.model_validate({"kind": "retries", "route": {"from": "productpage", "to": "reviews"},
                                             "model": "oracle"})
    assert evaluate_retries(exp, _with(ev, _retries(2)), 0.95).verdict == "pass"
    # the same counts against a policy of 5 retries: one request failed for good where 5 retries make that
    # all but impossible, and too few attempts were made
    assert evaluate_retries(exp, _with(ev, _retries(5)), 0.95).verdict == "fail"


def test_without_the_sidecars_envoy_stats_the_oracle_says_why_it_cannot_judge(cluster: Cluster) -> None:
    ev = _window(cluster, envoy_stats=False)
    v1 = ev.edge("productpage", "reviews", "v1")
    assert (v1.attempts, v1.successes, v1.final_5xx, v1.retry_limit_exceeded) == (0, 119, 1, 1)
    exp = RetriesExpectation.model_validate({"kind": "retries", "route": {"from": "productpage", "to": "reviews"},
                                             "model": "oracle"})
    outcome = evaluate_retries(exp, _with(ev, _retries(2)), 0.95)
    assert outcome.verdict == "inconclusive"
    assert "no attempts" in outcome.message
    assert "proxyStatsMatcher" in outcome.message
    # nor can the breaker's verdict: overflows are among the counters the standard metrics lack
    breaker = CircuitBreakerExpectation.model_validate({"kind": "circuit-breaker",
                                                        "route": {"from": "productpage", "to": "reviews"}})
    for opens in (True, False):
        judged = evaluate_circuit_breaker(breaker.model_copy(update={"opens": opens}), _with(ev, _retries(2)), 0.95)
        assert judged.verdict == "inconclusive"
        assert "proxyStatsMatcher" in judged.message


def _retries(n: int) -> ResolvedPolicy:
    """Istio's policy of a route with ``n`` retries on 5xx, no timeouts, breakers unset (2³²−1)."""
    unset = 2**32 - 1
    return ResolvedPolicy(n, ("5xx",), None, 0.0, unset, unset, unset, unset, None)


def _with(ev: WindowEvidence, policy: ResolvedPolicy) -> WindowEvidence:
    return replace(ev, policies={"productpage->reviews": policy})

