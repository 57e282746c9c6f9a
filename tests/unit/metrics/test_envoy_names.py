"""Envoy's stat names mapped into the harness's vocabulary, and evidence that reads only the vocabulary."""

from __future__ import annotations

from typing import Any

from harness.assertions.evidence import WindowEvidence
from harness.metrics.envoy import parse_clusters
from harness.metrics.envoy_names import HISTOGRAM_SUFFIX, LISTENER_STATS, LOCAL, UPSTREAM_STATS, EnvoyNaming
from harness.metrics.snapshot import NodeInfo, Snapshot
from harness.metrics.vocabulary import GAUGES, TLS_COUNTERS, UPSTREAM_COUNTERS, Listener, Upstream

LOCAL_STATS = {
    "cluster.out_ratings_v1.upstream_rq_total": 120.0,
    "cluster.out_ratings_v1.upstream_rq_retry": 20.0,
    "cluster.out_ratings_v1.upstream_rq_2xx": 90.0,
    "cluster.out_ratings_v1.upstream_rq_timeout": 7.0,
    "cluster.out_ratings_v1.upstream_rq_active_overflow": 3.0,
    "cluster.out_ratings_v1.retry.upstream_rq_5xx": 20.0,
    "cluster.out_ratings_v1.external.upstream_rq_503": 30.0,
    "cluster.out_ratings_v1.outlier_detection.ejections_active": 1.0,
    "cluster.out_ratings_v2.upstream_rq_total": 5.0,
    "cluster.inbound_app.upstream_rq_total": 999.0,
    "http.inbound.downstream_rq_completed": 300.0,
    "http.inbound.downstream_rq_5xx": 4.0,
    "http.outbound_ratings.downstream_rq_completed": 100.0,
    "http.outbound_ratings.downstream_rq_2xx": 93.0,
    "http.gateway.downstream_rq_completed": 50.0,
    "http.inbound.fault.delays_injected": 11.0,
}


class IstioLike(EnvoyNaming):
    """Istio's cluster names (``outbound|PORT|SUBSET|HOST``) and listener prefixes, as a later driver
    would write them: only the naming changes, the vocabulary does not."""

    def split_cluster_stat(self, name: str) -> tuple[str, str] | None:
        rest = name[len("cluster."):]
        for suffix in sorted(UPSTREAM_STATS, key=len, reverse=True):
            if rest.endswith("." + suffix):
                return rest[: -len(suffix) - 1], suffix
        return None

    def split_listener_stat(self, name: str) -> tuple[str, str] | None:
        rest = name[len("http."):]  # prefixes hold an address: inbound_0.0.0.0_9080
        for suffix in (*LISTENER_STATS, HISTOGRAM_SUFFIX):
            if rest.endswith("." + suffix):
                return rest[: -len(suffix) - 1], suffix
        return None

    def upstream(self, cluster: str) -> Upstream | None:
        parts = cluster.split("|")
        # `<cluster>.retry.upstream_rq_5xx` also ends in a known suffix: the host must end the cluster name.
        if len(parts) != 4 or parts[0] != "outbound" or not parts[3].endswith(".svc.cluster.local"):
            return None
        return Upstream(parts[3].split(".")[0], parts[2])

    def listener(self, prefix: str) -> Listener | None:
        return Listener("inbound") if prefix.startswith("inbound_") else None


class TestLocalNaming:
    def test_cluster_stats_become_edge_quantities_per_version(self) -> None:
        """out_<callee>_<version> counters land on Upstream(callee, version) under the vocabulary's names."""
        q = LOCAL.read(LOCAL_STATS)
        v1 = q.upstream[Upstream("ratings", "v1")]
        assert v1["attempts"] == 120.0
        assert v1["retries"] == 20.0
        assert v1["successes"] == 90.0
        assert v1["route_timeouts"] == 7.0
        assert v1["active_overflow"] == 3.0
        assert v1["ejections_active"] == 1.0
        assert q.upstream[Upstream("ratings", "v2")] == {"attempts": 5.0}

    def test_retried_and_per_origin_answers_are_not_final_answers(self) -> None:
        """retry.* and external.* stats, and the local app's cluster, never reach the edge's counts."""
        q = LOCAL.read(LOCAL_STATS)
        assert "final_5xx" not in q.upstream[Upstream("ratings", "v1")]
        assert set(q.upstream) == {Upstream("ratings", "v1"), Upstream("ratings", "v2")}

    def test_listeners_and_histograms(self) -> None:
        """inbound, outbound_<callee> and gateway listeners; their latency histograms."""
        bins = [(1.0, 1.0, 5)]
        q = LOCAL.read(LOCAL_STATS, {"http.outbound_ratings.downstream_rq_time": bins,
                                     "http.inbound.downstream_rq_time": bins})
        assert q.listeners[Listener("inbound")] == {"completed": 300.0, "5xx": 4.0}
        assert q.listeners[Listener("outbound", "ratings")] == {"completed": 100.0, "2xx": 93.0}
        assert q.listeners[Listener("ingress")] == {"completed": 50.0}
        assert q.latency == {Listener("outbound", "ratings"): bins, Listener("inbound"): bins}

    def test_hosts(self) -> None:
        """Per-host counts from /clusters, keyed by the callee version."""
        q = LOCAL.read({}, None, {"out_reviews_v3": {"127.0.0.1:5": {"rq_total": 9.0, "ejected": 1.0}},
                                  "inbound_app": {"127.0.0.1:6": {"rq_total": 1.0}}})
        assert list(q.hosts) == [Upstream("reviews", "v3")]
        host = q.hosts[Upstream("reviews", "v3")]["127.0.0.1:5"]
        assert (host.requests, host.errors, host.ejected) == (9.0, 0.0, True)

    def test_every_envoy_stat_maps_to_a_vocabulary_name(self) -> None:
        """The suffix table names only quantities the vocabulary defines."""
        assert set(UPSTREAM_STATS.values()) <= set(UPSTREAM_COUNTERS) | set(GAUGES) | set(TLS_COUNTERS)

    def test_the_scrape_filter_keeps_what_the_table_reads(self) -> None:
        """Every cluster suffix the table maps passes the local admin filter."""
        import re

        pattern = re.compile(LOCAL.stats_filter)
        for suffix in UPSTREAM_STATS:
            assert pattern.search(f"cluster.out_ratings_v1.{suffix}"), suffix


class TestEvidenceReadsTheVocabulary:
    def test_another_meshs_names_give_the_same_evidence(self) -> None:
        """The same counters under Istio-like names, with that naming on the snapshot, give the same edge."""
        nodes = {"reviews-v1-0": NodeInfo("reviews-v1-0", "reviews", "v1")}
        local = WindowEvidence("w", 0, 1, [], Snapshot(1, envoy={"reviews-v1-0": LOCAL_STATS}), nodes)
        istio_stats = {k.replace("cluster.out_ratings_v1.", "cluster.outbound|9080|v1|ratings.shop.svc.cluster.local.")
                        .replace("http.inbound.", "http.inbound_0.0.0.0_9080."): v for k, v in LOCAL_STATS.items()}
        istio = WindowEvidence("w", 0, 1, [], Snapshot(1, envoy={"reviews-v1-0": istio_stats}, naming=IstioLike()),
                               nodes)
        assert istio.edge("reviews", "ratings", "v1") == local.edge("reviews", "ratings", "v1")
        assert istio.edge("reviews", "ratings").route_timeouts == 7.0
        assert istio.inbound("reviews") == local.inbound("reviews")


def test_parse_clusters_reads_hosts_and_the_ejection_flag() -> None:
    """The admin /clusters JSON: string counters, absent zeros, failed_outlier_check, the local app skipped."""
    data: dict[str, Any] = {"cluster_statuses": [
        {"name": "out_reviews_v3", "host_statuses": [{
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 44577}},
            "stats": [{"name": "cx_connect_fail"}, {"value": "12", "name": "rq_error"}, {"name": "rq_success"},
                      {"value": "12", "name": "rq_total"}, {"type": "GAUGE", "value": "1", "name": "cx_active"}],
            "health_status": {"failed_outlier_check": True, "eds_health_status": "HEALTHY"}}]},
        {"name": "out_reviews_v1", "host_statuses": [{
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 42795}},
            "stats": [{"value": "24", "name": "rq_total"}], "health_status": {"eds_health_status": "HEALTHY"}}]},
        {"name": "inbound_app", "host_statuses": []},
    ]}
    assert parse_clusters(data) == {
        "out_reviews_v3": {"127.0.0.1:44577": {"rq_total": 12.0, "rq_error": 12.0, "ejected": 1.0}},
        "out_reviews_v1": {"127.0.0.1:42795": {"rq_total": 24.0, "rq_error": 0.0, "ejected": 0.0}},
    }
