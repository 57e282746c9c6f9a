"""Metric source of a Consul datacenter: its sidecars' Envoy stats, read through its Prometheus.

A Consul sidecar's Envoy exports the same stats as the local mesh's admin endpoint reads, but the bootstrap
``consul connect envoy`` writes gives Envoy Consul's own tag extractors, which cut the SNI cluster name and
the upstream listener's name into labels before the defaults run (measured on Consul 1.16.1 with Envoy 1.40):

* ``cluster.v1.api.default.dc1.internal.<trust domain>.consul.upstream_rq_total`` is exported as
  ``envoy_cluster_upstream_rq_total{envoy_cluster_name="v1", consul_destination_full_target=
  "v1.api.default.dc1.internal.<trust domain>", consul_destination_service="api", ...}``: the default
  ``envoy_cluster_name`` keeps only the first dot-separated part;
* ``http.upstream.api.default.default.dc1.downstream_rq_total`` as ``envoy_http_downstream_rq_total{
  envoy_http_conn_manager_prefix="upstream", consul_upstream_service="api", consul_upstream_namespace=
  "default", consul_upstream_partition="default", consul_upstream_datacenter="dc1"}``.

:class:`ConsulViews` puts the names back together from those labels before the samples are read, so that
:class:`~harness.mesh.consul.naming.ConsulNaming` maps them exactly as it maps the admin endpoint's stats and
the verdicts are the same whichever way the counters were read.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.metrics.prometheus import PrometheusSource, SampleViews

__all__ = ["ConsulPrometheusSource", "ConsulViews", "consul_labels"]

_UPSTREAM_PARTS = ("consul_upstream_service", "consul_upstream_namespace", "consul_upstream_partition",
                   "consul_upstream_datacenter")
"""The labels of an upstream listener's name, in the order of its parts
(``upstream.<service>.<namespace>.<partition>.<datacenter>``)."""


def consul_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    """``labels`` with the Envoy names Consul's tag extractors cut apart put back in the labels the harness
    reads (``envoy_cluster_name``, ``envoy_http_conn_manager_prefix``); other labels unchanged."""
    target = labels.get("consul_destination_full_target")
    prefix = labels.get("envoy_http_conn_manager_prefix")
    upstream = [labels.get(name, "") for name in _UPSTREAM_PARTS]
    if not target and not (prefix == "upstream" and all(upstream)):
        return labels
    out = dict(labels)
    if target:
        out["envoy_cluster_name"] = f"{target}.consul"
    if prefix == "upstream" and all(upstream):
        out["envoy_http_conn_manager_prefix"] = ".".join(("upstream", *upstream))
    return out


class ConsulViews(SampleViews):
    """Samples of one instant, with Consul's names put back together (:func:`consul_labels`)."""

    def add(self, node: str, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        super().add(node, name, consul_labels(labels), ts, value)


class ConsulPrometheusSource(PrometheusSource):
    """Snapshots of a datacenter's sidecars through the Prometheus that scrapes them (no demo apps: the
    workloads are the datacenter's)."""

    scrape_hint = ("it must scrape each sidecar's Envoy at the endpoint envoy_prometheus_bind_addr opens (path "
                   "/metrics) with instance=\"<address>:<port>\"")

    def views(self) -> ConsulViews:
        return ConsulViews()
