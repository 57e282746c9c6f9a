"""The Linkerd cluster's metric source through a real Prometheus (Debian's), scraping pods that expose the
series Linkerd's proxies export (tests/linkerdmetrics.py, names and labels from Linkerd's source): every
count a window reads is the known number of requests played between its two ends, and the verdicts read
from them are the true ones; the retry oracle fails on the same counts against a policy they break.

Beside the mesh's pods sit a pod of another namespace and another workload of the namespace with far larger
counts, so a source that read them would be visibly wrong. The series are recorded shapes, not a running
Linkerd proxy's output (none can run here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from linkerdmetrics import LinkerdExporter, ProxyPod, backend, route
from meshtools import prometheus_serving

from harness.assertions.evidence import WindowEvidence
from harness.assertions.retries import evaluate_retries
from harness.mesh.linkerd.driver import resolved_policy
from harness.metrics.linkerd_telemetry import LinkerdTelemetrySource
from harness.metrics.snapshot import delta
from harness.metrics.vocabulary import Upstream
from harness.model.suite import RetriesExpectation

pytestmark = pytest.mark.mesh

SCRAPE_S = 0.5


@dataclass
class Cluster:
    pods: dict[str, ProxyPod]
    exporter: LinkerdExporter
    source: LinkerdTelemetrySource


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    pods = {p.name: p for p in [
        ProxyPod("web-7d4f", "shop", "web", "v1"), ProxyPod("ratings-v1-5b8c", "shop", "ratings", "v1"),
        ProxyPod("ratings-v2-6c9d", "shop", "ratings", "v2"), ProxyPod("batch-2f3g", "shop", "batch", "v1"),
        ProxyPod("ratings-v1-0a0b", "staging", "ratings", "v1")]}
    exporter = LinkerdExporter(list(pods.values()))
    from harness.mesh.local import prometheus as prom

    try:
        with prometheus_serving(exporter.scrape_config(prom.promql_duration(SCRAPE_S)), tmp_path) as url:
            source = LinkerdTelemetrySource(url, "shop", ["web", "ratings"], SCRAPE_S)
            try:
                with exporter.lock:
                    _history(pods)
                deadline = time.time() + 30
                while len(source.scrape().envoy) < 3:
                    if time.time() > deadline:
                        pytest.fail("Prometheus never scraped the pods")
                    time.sleep(0.3)
                yield Cluster(pods, exporter, source)
            finally:
                source.close()
    finally:
        exporter.close()


def _history(pods: dict[str, ProxyPod]) -> None:
    """Traffic before any window (a window reads only its own increase), and the pods not the mesh's."""
    pods["web-7d4f"].requests("ratings", 200, 1000)
    pods["web-7d4f"].attempts("ratings", "ratings", 200, 1000)
    pods["ratings-v1-5b8c"].inbound(200, 500)
    pods["ratings-v2-6c9d"].inbound(200, 500)
    pods["batch-2f3g"].requests("ratings", 503, 50_000)
    pods["batch-2f3g"].attempts("ratings", "ratings", 503, 50_000)
    pods["ratings-v1-0a0b"].inbound(503, 50_000)


def _play_retries(pods: dict[str, ProxyPod]) -> None:
    """web -> ratings with 2 retries on 5xx; ratings fails 20% of its attempts. 120 requests: 120 first
    tries, 24 failed -> 24 retries, 5 failed -> 5 retries, 1 failed for good: 149 attempts (29 retries),
    30 failed, 119 successes, 1 final 503 (the retry limit exceeded). Each attempt is picked anew between
    the two versions' pods behind the one backend (the Service itself)."""
    web = pods["web-7d4f"]
    web.requests("ratings", 200, 119, seconds=0.02)
    web.requests("ratings", 503, 1, seconds=0.08)
    web.attempts("ratings", "ratings", 200, 119)
    web.attempts("ratings", "ratings", 503, 30)
    web.retries("ratings", "requests", 29)
    web.retries("ratings", "limit_exceeded", 1)
    pods["ratings-v1-5b8c"].inbound(200, 60)
    pods["ratings-v1-5b8c"].inbound(503, 15, ms=1)
    pods["ratings-v2-6c9d"].inbound(200, 59)
    pods["ratings-v2-6c9d"].inbound(503, 15, ms=1)
    pods["batch-2f3g"].requests("ratings", 503, 9000)
    pods["ratings-v1-0a0b"].inbound(503, 9000)


def _window(cluster: Cluster, play: object) -> WindowEvidence:
    before = cluster.source.scrape()
    with cluster.exporter.lock:
        play(cluster.pods)  # type: ignore[operator]
    time.sleep(3 * SCRAPE_S)  # a window ends at its last samples before its end: let every pod be scraped
    after = cluster.source.scrape()
    return WindowEvidence("w", before.t, after.t, [], delta(before, after), cluster.source.node_info)


def test_every_count_is_the_traffic_played_in_the_window(cluster: Cluster) -> None:
    ev = _window(cluster, _play_retries)
    assert {n: (i.service, i.version) for n, i in cluster.source.node_info.items()} == {
        "web-7d4f": ("web", "v1"), "ratings-v1-5b8c": ("ratings", "v1"), "ratings-v2-6c9d": ("ratings", "v2")}
    edge = ev.edge("web", "ratings")
    assert (edge.attempts, edge.retries, edge.requests, edge.successes, edge.final_5xx, edge.retry_limit_exceeded) \
        == (149, 29, 120, 119, 1, 1)
    answered = ev.answered("web", "ratings")
    assert (answered.total, answered.ok, answered.xx5) == (120, 119, 1)
    inbound = ev.inbound("ratings")
    assert (inbound.total, inbound.ok, inbound.xx5) == (149, 119, 30)
    assert ev.version_inbound("ratings", "v1").xx5 == 15
    latency = ev.edge_latency("web", "ratings")
    assert sum(n for _, _, n in latency) == 120
    assert sum(n for lo, _, n in latency if lo >= 50) == 1  # the one 80 ms request, in the 50-500 ms bin


def test_the_retry_oracle_judges_the_window_and_can_fail(cluster: Cluster) -> None:
    ev = _window(cluster, _play_retries)
    exp = RetriesExpectation.model_validate({"kind": "retries", "route": {"from": "web", "to": "ratings"},
                                             "model": "oracle"})
    two = resolved_policy({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "2"})
    assert evaluate_retries(exp, replace(ev, policies={"web->ratings": two}), 0.95).verdict == "pass"
    # the same counts against 5 retries: one request failed for good where 5 retries make that all but
    # impossible, and too few attempts were made
    five = resolved_policy({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "5"})
    assert evaluate_retries(exp, replace(ev, policies={"web->ratings": five}), 0.95).verdict == "fail"


def _play_fault_and_shift(pods: dict[str, ProxyPod]) -> None:
    """A shift (HTTPRoute mesh-harness-split-ratings: v1 90%, v2 10%) of 1000 requests, no retries, and the
    harness's fault backend answering 100 attempts of another 1000 through mesh-harness-fault-ratings."""
    web = pods["web-7d4f"]
    split = route("mesh-harness-split-ratings", "HTTPRoute", "shop")
    web.requests("ratings", 200, 1000, via=split)
    web.attempts("ratings", "ratings-v1", 200, 900, via=split)
    web.attempts("ratings", "ratings-v2", 200, 100, via=split)
    fault = route("mesh-harness-fault-ratings", "HTTPRoute", "shop")
    web.requests("ratings", 200, 900, via=fault)
    web.requests("ratings", 503, 100, via=fault)
    web.attempts("ratings", "ratings", 200, 900, via=fault)
    web.attempts("ratings", "mesh-harness-fault-ratings", 503, 100, via=fault)
    web.set("outbound_http_balancer_endpoints", {**backend("ratings-v1"), "parent_name": "ratings",
                                                 "parent_kind": "Service", "parent_namespace": "shop",
                                                 "endpoint_state": "ready"}, 2)


def test_backends_are_versions_and_the_fault_backend_is_the_callee(cluster: Cluster) -> None:
    """A version's Service counts as that version; the fault backend's answers as the callee's own, as its
    callers saw them; routes are summed per parent Service (adding a route renames its series)."""
    ev = _window(cluster, _play_fault_and_shift)
    v1, v2, whole = (ev.edge("web", "ratings", v) for v in ("v1", "v2", ""))
    assert (v1.attempts, v2.attempts) == (900, 100)
    assert (whole.attempts, whole.successes, whole.final_5xx) == (1000, 900, 100)
    answered = ev.answered("web", "ratings")
    assert (answered.total, answered.xx5) == (2000, 100)
    now = cluster.source.scrape()  # gauges are read from snapshots, not from a window's increase
    gauges = now.naming.read(now.envoy["web-7d4f"]).upstream[Upstream("ratings", "v1")]
    assert (gauges["hosts"], gauges["healthy_hosts"]) == (2, 2)
