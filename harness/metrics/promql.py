"""Named signals as PromQL, per mesh: what the ``prometheus`` metric source and the ``promql`` expectation
ask, and what a user can paste into Flagger.

Each mesh exports its own metrics: Envoy its cluster stats (``envoy_cluster_*``, the local and compose
meshes, and Flagger's Envoy-based providers), Istio its standard metrics (``istio_requests_total``,
``istio_request_duration_milliseconds_bucket``, reporter ``destination``), Linkerd its proxy metrics
(``response_total``, ``response_latency_ms_bucket``, direction ``inbound``). A template names the same
signal for each, with Flagger's placeholders (``{{ namespace }}``, ``{{ target }}``, ``{{ service }}``,
``{{ interval }}``) and ``{{ quantile }}`` for latency; the two Flagger built-ins
(``request-success-rate``, ``request-duration``) are Flagger's own text, so a verdict here and a
Flagger analysis read the same number (reference/prior-art.md §6).

Signals (per second where a rate): ``success_rate`` (fraction of requests not answered 5xx),
``latency`` (the quantile in ms), ``throughput`` (requests/s), ``retries`` (retried attempts/s),
``overflow`` (requests/s refused by a circuit breaker's pending limit, plus retries refused by its retry
limit where that counter is exported), ``ejections`` (endpoints ejected now). Where a mesh has no such
metric the template is absent, and :func:`render` says so.

Checked against recorded samples by Prometheus's own engine (``promtool test rules``) in
tests/integration/test_promql_templates.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from harness._errors import InputError

__all__ = ["FLAGGER", "MESHES", "SIGNALS", "TEMPLATES", "render"]

SIGNALS = ("success_rate", "latency", "throughput", "retries", "overflow", "ejections")

_ENVOY_TARGET = 'envoy_cluster_name=~"{{ target }}"'
"""Envoy's clusters of the target: on the local mesh ``out_<service>_<version>`` (a regex: all versions
with ``out_reviews_.*``)."""

_ISTIO = 'reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"'
_ISTIO_CLUSTER = 'cluster_name=~"outbound\\\\|[0-9]+\\\\|.*\\\\|{{ service }}\\\\.{{ namespace }}\\\\..*"'
"""Istio's outbound clusters to the service (``outbound|9080||reviews.shop.svc.cluster.local``): its
sidecars' Envoy stats, for what ``istio_requests_total`` does not count. Istio exports those stats only
when its ``proxyStatsMatcher`` includes them (``inclusionPrefixes: [cluster.outbound]``)."""
_LINKERD = 'namespace="{{ namespace }}",deployment=~"{{ target }}",direction="inbound"'
_LINKERD_PARENT = 'parent_namespace="{{ namespace }}",parent_name="{{ service }}"'
"""The callers' outbound route metrics to the service: labelled by the route's parent (the Service), not by
the scraped pod's namespace, which is the caller's (reference/linkerd/linkerd-semantics.md)."""

TEMPLATES: Mapping[str, Mapping[str, str]] = {
    "envoy": {
        # Per request: upstream_rq_xx counts each request's final answer (an answer that was retried is
        # counted under retry.upstream_rq_xx instead), so neither side counts attempts.
        "success_rate": (f'sum(rate(envoy_cluster_upstream_rq_xx{{{_ENVOY_TARGET},envoy_response_code_class!="5"}}'
                         f'[{{{{ interval }}}}])) / '
                         f'sum(rate(envoy_cluster_upstream_rq_xx{{{_ENVOY_TARGET}}}[{{{{ interval }}}}]))'),
        "latency": (f'histogram_quantile({{{{ quantile }}}}, sum(rate(envoy_cluster_upstream_rq_time_bucket'
                    f'{{{_ENVOY_TARGET}}}[{{{{ interval }}}}])) by (le))'),
        "throughput": f'sum(rate(envoy_cluster_upstream_rq_xx{{{_ENVOY_TARGET}}}[{{{{ interval }}}}]))',
        "retries": f'sum(rate(envoy_cluster_upstream_rq_retry{{{_ENVOY_TARGET}}}[{{{{ interval }}}}]))',
        "overflow": (f'sum(rate(envoy_cluster_upstream_rq_pending_overflow{{{_ENVOY_TARGET}}}[{{{{ interval }}}}])) + '
                     f'(sum(rate(envoy_cluster_upstream_rq_retry_overflow{{{_ENVOY_TARGET}}}[{{{{ interval }}}}])) '
                     'or vector(0))'),
        "ejections": f'sum(envoy_cluster_outlier_detection_ejections_active{{{_ENVOY_TARGET}}})',
    },
    "istio": {
        "success_rate": (f'sum(rate(istio_requests_total{{{_ISTIO},response_code!~"5.*"}}[{{{{ interval }}}}])) / '
                         f'sum(rate(istio_requests_total{{{_ISTIO}}}[{{{{ interval }}}}]))'),
        "latency": (f'histogram_quantile({{{{ quantile }}}}, sum(rate(istio_request_duration_milliseconds_bucket'
                    f'{{{_ISTIO}}}[{{{{ interval }}}}])) by (le))'),
        "throughput": f'sum(rate(istio_requests_total{{{_ISTIO}}}[{{{{ interval }}}}]))',
        "retries": f'sum(rate(envoy_cluster_upstream_rq_retry{{{_ISTIO_CLUSTER}}}[{{{{ interval }}}}]))',
        "overflow": (f'sum(rate(envoy_cluster_upstream_rq_pending_overflow{{{_ISTIO_CLUSTER}}}[{{{{ interval }}}}])) + '
                     f'(sum(rate(envoy_cluster_upstream_rq_retry_overflow{{{_ISTIO_CLUSTER}}}[{{{{ interval }}}}])) '
                     'or vector(0))'),
        "ejections": f'sum(envoy_cluster_outlier_detection_ejections_active{{{_ISTIO_CLUSTER}}})',
    },
    "linkerd": {
        "success_rate": (f'sum(rate(response_total{{{_LINKERD},classification!="failure"}}[{{{{ interval }}}}])) / '
                         f'sum(rate(response_total{{{_LINKERD}}}[{{{{ interval }}}}]))'),
        "latency": (f'histogram_quantile({{{{ quantile }}}}, sum(rate(response_latency_ms_bucket'
                    f'{{{_LINKERD}}}[{{{{ interval }}}}])) by (le))'),
        "throughput": f'sum(rate(request_total{{{_LINKERD}}}[{{{{ interval }}}}]))',
        "retries": f'sum(rate(outbound_http_route_retry_requests_total{{{_LINKERD_PARENT}}}[{{{{ interval }}}}]))',
        "overflow": f'sum(rate(outbound_http_route_retry_overflow_total{{{_LINKERD_PARENT}}}[{{{{ interval }}}}]))',
        "ejections": f'sum(outbound_http_balancer_endpoints{{{_LINKERD_PARENT},endpoint_state="pending"}})',
    },
}
"""Per mesh, per signal. (Istio's and Linkerd's are used by their drivers when those land.)"""

FLAGGER: Mapping[str, Mapping[str, str]] = {
    "istio": {
        "request-success-rate": (
            'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
            'destination_workload=~"{{ target }}",response_code!~"5.*"}[{{ interval }}])) / '
            'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",'
            'destination_workload=~"{{ target }}"}[{{ interval }}])) * 100'),
        "request-duration": (
            'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",'
            'destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}"}'
            '[{{ interval }}])) by (le))'),
    },
    "linkerd": {
        "request-success-rate": (
            'sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",'
            'classification!="failure",direction="inbound"}[{{ interval }}])) / '
            'sum(rate(response_total{namespace="{{ namespace }}",deployment=~"{{ target }}",'
            'direction="inbound"}[{{ interval }}])) * 100'),
        "request-duration": (
            'histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",'
            'deployment=~"{{ target }}",direction="inbound"}[{{ interval }}])) by (le))'),
    },
}
"""Flagger's two built-in metrics, as Flagger writes them (``pkg/metrics/observers``): percent and p99 ms."""

MESHES = tuple(TEMPLATES)
_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


def render(mesh: str, signal: str, *, quantile: float = 0.99, interval: str = "1m", **names: str) -> str:
    """The PromQL of ``signal`` on ``mesh`` (or a Flagger built-in by its name), its placeholders filled
    from ``names`` (``namespace``, ``target``, ``service``), ``interval`` and ``quantile``; an InputError
    naming what is missing or unknown."""
    table = {**TEMPLATES.get(mesh, {}), **FLAGGER.get(mesh, {})}
    if mesh not in TEMPLATES:
        raise InputError(f"no PromQL templates for mesh {mesh!r}; meshes: {', '.join(MESHES)}")
    if signal not in table:
        raise InputError(f"mesh {mesh} has no template for {signal!r}; it has: {', '.join(sorted(table))}")
    if not 0 < quantile < 1:
        raise InputError(f"quantile must be between 0 and 1, not {quantile}")
    values = {"interval": interval, "quantile": f"{quantile:g}", **names}

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise InputError(f"the {mesh} template for {signal} needs {key}=")
        return values[key]

    return _PLACEHOLDER.sub(fill, table[signal])
