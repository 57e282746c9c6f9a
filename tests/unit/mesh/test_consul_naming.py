"""ConsulNaming on the stat names real Consul-configured Envoys export.

tests/unit/mesh/data/consul_stats.json was recorded from environments/consul-local.yaml (Consul v1.16.1, Envoy
1.40.0) after requests through the ingress gateway: each node's admin ``/stats?usedonly`` (JSON, detailed
histograms), trimmed. Its ``(overridden)`` nodes were recorded after a ``ConnectTimeoutMs`` override in the
callers' service-defaults (which is what makes Consul name a cluster ``<8 hex>~<sni>``) and an abort fault at
reviews-v2-0 (retries and 5xx). Nothing here starts a process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.mesh.consul.naming import ConsulNaming
from harness.metrics.envoy import parse_clusters
from harness.metrics.vocabulary import HostCounts, Listener, NodeQuantities, Upstream

DATA: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "consul_stats.json").read_text())
TRUST = "739e9d9e-da5a-85b1-049c-eb41f99a2d93"
"""The trust domain id of the recorded mesh's Connect CA."""
INBOUND = Listener("inbound")
INGRESS = Listener("ingress")


def naming() -> ConsulNaming:
    return ConsulNaming(DATA["versions"], DATA["inbound_ports"].values())


def stats(node: str) -> dict[str, float]:
    return {name: float(value) for name, value in DATA["nodes"][node]["stats"].items()}


def hists(node: str) -> dict[str, list[tuple[float, float, int]]]:
    return {name: [(float(lo), float(w), int(c)) for lo, w, c in bins]
            for name, bins in DATA["nodes"][node]["histograms"].items()}


def read(node: str) -> NodeQuantities:
    return naming().read(stats(node), hists(node))


class TestClusters:
    def test_subset_clusters_are_the_subset_version(self) -> None:
        """``v1.reviews.default.dc1.internal.<trust>.consul``: the resolver's subset, which the driver names
        after the version."""
        n = naming()
        for version in ("v1", "v2", "v3"):
            assert n.upstream(f"{version}.reviews.default.dc1.internal.{TRUST}.consul") == Upstream("reviews", version)

    def test_an_unsubsetted_service_of_one_version_is_that_version(self) -> None:
        n = ConsulNaming({"ratings": ["v7"], "reviews": ["v1", "v2"]})
        assert n.upstream(f"ratings.default.dc1.internal.{TRUST}.consul") == Upstream("ratings", "v7")
        # Several versions and no subset: no one version to count it to.
        assert n.upstream(f"reviews.default.dc1.internal.{TRUST}.consul") is None
        # A service the environment does not know has no version either.
        assert n.upstream(f"unknown.default.dc1.internal.{TRUST}.consul") is None

    def test_a_callers_own_cluster_is_named_hash_tilde_sni(self) -> None:
        """A caller's upstream override of connect timeout or protocol prefixes ``<8 hex>~``."""
        n = naming()
        assert n.upstream(f"80b25de3~v2.reviews.default.dc1.internal.{TRUST}.consul") == Upstream("reviews", "v2")
        assert n.upstream(f"db31938f~ratings.default.dc1.internal.{TRUST}.consul") == Upstream("ratings", "v1")

    @pytest.mark.parametrize("cluster", ["local_app", "local_agent", "self_admin",
                                         f"reviews.default.dc1.external.{TRUST}.consul",
                                         f"reviews.default.dc1.internal.{TRUST}.notconsul"])
    def test_clusters_that_are_no_edge(self, cluster: str) -> None:
        assert naming().upstream(cluster) is None

    def test_cluster_stats_split_at_the_consul_suffix(self) -> None:
        n = naming()
        sni = f"80b25de3~v2.reviews.default.dc1.internal.{TRUST}.consul"
        assert n.split_cluster_stat(f"cluster.{sni}.retry.upstream_rq_5xx") == (sni, "retry.upstream_rq_5xx")
        assert n.split_cluster_stat(f"cluster.{sni}.upstream_rq_total") == (sni, "upstream_rq_total")
        assert n.split_cluster_stat("cluster.local_app.external.upstream_rq_2xx") == (
            "local_app", "external.upstream_rq_2xx")


class TestListeners:
    def test_listener_prefixes(self) -> None:
        n = naming()
        assert n.listener("public_listener") == INBOUND
        assert n.listener("upstream.reviews.default.default.dc1") == Listener("outbound", "reviews")
        assert n.listener("upstream.details.default.default.dc1") == Listener("outbound", "details")
        assert n.listener("ingress_upstream_25306") == INGRESS
        assert n.listener("admin") is None

    def test_listener_stats_split_after_the_upstreams_five_parts(self) -> None:
        n = naming()
        assert n.split_listener_stat("http.upstream.reviews.default.default.dc1.downstream_rq_5xx") == (
            "upstream.reviews.default.default.dc1", "downstream_rq_5xx")
        assert n.split_listener_stat("http.upstream.reviews.default.default.dc1.rds.reviews.version") == (
            "upstream.reviews.default.default.dc1", "rds.reviews.version")
        assert n.split_listener_stat("http.ingress_upstream_25306.downstream_rq_completed") == (
            "ingress_upstream_25306", "downstream_rq_completed")
        assert n.split_listener_stat("cluster.local_app.upstream_rq_total") is None

    def test_tls_listener_by_inbound_port(self) -> None:
        """Only a sidecar's public listener (its inbound port) terminates mTLS; other listener stats (the
        per-listener copies of the HTTP stats, the outbound listeners, another port) are not handshakes."""
        n = naming()
        assert n.tls_listener("listener.127.0.0.1_23132.ssl.handshake") == (INBOUND, "ssl.handshake")
        assert n.tls_listener("listener.127.0.0.1_31046.ssl.fail_verify_error") == (INBOUND, "ssl.fail_verify_error")
        assert n.tls_listener("listener.127.0.0.1_26816.ssl.handshake") is None  # productpage's reviews upstream
        assert n.tls_listener("listener.127.0.0.1_23132.http.public_listener.downstream_rq_2xx") is None
        assert n.tls_listener("listener.admin.ssl.handshake") is None
        assert ConsulNaming(DATA["versions"]).tls_listener("listener.127.0.0.1_23132.ssl.handshake") is None


class TestRecordedNodes:
    def test_a_sidecar_with_upstreams(self) -> None:
        q = read("productpage-v1-0")
        common = {"hosts": 1.0, "healthy_hosts": 1.0, "tls_handshakes": 1.0}
        assert q.upstream == {
            Upstream("details", "v1"): {**common, "attempts": 61.0, "successes": 61.0},
            Upstream("reviews", "v1"): {**common, "attempts": 23.0, "successes": 23.0},
            Upstream("reviews", "v2"): {**common, "attempts": 18.0, "successes": 18.0},
            Upstream("reviews", "v3"): {**common, "attempts": 20.0, "successes": 20.0},
        }
        assert q.listeners == {
            INBOUND: {"completed": 61.0, "2xx": 61.0, "tls_handshakes": 1.0},
            Listener("outbound", "details"): {"completed": 61.0, "2xx": 61.0},
            Listener("outbound", "reviews"): {"completed": 61.0, "2xx": 61.0},
        }

    def test_retries_and_final_answers_on_hash_tilde_clusters(self) -> None:
        """Retried answers (``retry.upstream_rq_5xx``) and per-origin ones (``external.*``) are not final
        answers; the reviews-v2 edge's counters come through the ``<hash>~`` cluster."""
        q = read("productpage-v1-0 (overridden)")
        assert q.upstream[Upstream("reviews", "v2")] == {
            "attempts": 53.0, "retries": 22.0, "successes": 26.0, "final_5xx": 5.0, "retry_limit_exceeded": 5.0,
            "ejections_overflow": 4.0, "tls_handshakes": 24.0, "hosts": 1.0, "healthy_hosts": 1.0}
        assert q.upstream[Upstream("reviews", "v1")]["attempts"] == 39.0
        assert q.upstream[Upstream("reviews", "v3")]["attempts"] == 40.0
        assert set(q.upstream) == {Upstream("reviews", v) for v in ("v1", "v2", "v3")} | {Upstream("details", "v1")}
        assert q.listeners[Listener("outbound", "reviews")] == {"completed": 201.0, "2xx": 196.0, "5xx": 5.0}

    def test_the_faulted_sidecars_public_listener(self) -> None:
        q = read("reviews-v2-0 (overridden)")
        assert q.listeners[INBOUND] == {"completed": 76.0, "2xx": 49.0, "5xx": 27.0, "tls_handshakes": 25.0}
        assert q.upstream == {Upstream("ratings", "v1"): {"attempts": 31.0, "successes": 31.0, "hosts": 1.0,
                                                          "healthy_hosts": 1.0, "tls_handshakes": 1.0}}

    def test_an_unsubsetted_upstream(self) -> None:
        q = read("reviews-v1-0")
        assert set(q.upstream) == {Upstream("ratings", "v1")}
        assert q.upstream[Upstream("ratings", "v1")]["attempts"] == 23.0
        assert q.listeners[Listener("outbound", "ratings")] == {"completed": 23.0, "2xx": 23.0}

    def test_a_leaf_sidecar(self) -> None:
        """ratings calls nothing: only local_app and local_agent clusters, which are no edge."""
        q = read("ratings-v1-0")
        assert q.upstream == {}
        assert q.listeners == {INBOUND: {"completed": 61.0, "2xx": 61.0, "tls_handshakes": 3.0}}

    def test_the_ingress_gateway(self) -> None:
        q = read("gateway")
        assert set(q.upstream) == {Upstream("productpage", "v1")}
        assert q.upstream[Upstream("productpage", "v1")]["attempts"] == 61.0
        assert q.upstream[Upstream("productpage", "v1")]["final_5xx"] == 7.0
        assert q.listeners == {INGRESS: {"completed": 68.0, "2xx": 61.0, "5xx": 7.0}}

    def test_histograms_per_listener(self) -> None:
        """``downstream_rq_time`` of each HTTP connection manager, the admin's left out."""
        q = read("productpage-v1-0")
        assert set(q.latency) == {INBOUND, Listener("outbound", "details"), Listener("outbound", "reviews")}
        assert q.latency[Listener("outbound", "details")] == [(1.0, 0.1, 51), (2.0, 0.1, 9), (26.0, 1.0, 1)]
        assert sum(c for _, _, c in q.latency[INBOUND]) == 61
        gateway = read("gateway")
        assert set(gateway.latency) == {INGRESS}
        assert sum(c for _, _, c in gateway.latency[INGRESS]) == 68
        assert set(read("ratings-v1-0").latency) == {INBOUND}

    def test_per_host_counts_from_clusters(self) -> None:
        """``/clusters`` of the recorded productpage: each callee host under its version, local_app left out."""
        hosts = parse_clusters(DATA["clusters"]["productpage-v1-0 (overridden)"], naming())
        q = naming().read({}, None, hosts)
        assert q.hosts == {
            Upstream("reviews", "v1"): {"127.0.0.1:28460": HostCounts(39.0, 0.0, False)},
            Upstream("reviews", "v2"): {"127.0.0.1:31046": HostCounts(53.0, 27.0, False)},
            Upstream("reviews", "v3"): {"127.0.0.1:22899": HostCounts(40.0, 0.0, False)},
            Upstream("details", "v1"): {"127.0.0.1:27477": HostCounts(201.0, 0.0, False)},
        }


@pytest.mark.parametrize("node", sorted(DATA["nodes"]))
def test_the_admin_filter_keeps_every_stat_the_naming_reads(node: str) -> None:
    """What the metric source asks Envoy for (``stats_filter|histogram_filter``) is everything ``read`` uses:
    reading only the filtered stats gives the same quantities as reading them all."""
    n = naming()
    wanted = re.compile(f"{n.stats_filter}|{n.histogram_filter}")
    everything = stats(node)
    kept = {name: v for name, v in everything.items() if wanted.search(name)}
    kept_hists = {name: b for name, b in hists(node).items() if wanted.search(name)}
    assert n.read(kept, kept_hists) == n.read(everything, hists(node))
    assert not any(name.startswith(("cluster.local_app.", "cluster.local_agent.", "http.admin.")) for name in kept)
    assert len(kept) < len(everything)
