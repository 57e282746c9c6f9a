"""Istio's standard metrics and sidecar cluster stats, one series at a time, into the vocabulary: which node
a series belongs to, and what each label (reporter, response code, response flags) makes of it. The same
series through a real Prometheus: tests/integration/test_istio_telemetry.py."""

from __future__ import annotations

import re

from istiometrics import Workload, cluster_name, request_labels

from harness.metrics.istio_telemetry import IstioTelemetryNaming, IstioViews
from harness.metrics.snapshot import NodeInfo
from harness.metrics.vocabulary import Listener, Upstream

GATEWAY = Workload("istio-ingressgateway", "istio-system", "istio-ingressgateway", "unknown")
WEB = Workload("web-v1", "shop", "web", "v1")
RATINGS = Workload("ratings-v2", "shop", "ratings", "v2")
BATCH = Workload("batch", "shop", "batch", "v1")


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def _views() -> tuple[IstioViews, dict[str, NodeInfo]]:
    info: dict[str, NodeInfo] = {}
    return IstioViews(frozenset({"web", "ratings"}), "web", "gateway", info), info


def _read(views: IstioViews, node: str) -> tuple[dict[Upstream, dict[str, float]], dict[Listener, dict[str, float]]]:
    q = IstioTelemetryNaming(views.covered).read(views.counters.get(node, {}))
    return q.upstream, q.listeners


def test_a_source_report_is_the_callers_outbound_listener_and_its_upstreams_final_answer() -> None:
    views, info = _views()
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 200)), 1.0, 90)
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 503, "URX")), 1.0, 10)
    upstream, listeners = _read(views, "web-1")
    assert info == {"web-1": NodeInfo("web-1", "web", "v1")}
    assert listeners == {Listener("outbound", "ratings"): {"completed": 100, "2xx": 90, "5xx": 10}}
    assert upstream == {Upstream("ratings", "v2"): {"successes": 90, "final_5xx": 10, "retry_limit_exceeded": 10}}


def test_requests_the_callers_sidecar_answered_itself_are_no_upstream_answer() -> None:
    views, _ = _views()
    for flags, code in (("FI", 503), ("UO", 503), ("UH", 503), ("UT", 504), ("-", 0)):
        views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, code, flags)), 1, 1)
    upstream, listeners = _read(views, "web-1")
    counters = upstream[Upstream("ratings", "v2")]
    # an injected abort and no healthy host made no attempt: no final answer of the upstream; UO is the
    # pending queue's refusal or the retry breaker's (attempts made): which, only the cluster stats say, so it
    # is a final 5xx and no overflow; a route timeout is the upstream's 504 (as Envoy's upstream_rq_504); a
    # request with no response (code 0) is completed but in no status class
    assert counters == {"no_healthy_host": 1, "route_timeouts": 1, "final_5xx": 2}
    assert listeners[Listener("outbound", "ratings")] == {"completed": 5, "5xx": 4}


def test_a_request_with_no_peer_metadata_is_the_service_called() -> None:
    """Every pod of a version killed: the caller's sidecar answers 503 UH itself, and Istio labels the
    destination ``unknown`` but for the Service called. The 503s are the edge's and the gateway's."""
    views, _ = _views()
    nobody = Workload("unknown", "unknown", "unknown", "unknown")
    labels = _labels(request_labels("source", WEB, nobody, 503, "UH"))
    labels.update(destination_service_name="ratings", destination_canonical_service="unknown")
    views.add("web-1", "istio_requests_total", labels, 1, 4)
    gw = _labels(request_labels("source", GATEWAY, nobody, 503, "UH"))
    gw.update(destination_service_name="web", destination_canonical_service="unknown")
    views.add("istio-system/gw", "istio_requests_total", gw, 1, 6)
    upstream, listeners = _read(views, "web-1")
    assert listeners == {Listener("outbound", "ratings"): {"completed": 4, "5xx": 4}}
    assert upstream == {Upstream("ratings", "unknown"): {"no_healthy_host": 4}}
    assert _read(views, "istio-system/gw")[1] == {Listener("ingress"): {"completed": 6, "5xx": 6}}


def test_a_subset_named_otherwise_is_the_version_it_selects() -> None:
    info: dict[str, NodeInfo] = {}
    views = IstioViews(frozenset({"web", "ratings"}), "web", "gateway", info, subsets={("ratings", "stable"): "v2"})
    views.add("web-1", "envoy_cluster_upstream_rq_total",
              {"cluster_name": "outbound|9080|stable|ratings.shop.svc.cluster.local"}, 1, 9)
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 200)), 1, 9)
    assert _read(views, "web-1")[0] == {Upstream("ratings", "v2"): {"attempts": 9}}


def test_a_destination_report_is_the_services_inbound_listener() -> None:
    views, info = _views()
    views.add("ratings-1", "istio_requests_total", _labels(request_labels("destination", WEB, RATINGS, 500)), 1, 7)
    upstream, listeners = _read(views, "ratings-1")
    assert info["ratings-1"] == NodeInfo("ratings-1", "ratings", "v2")
    assert upstream == {}
    assert listeners == {Listener("inbound"): {"completed": 7, "5xx": 7}}


def test_the_gateway_and_workloads_outside_the_environment() -> None:
    views, info = _views()
    views.add("istio-system/gw", "istio_requests_total", _labels(request_labels("source", GATEWAY, WEB, 200)), 1, 3)
    views.add("batch-1", "istio_requests_total", _labels(request_labels("source", BATCH, RATINGS, 503)), 1, 99)
    views.add("loadgen-1", "istio_requests_total", _labels(request_labels("source", BATCH, WEB, 200)), 1, 99)
    assert info == {"istio-system/gw": NodeInfo("istio-system/gw", "gateway", "gateway")}  # not the load pod
    _, listeners = _read(views, "istio-system/gw")
    assert listeners == {Listener("ingress"): {"completed": 3, "2xx": 3}}
    assert _read(views, "batch-1") == ({}, {})


def test_once_a_sidecar_exports_its_cluster_stats_they_alone_are_the_upstream_counters() -> None:
    views, _ = _views()
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 200)), 1, 90)
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 504, "UT")), 1, 2)
    cluster = {"cluster_name": cluster_name(RATINGS)}
    views.add("web-1", "envoy_cluster_upstream_rq_total", cluster, 1, 97)
    views.add("web-1", "envoy_cluster_upstream_rq_retry", cluster, 1, 5)
    views.add("web-1", "envoy_cluster_upstream_rq", {**cluster, "response_code_class": "2xx"}, 1, 90)
    views.add("web-1", "envoy_cluster_upstream_rq", {**cluster, "response_code": "200"}, 1, 90)  # not re-counted
    views.add("web-1", "envoy_cluster_upstream_rq_per_try_timeout", {"cluster_name": cluster_name(RATINGS) + ";"}, 1, 4)
    views.add("web-1", "envoy_cluster_upstream_rq_total", {"cluster_name": "inbound|9080||"}, 1, 1000)
    upstream, _ = _read(views, "web-1")
    assert upstream == {Upstream("ratings", "v2"): {"attempts": 97, "retries": 5, "successes": 90,
                                                    "per_try_timeouts": 4}}


def test_pods_without_cluster_stats_add_no_upstream_counters_to_a_covered_callee() -> None:
    """web-1 exports its cluster stats, web-2 does not (one version annotated): pairing web-1's attempts
    with both pods' answers would be wrong, so the edge's upstream counters are web-1's alone."""
    covered: set[str] = set()
    views = IstioViews(frozenset({"web", "ratings"}), "web", "gateway", {}, covered=covered)
    views.add("web-1", "envoy_cluster_upstream_rq_total", {"cluster_name": cluster_name(RATINGS)}, 1, 10)
    views.add("web-2", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 200)), 1, 50)
    naming = IstioTelemetryNaming(covered)
    assert naming.read(views.counters["web-1"]).upstream == {Upstream("ratings", "v2"): {"attempts": 10}}
    web2 = naming.read(views.counters["web-2"])
    assert web2.upstream == {}
    assert web2.listeners == {Listener("outbound", "ratings"): {"completed": 50, "2xx": 50}}  # still answered


def test_a_cluster_without_subsets_is_every_version_at_once() -> None:
    views, _ = _views()
    views.add("web-1", "envoy_cluster_upstream_rq_total",
              {"cluster_name": "outbound|9080||ratings.shop.svc.cluster.local"}, 1, 12)
    views.add("web-1", "istio_requests_total", _labels(request_labels("source", WEB, RATINGS, 200)), 1, 12)
    naming = IstioTelemetryNaming(views.covered)
    assert naming.read(views.counters["web-1"]).upstream == {Upstream("ratings", ""): {"attempts": 12}}


def test_a_pod_scraped_by_two_jobs_is_counted_once() -> None:
    views, _ = _views()
    labels = _labels(request_labels("source", WEB, RATINGS, 200))
    views.add("web-1", "istio_requests_total", {**labels, "job": "kubernetes-pods", "instance": "10.0.0.5:15020"}, 1, 8)
    views.add("web-1", "istio_requests_total", {**labels, "job": "envoy-stats", "instance": "10.0.0.5:15090"}, 1, 8)
    assert _read(views, "web-1")[1] == {Listener("outbound", "ratings"): {"completed": 8, "2xx": 8}}


def test_an_edge_with_answers_and_no_attempts_says_why_it_cannot_be_judged() -> None:
    from harness.assertions.evidence import EdgeCounts

    assert "proxyStatsMatcher" in (EdgeCounts(successes=9, final_5xx=1).unattempted("web->ratings") or "")
    assert EdgeCounts(attempts=10, successes=9, final_5xx=1).unattempted("web->ratings") is None
    assert EdgeCounts().unattempted("web->ratings") is None  # no requests at all: another reason
