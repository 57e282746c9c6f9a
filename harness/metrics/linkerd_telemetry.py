"""Metric source of a Linkerd cluster: its proxies' metrics, read through the cluster's Prometheus
(reference/linkerd/linkerd-semantics.md §7).

Linkerd-viz's Prometheus (or any that scrapes each proxy's ``:4191/metrics`` as its job does) labels every
series with the pod's ``namespace`` and ``pod`` and copies the pod's labels (``app``, ``version``) onto it.
Each pod is a node (:class:`~harness.metrics.pod_source.PodSource`). What each series says, in the
vocabulary (:mod:`harness.metrics.vocabulary`):

* ``outbound_http_route_request_statuses_total`` on a caller's pod, per parent Service: one per request its
  app sent, with the final answer after retries and timeouts: what the mesh answered the app on that edge
  (``Listener("outbound", callee)``), and the edge's final 5xx and route timeouts (``error`` is
  ``REQUEST_TIMEOUT``). A request with a stream error and no status counts as completed, in no class.
* ``outbound_http_route_backend_requests_total`` and ``…_backend_response_statuses_total``, per backend:
  one per *attempt* (each retry picks a backend anew), and its answer: the edge's ``attempts`` and
  ``successes``. A backend is the callee itself (version ``""``: every version at once), a version's
  Service ``<callee>-<version>`` (a shift), or the harness's fault backend for the callee, whose answers
  are the callee's as its callers see them (a fault at the target).
* ``outbound_http_route_retry_{requests,limit_exceeded,overflow}_total``, per parent: ``retries``,
  ``retry_limit_exceeded``, ``retry_overflow`` (retries dropped because no backend was ready). Per route,
  not per backend: they belong to version ``""``.
* ``outbound_http_balancer_endpoints{endpoint_state}``, per backend: the ``hosts`` (ready and pending),
  ``healthy_hosts`` (ready) and ``ejections_active`` (pending: ejected by failure accrual, or not yet
  connected) gauges.
* ``response_total`` and ``response_latency_ms_bucket`` with ``direction="inbound"`` on a callee's pod:
  what the service answered its callers, and how fast (``Listener("inbound")``).
* ``outbound_http_route_request_duration_seconds_bucket``: the latency the caller's app saw on the edge,
  in Linkerd's four coarse buckets (50 ms, 500 ms, 1 s, 10 s).

Attempts and answers come from the caller's own proxy, in one scrape: a window reads them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.metrics.envoy_names import HostStats
from harness.metrics.pod_source import PodSource, PodViews
from harness.metrics.snapshot import Bins, NodeInfo
from harness.metrics.vocabulary import Listener, NodeQuantities, Upstream

__all__ = ["METRIC_NAMES", "LinkerdNaming", "LinkerdTelemetrySource", "LinkerdViews"]

ROUTE_STATUSES = "outbound_http_route_request_statuses_total"
ROUTE_DURATION = "outbound_http_route_request_duration_seconds_bucket"
BACKEND_REQUESTS = "outbound_http_route_backend_requests_total"
BACKEND_STATUSES = "outbound_http_route_backend_response_statuses_total"
RETRIES = {"outbound_http_route_retry_requests_total": "retries",
           "outbound_http_route_retry_limit_exceeded_total": "retry_limit_exceeded",
           "outbound_http_route_retry_overflow_total": "retry_overflow"}
ENDPOINTS = "outbound_http_balancer_endpoints"
RESPONSES = "response_total"
LATENCY = "response_latency_ms_bucket"
METRIC_NAMES: tuple[str, ...] = tuple(sorted({ROUTE_STATUSES, ROUTE_DURATION, BACKEND_REQUESTS, BACKEND_STATUSES,
                                              *RETRIES, ENDPOINTS, RESPONSES, LATENCY, "up"}))
TIMEOUT_ERRORS = frozenset({"REQUEST_TIMEOUT"})
"""``error`` of a request the route's timeout ended (``timeout.linkerd.io/request``: a synthetic 504)."""
FAULT_BACKEND_PREFIX = "mesh-harness-fault-"
"""The harness's fault backend for a callee (harness/mesh/linkerd/objects.py names it so)."""

_SEP = "/"


def _key(*parts: str) -> str:
    return _SEP.join(parts)


def _class(status: str) -> str | None:
    return f"{status[0]}xx" if len(status) == 3 and status.isdigit() and status[0] in "12345" else None


def backend_version(callee: str, backend: str) -> str:
    """The callee version a backend stands for: ``""`` for the callee itself and for the harness's fault
    backend of it, ``v1`` for the Service ``<callee>-v1``; any other backend is its own name."""
    if backend in (callee, f"{FAULT_BACKEND_PREFIX}{callee}"):
        return ""
    return backend.removeprefix(f"{callee}-")


class LinkerdViews(PodViews):
    """One instant of every pod, its series turned into counter keys :class:`LinkerdNaming` reads."""

    def __init__(self, namespace: str, services: frozenset[str], info: dict[str, NodeInfo],
                 seen: dict[str, float], targets: dict[str, str]) -> None:
        super().__init__(seen, targets)
        self.namespace, self.services, self.info = namespace, services, info

    def _parent(self, labels: Mapping[str, str]) -> str | None:
        """The callee of an outbound series: its parent Service, when it is one of the environment's."""
        if labels.get("parent_kind") != "Service" or labels.get("parent_namespace", self.namespace) != self.namespace:
            return None
        name = labels.get("parent_name", "")
        return name if name in self.services else None

    def add(self, node: str, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        if not self.pinned(node, name, labels, ts, value):
            return
        service = labels.get("app") or labels.get("deployment") or ""
        if service not in self.services:
            return  # another workload of the namespace
        self.mark(node, ts)
        if node not in self.info:
            self.info[node] = NodeInfo(node, service, labels.get("version", ""))
        if name in (RESPONSES, LATENCY):
            if labels.get("direction") == "inbound":
                self._inbound(node, name, labels, value)
            return
        callee = self._parent(labels)
        if callee is None:
            return
        if name == ROUTE_STATUSES:
            self.count(node, _key("listener", "outbound", callee, "completed"), value)
            status, error = labels.get("http_status", ""), labels.get("error", "")
            if (cls := _class(status)) is not None:
                self.count(node, _key("listener", "outbound", callee, cls), value)
            if cls == "5xx" or (error and cls is None):
                self.count(node, _key("up", callee, "", "final_5xx"), value)
            if error in TIMEOUT_ERRORS:
                self.count(node, _key("up", callee, "", "route_timeouts"), value)
        elif name == ROUTE_DURATION:
            if (le := labels.get("le")) is not None:
                hist = self.buckets.setdefault(node, {}).setdefault(_key("latency", "outbound", callee), {})
                bound = float(le) * 1000  # seconds -> ms
                hist[bound] = hist.get(bound, 0.0) + value
        elif (quantity := RETRIES.get(name)) is not None:
            self.count(node, _key("up", callee, "", quantity), value)
        else:
            version = backend_version(callee, labels.get("backend_name", callee))
            if name == BACKEND_REQUESTS:
                self.count(node, _key("up", callee, version, "attempts"), value)
            elif name == BACKEND_STATUSES:
                if _class(labels.get("http_status", "")) == "2xx":
                    self.count(node, _key("up", callee, version, "successes"), value)
            elif name == ENDPOINTS:
                state = labels.get("endpoint_state", "")
                self.count(node, _key("up", callee, version, "hosts"), value)
                if state == "ready":
                    self.count(node, _key("up", callee, version, "healthy_hosts"), value)
                elif state == "pending":
                    self.count(node, _key("up", callee, version, "ejections_active"), value)

    def _inbound(self, node: str, name: str, labels: Mapping[str, str], value: float) -> None:
        if name == LATENCY:
            if (le := labels.get("le")) is not None:
                hist = self.buckets.setdefault(node, {}).setdefault(_key("latency", "inbound", ""), {})
                hist[float(le)] = hist.get(float(le), 0.0) + value
            return
        self.count(node, _key("listener", "inbound", "", "completed"), value)
        if (cls := _class(labels.get("status_code", ""))) is not None:
            self.count(node, _key("listener", "inbound", "", cls), value)


class LinkerdNaming:
    """Reads the counter keys of :class:`LinkerdViews` into the vocabulary."""

    def read(self, stats: Mapping[str, float], hists: Mapping[str, Bins] | None = None,
             hosts: HostStats | None = None) -> NodeQuantities:
        out = NodeQuantities()
        for key, value in stats.items():
            family, *rest = key.split(_SEP)
            if family == "listener" and len(rest) == 3:
                side, callee, quantity = rest
                listener = Listener("inbound") if side == "inbound" else Listener("outbound", callee)
                counters = out.listeners.setdefault(listener, {})
                counters[quantity] = counters.get(quantity, 0.0) + value
            elif family == "up" and len(rest) == 3:
                out.upstream.setdefault(Upstream(rest[0], rest[1]), {})[rest[2]] = value
        for key, bins in (hists or {}).items():
            family, *rest = key.split(_SEP)
            if family == "latency" and len(rest) == 2:
                listener = Listener("inbound") if rest[0] == "inbound" else Listener("outbound", rest[1])
                out.latency[listener] = list(bins)
        return out  # no per-host view: Linkerd counts per backend, not per endpoint


class LinkerdTelemetrySource(PodSource):
    """Snapshots of every meshed pod of ``namespace`` that Prometheus scrapes, from Linkerd's proxy metrics."""

    metric_names = METRIC_NAMES
    scraped_how = ("each proxy's :4191/metrics (linkerd-viz's linkerd-proxy job does) with the labels namespace and "
                   "pod, and the pod's labels app and version copied")

    def __init__(self, url: str, namespace: str, services: Sequence[str], interval_s: float, *,
                 wait_s: float | None = None) -> None:
        self.services = frozenset(services)
        super().__init__(url, namespace, interval_s, LinkerdNaming(), wait_s=wait_s)

    def views(self) -> LinkerdViews:
        return LinkerdViews(self.namespace, self.services, self._info, self._seen, self._pod_targets)
