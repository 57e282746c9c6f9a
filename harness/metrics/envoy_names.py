"""Envoy's stat names, mapped into the harness's vocabulary (:mod:`harness.metrics.vocabulary`).

Every mesh built on Envoy (the local mesh, compose, Istio, Consul) exports the same stats under the
same suffixes; what differs is how it names its clusters and listener stat prefixes. So the suffix
tables below are shared, and a mesh contributes only an :class:`EnvoyNaming`: how to split a stat name
into its cluster (or listener prefix) and the rest, and what callee and version a cluster stands for.
:data:`LOCAL` is the local mesh's (``out_<callee>_<version>``, ``inbound``, ``outbound_<callee>``,
``gateway``; see :mod:`harness.mesh.local.envoy_config`). Istio's would map
``outbound|9080|v1|reviews.shop.svc.cluster.local`` to ``Upstream("reviews", "v1")`` and its
``inbound_0.0.0.0_9080`` / ``outbound_0.0.0.0_9080`` prefixes to listeners; nothing else changes.

This is the only module outside the drivers that knows an Envoy stat name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from harness.metrics.vocabulary import Bins, HostCounts, Listener, NodeQuantities, Upstream

__all__ = ["HISTOGRAM_SUFFIX", "LISTENER_STATS", "LOCAL", "TLS_STATS", "UPSTREAM_STATS", "EnvoyNaming",
           "LocalNaming", "Naming"]

TLS_STATS: dict[str, str] = {
    "ssl.handshake": "tls_handshakes",
    "ssl.connection_error": "tls_errors",
    "ssl.fail_verify_error": "tls_untrusted",
    "ssl.fail_verify_san": "tls_wrong_identity",
    "ssl.fail_verify_no_cert": "tls_no_cert",
}
"""TLS stat suffix (on a cluster, or on a TLS listener) → :data:`~harness.metrics.vocabulary.TLS_COUNTERS`
name. Measured (reference/envoy-probe.md §5): a client certificate from an unknown CA counts
``fail_verify_error`` on the listener, a server certificate with the wrong SAN ``fail_verify_san`` on the
calling cluster; ``ssl.handshake`` counts only successful handshakes."""

UPSTREAM_STATS: dict[str, str] = {
    "upstream_rq_total": "attempts",
    "upstream_rq_retry": "retries",
    "upstream_rq_2xx": "successes",
    "upstream_rq_5xx": "final_5xx",
    "upstream_rq_retry_overflow": "retry_overflow",
    "upstream_rq_retry_limit_exceeded": "retry_limit_exceeded",
    "upstream_rq_pending_overflow": "pending_overflow",
    # max_requests overflow is counted here, apart from the pending queue's (reference/envoy-probe.md §4).
    "upstream_rq_active_overflow": "active_overflow",
    "upstream_cx_overflow": "connection_overflow",
    "upstream_rq_timeout": "route_timeouts",
    "upstream_rq_per_try_timeout": "per_try_timeouts",
    "upstream_cx_connect_fail": "connect_failures",
    "outlier_detection.ejections_enforced_total": "ejections_enforced",
    "outlier_detection.ejections_overflow": "ejections_overflow",
    "lb_healthy_panic": "panic_routed",
    "upstream_cx_none_healthy": "no_healthy_host",
    # gauges
    "outlier_detection.ejections_active": "ejections_active",
    "membership_total": "hosts",
    "membership_healthy": "healthy_hosts",
    **TLS_STATS,
}
"""Cluster stat suffix → :data:`~harness.metrics.vocabulary.UPSTREAM_COUNTERS` / ``GAUGES`` name.

``upstream_rq_<code>`` counts a request's *final* answer only; retried answers go to
``retry.upstream_rq_<code>`` (reference/mesh-semantics.md §1e), which is why ``successes`` and
``final_5xx`` are per request, while ``attempts`` counts every try."""

LISTENER_STATS: dict[str, str] = {
    "downstream_rq_completed": "completed",
    "downstream_rq_1xx": "1xx",
    "downstream_rq_2xx": "2xx",
    "downstream_rq_3xx": "3xx",
    "downstream_rq_4xx": "4xx",
    "downstream_rq_5xx": "5xx",
}
"""HTTP connection manager stat suffix → listener quantity."""

HISTOGRAM_SUFFIX = "downstream_rq_time"
"""The listener histogram of request latency (ms), as each listener's callers saw it."""

HostStats = Mapping[str, Mapping[str, Mapping[str, float]]]
"""Per cluster, per host address: ``rq_total``, ``rq_error`` and ``ejected`` (0/1), from ``/clusters``."""


class Naming(Protocol):
    """Turns one node's raw scrape into the vocabulary; a metric source stamps its snapshots with one."""

    def read(self, stats: Mapping[str, float], hists: Mapping[str, Bins] | None = None,
             hosts: HostStats | None = None) -> NodeQuantities: ...


class EnvoyNaming:
    """The Envoy mapping with the mesh-specific parts left to subclasses: how cluster and listener
    names are cut out of a stat name, and what they stand for."""

    stats_filter: str = ""
    """Admin ``/stats`` filter (a regex) selecting the stats this naming reads."""
    histogram_filter: str = ""
    endpoint_filter: str = ""
    """Admin filter for per-endpoint stats (empty: this mesh does not export them)."""

    def split_cluster_stat(self, name: str) -> tuple[str, str] | None:
        """``cluster.<cluster>.<suffix>`` → (cluster, suffix); None for another stat."""
        raise NotImplementedError

    def split_listener_stat(self, name: str) -> tuple[str, str] | None:
        """``http.<prefix>.<suffix>`` → (prefix, suffix); None for another stat."""
        raise NotImplementedError

    def upstream(self, cluster: str) -> Upstream | None:
        """The callee version a cluster stands for; None for a cluster that is no edge (the local app)."""
        raise NotImplementedError

    def listener(self, prefix: str) -> Listener | None:
        raise NotImplementedError

    def tls_listener(self, name: str) -> tuple[Listener, str] | None:
        """``listener.<address>.ssl.<x>`` → (the listener it stands for, ``ssl.<x>``); None when the stat is
        another, or this mesh's TLS listeners are not known (their handshakes are then not read)."""
        return None

    @staticmethod
    def inbound_tls(name: str, ports: Collection[int]) -> tuple[Listener, str] | None:
        """A ``listener.<address>_<port>.ssl.<x>`` stat of a sidecar's inbound listener, the one that terminates
        mTLS, known by its port; None for any other stat."""
        at = name.find(".ssl.")
        if not name.startswith("listener.") or at < 0:
            return None
        port = name[len("listener."):at].rpartition("_")[2]
        if port.isdigit() and int(port) in ports:
            return Listener("inbound"), name[at + 1:]
        return None

    def read(self, stats: Mapping[str, float], hists: Mapping[str, Bins] | None = None,
             hosts: HostStats | None = None) -> NodeQuantities:
        """One node's counters, gauges, histograms and per-host counts in the vocabulary. Unknown stats
        are ignored; a quantity a node never exported is absent (read as 0 by the evidence)."""
        out = NodeQuantities()
        for name, value in stats.items():
            if name.startswith("cluster."):
                cut = self.split_cluster_stat(name)
                if cut is None or (quantity := UPSTREAM_STATS.get(cut[1])) is None:
                    continue
                up = self.upstream(cut[0])
                if up is not None:
                    counters = out.upstream.setdefault(up, {})
                    counters[quantity] = counters.get(quantity, 0.0) + value
            elif name.startswith("http."):
                cut = self.split_listener_stat(name)
                if cut is None or (quantity := LISTENER_STATS.get(cut[1])) is None:
                    continue
                lis = self.listener(cut[0])
                if lis is not None:
                    counters = out.listeners.setdefault(lis, {})
                    counters[quantity] = counters.get(quantity, 0.0) + value
            elif name.startswith("listener."):
                tls = self.tls_listener(name)
                if tls is None or (quantity := TLS_STATS.get(tls[1])) is None:
                    continue
                counters = out.listeners.setdefault(tls[0], {})
                counters[quantity] = counters.get(quantity, 0.0) + value
        for name, bins in (hists or {}).items():
            cut = self.split_listener_stat(name)
            if cut is None or cut[1] != HISTOGRAM_SUFFIX:
                continue
            lis = self.listener(cut[0])
            if lis is not None:
                out.latency[lis] = list(bins)
        for cluster, by_host in (hosts or {}).items():
            up = self.upstream(cluster)
            if up is None:
                continue
            out.hosts[up] = {address: HostCounts(s.get("rq_total", 0.0), s.get("rq_error", 0.0),
                                                 bool(s.get("ejected", 0.0)))
                             for address, s in by_host.items()}
        return out


class LocalNaming(EnvoyNaming):
    """The local (and compose) mesh: clusters ``out_<callee>_<version>`` and ``inbound_app``, listener
    prefixes ``inbound``, ``outbound_<callee>`` and ``gateway``. ``_`` and ``.`` never occur in a
    service or version name, so a name splits at its first dot and its last underscore."""

    stats_filter = (
        r"^(cluster\.(out_|inbound_app)[^.]*\.(upstream_rq|upstream_cx_connect_fail|upstream_cx_overflow"
        r"|upstream_cx_none_healthy|lb_healthy_panic|membership_(total|healthy)$"
        r"|retry\.|outlier_detection\.|circuit_breakers\.|ssl\.)"
        r"|http\.(inbound|outbound_[^.]*|gateway)\.(downstream_rq_|fault\.)"
        r"|listener\..*ssl\.)"
    )
    histogram_filter = r"^http\.(inbound|outbound_[^.]*|gateway)\.downstream_rq_time$"
    endpoint_filter = r"^cluster\.out_[^.]*\.endpoint\..*\.(rq_total|rq_error|healthy)$"
    """Per-endpoint stats (Prometheus's view of each host: the admin source reads ``/clusters``)."""

    def split_cluster_stat(self, name: str) -> tuple[str, str] | None:
        cluster, dot, suffix = name[len("cluster."):].partition(".")
        return (cluster, suffix) if dot else None

    def split_listener_stat(self, name: str) -> tuple[str, str] | None:
        prefix, dot, suffix = name[len("http."):].partition(".")
        return (prefix, suffix) if dot and name.startswith("http.") else None

    def upstream(self, cluster: str) -> Upstream | None:
        if not cluster.startswith("out_"):
            return None
        callee, sep, version = cluster[len("out_"):].rpartition("_")
        return Upstream(callee, version) if sep and callee else None

    def listener(self, prefix: str) -> Listener | None:
        if prefix == "inbound":
            return Listener("inbound")
        if prefix.startswith("outbound_"):
            return Listener("outbound", prefix[len("outbound_"):])
        if prefix == "gateway":
            return Listener("ingress")
        return None

    def tls_listener(self, name: str) -> tuple[Listener, str] | None:
        """A sidecar's one TLS listener is its inbound one (``listener.127.0.0.1_<port>.ssl.*``): outbound
        listeners and the gateway's take plaintext from their own app or the load."""
        at = name.find(".ssl.")
        return (Listener("inbound"), name[at + 1:]) if name.startswith("listener.") and at > 0 else None


LOCAL = LocalNaming()
"""The local mesh's naming: the default of every snapshot that does not say otherwise."""
