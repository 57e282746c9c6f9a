"""Metric source of an Istio cluster: Istio's standard metrics, and its sidecars' own Envoy stats where
exported, read through the cluster's Prometheus.

In a cluster the harness reaches no sidecar's admin endpoint; what it has is the Prometheus that scrapes
each pod's merged metrics (``:15020/stats/prometheus``), with the pod's ``namespace`` and ``pod`` as
labels (Istio's sample Prometheus and the Prometheus operator's pod monitors both name them so). Each pod
is a node, sampled as :class:`~harness.metrics.prometheus.PrometheusSource` samples a local Envoy: a
window reads the increase between two samples *of the same pod* inside it, so what one sidecar counted
is always compared with what the same sidecar counted.

What each series says, in the vocabulary (:mod:`harness.metrics.vocabulary`):

* ``istio_requests_total{reporter="source"}`` on a caller's pod: one per request its app sent, with the
  final answer. It is what the mesh answered the app on that edge (``Listener("outbound", callee)``; a
  gateway's is its ``ingress``), and per callee version (``destination_version``) the request's final
  answer (``successes``, ``final_5xx``) and, from Envoy's response flags, why it ended: ``UT`` a route
  timeout, ``URX`` every retry used, ``UH`` no healthy host, ``UF`` a failed connection (counted per
  request, not per connection). A request the fault filter answered (``FI``) or that found no healthy
  host (``UH``) made no attempt and is no final answer of the upstream, as in Envoy's own
  ``upstream_rq_<code>``. ``UO`` is left to the cluster stats (see :data:`FLAG_QUANTITIES`).
* ``istio_requests_total{reporter="destination"}`` on a callee's pod: one per attempt that reached it,
  with its answer: what the service answered its callers (``Listener("inbound")``).
* ``istio_request_duration_milliseconds_bucket``: the latency of each of those, per reporter alike.
* ``envoy_cluster_*{cluster_name="outbound|9080|v1|reviews.shop.svc.cluster.local"}``, the caller
  sidecar's cluster stats, which Istio exports only when its ``proxyStatsMatcher`` includes them
  (``inclusionPrefixes: [cluster.outbound]``): attempts and retries per callee version, and everything
  the standard metrics cannot show (per-try timeouts, the retry breaker, ejections, hosts). Once any pod
  exports them for a callee, every pod's upstream counters to that callee come from them alone, in
  Envoy's exact meaning (:class:`IstioTelemetryNaming` says why).

Attempts are counted only by the caller's sidecar: the callee's ``reporter="destination"`` series count
them too, but in another pod, scraped at other instants, so their window is another window. Without the
Envoy stats an edge therefore has requests and no attempts, and the retry oracle says it cannot judge
(and why) rather than compare counts of two different windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.metrics.envoy_names import UPSTREAM_STATS, HostStats
from harness.metrics.pod_source import PodSource, PodViews
from harness.metrics.snapshot import Bins, NodeInfo, Snapshot
from harness.metrics.vocabulary import Listener, NodeQuantities, Upstream

__all__ = ["ENVOY_CLUSTER_STATS", "FLAG_QUANTITIES", "METRIC_NAMES", "IstioTelemetryNaming",
           "IstioTelemetrySource"]

REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds_bucket"
ENVOY_CLUSTER_STATS: Mapping[str, str] = {
    f"envoy_cluster_{suffix.replace('.', '_')}": quantity for suffix, quantity in UPSTREAM_STATS.items()
    if not suffix.endswith("xx") and not suffix.startswith("ssl.")
}
"""Istio's Prometheus name of a sidecar cluster stat → the upstream quantity. Istio's bootstrap tags
``cluster_name`` out of the stat name (its ``stats_tags``), and the status class as ``response_code_class``
on ``envoy_cluster_upstream_rq`` (read apart: ``successes``, ``final_5xx``)."""
_CLASS_STAT = "envoy_cluster_upstream_rq"
METRIC_NAMES: tuple[str, ...] = tuple(sorted({REQUESTS, DURATION, _CLASS_STAT, *ENVOY_CLUSTER_STATS, "up"}))

FLAG_QUANTITIES: Mapping[str, str] = {
    "UT": "route_timeouts",
    "URX": "retry_limit_exceeded",
    "UH": "no_healthy_host",
    "UF": "connect_failures",
}
"""Envoy's response flag on a source-reported request → the upstream quantity it adds one to. ``UO`` is
not among them: Envoy sets it both when the pending queue refuses a request (no attempt made) and when
the retry breaker refuses a retry (attempts made), so only the sidecar's own cluster stats tell the two
apart (``upstream_rq_pending_overflow``, ``upstream_rq_retry_overflow``)."""
_NO_ATTEMPT = frozenset({"FI", "UH", "NR"})
"""Flags of a request the caller's sidecar answered itself: no upstream answer to count."""

_SEP = "/"
"""Between the parts of a counter key (no service, version or quantity name holds one)."""


def _key(*parts: str) -> str:
    return _SEP.join(parts)


def _flags(labels: Mapping[str, str]) -> set[str]:
    text = labels.get("response_flags", "-")
    return set() if text in ("", "-") else set(text.split(","))


def _class(labels: Mapping[str, str]) -> str | None:
    """``2xx`` for a response code 200..299; None for 0 (no response: the caller went away)."""
    code = labels.get("response_code", "")
    return f"{code[0]}xx" if len(code) == 3 and code.isdigit() and code[0] in "12345" else None


def _known(labels: Mapping[str, str], *names: str) -> str:
    """The first of the labels that holds a value: Istio writes ``unknown`` where it has no peer metadata
    (a request its sidecar answered itself, ``UH``), which is no value."""
    return next((v for n in names if (v := labels.get(n, "")) and v != "unknown"), "")


def _service(labels: Mapping[str, str], side: str) -> str:
    """The service of one end: its pod's ``app`` label (what the topology selects pods by), else its
    canonical service, else the Kubernetes Service called (``destination_service_name``) or the workload."""
    fallback = "service_name" if side == "destination" else "workload"
    return _known(labels, f"{side}_app", f"{side}_canonical_service", f"{side}_{fallback}")


def _version(labels: Mapping[str, str], side: str) -> str:
    return _known(labels, f"{side}_version", f"{side}_canonical_revision") or "unknown"


def _cluster_upstream(cluster: str, subsets: Mapping[tuple[str, str], str]) -> tuple[str, str] | None:
    """``outbound|9080|v1|reviews.shop.svc.cluster.local`` → (reviews, v1), a subset named otherwise
    (``stable``) mapped to the version its labels select, and a cluster without a subset to version ``""``
    (every version at once); None for an inbound cluster. A trailing ``;`` (istiod's ``alt_stat_name``) is
    cut off."""
    parts = cluster.rstrip(";").split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return None
    service = parts[3].split(".", 1)[0]
    return service, subsets.get((service, parts[2]), parts[2])


class IstioViews(PodViews):
    """One instant of every pod, its series turned into counter keys the naming reads (see the module).

    ``services`` are the environment's; a source-reported request of a workload outside them is the
    gateway's when it goes to ``entry``, else not the mesh's (another team's pod in the namespace)."""

    def __init__(self, services: frozenset[str], entry: str, gateway: str, info: dict[str, NodeInfo],
                 seen: dict[str, float] | None = None, subsets: Mapping[tuple[str, str], str] | None = None,
                 covered: set[str] | None = None, targets: dict[str, str] | None = None) -> None:
        super().__init__(seen if seen is not None else {}, targets if targets is not None else {})
        self.services, self.entry, self.gateway = services, entry, gateway
        self.info = info
        """The source's nodes, each learnt from its first series (shared: a node once seen stays known)."""
        self.subsets = dict(subsets or {})
        self.covered = covered if covered is not None else set()
        """Callees some pod's sidecar exports cluster stats for (shared with the naming, which then takes
        every pod's upstream counters to them from those stats only)."""

    def _node(self, node: str, service: str, version: str) -> None:
        if node not in self.info:
            self.info[node] = NodeInfo(node, service, version)

    def add(self, node: str, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        if not self.pinned(node, name, labels, ts, value):
            return
        self.mark(node, ts)
        if name in (REQUESTS, DURATION):
            self._istio(node, name, labels, value)
        elif name == _CLASS_STAT:
            up = _cluster_upstream(labels.get("cluster_name", ""), self.subsets)
            quantity = {"2xx": "successes", "5xx": "final_5xx"}.get(labels.get("response_code_class", ""))
            if up is not None and quantity:
                self.covered.add(up[0])
                self.count(node, _key("envoy", *up, quantity), value)
        elif (quantity := ENVOY_CLUSTER_STATS.get(name)) is not None:
            up = _cluster_upstream(labels.get("cluster_name", ""), self.subsets)
            if up is not None:
                self.covered.add(up[0])
                self.count(node, _key("envoy", *up, quantity), value)

    def _istio(self, node: str, name: str, labels: Mapping[str, str], value: float) -> None:
        reporter = labels.get("reporter")
        if reporter == "destination":
            self._node(node, _service(labels, "destination"), _version(labels, "destination"))
            listener = ("inbound", "")
        elif reporter == "source":
            caller, callee = _service(labels, "source"), _service(labels, "destination")
            if caller in self.services:
                self._node(node, caller, _version(labels, "source"))
                listener = ("outbound", callee)
            elif callee == self.entry and "/" in node:  # a pod of a gateway namespace, not of the mesh's
                self._node(node, self.gateway, self.gateway)
                listener = ("ingress", "")
            else:
                return
            if name == REQUESTS:
                self._upstream(node, callee, _version(labels, "destination"), labels, value)
        else:
            return
        if name == DURATION:
            le = labels.get("le")
            if le:
                hist = self.buckets.setdefault(node, {}).setdefault(_key("latency", *listener), {})
                hist[float(le)] = hist.get(float(le), 0.0) + value
            return
        self.count(node, _key("listener", *listener, "completed"), value)
        if (cls := _class(labels)) is not None:
            self.count(node, _key("listener", *listener, cls), value)

    def _upstream(self, node: str, callee: str, version: str, labels: Mapping[str, str], value: float) -> None:
        flags = _flags(labels)
        for flag in flags:
            if (quantity := FLAG_QUANTITIES.get(flag)) is not None:
                self.count(node, _key("istio", callee, version, quantity), value)
        if flags & _NO_ATTEMPT:
            return
        quantity = {"2xx": "successes", "5xx": "final_5xx"}.get(_class(labels) or "")
        if quantity:
            self.count(node, _key("istio", callee, version, quantity), value)


def _listener(side: str, callee: str) -> Listener:
    if side == "inbound":
        return Listener("inbound")
    if side == "ingress":
        return Listener("ingress")
    return Listener("outbound", callee)


class IstioTelemetryNaming:
    """Reads the counter keys of :class:`IstioViews` into the vocabulary.

    The upstream counters to a callee come from one family for every pod: the sidecars' cluster stats
    (``envoy/…``) once any pod exports them for that callee (``covered``), else the standard metrics
    (``istio/…``). Mixing them would pair one pod's attempts with another's answers (pods of one version
    annotated, a rollout half done); a pod that exports none then adds no upstream counters to that callee,
    and the edge is judged on the pods that do."""

    def __init__(self, covered: set[str] | None = None) -> None:
        self.covered = covered if covered is not None else set()

    def read(self, stats: Mapping[str, float], hists: Mapping[str, Bins] | None = None,
             hosts: HostStats | None = None) -> NodeQuantities:
        out = NodeQuantities()
        envoy: dict[Upstream, dict[str, float]] = {}
        istio: dict[Upstream, dict[str, float]] = {}
        for key, value in stats.items():
            family, *rest = key.split(_SEP)
            if family == "listener" and len(rest) == 3:
                side, callee, quantity = rest
                counters = out.listeners.setdefault(_listener(side, callee), {})
                counters[quantity] = counters.get(quantity, 0.0) + value
            elif family in ("envoy", "istio") and len(rest) == 3:
                table = envoy if family == "envoy" else istio
                table.setdefault(Upstream(rest[0], rest[1]), {})[rest[2]] = value
        for up, counters in envoy.items():
            out.upstream[up] = dict(counters)
        for up, counters in istio.items():
            if up.callee not in self.covered:
                out.upstream[up] = dict(counters)
        for key, bins in (hists or {}).items():
            family, *rest = key.split(_SEP)
            if family == "latency" and len(rest) == 2:
                out.latency[_listener(rest[0], rest[1])] = list(bins)
        return out


class IstioTelemetrySource(PodSource):
    """Snapshots of every pod of ``namespace`` that Prometheus scrapes (and of the gateway's namespaces),
    from Istio's standard metrics and its sidecars' Envoy stats where exported."""

    metric_names = METRIC_NAMES
    scraped_how = ("each pod's merged metrics (:15020/stats/prometheus, Istio's prometheus.io annotations) with the "
                   "labels namespace and pod")

    def __init__(self, url: str, namespace: str, services: Sequence[str], entry: str, interval_s: float,
                 *, gateway: str = "gateway", gateway_namespaces: Sequence[str] = ("istio-system", "istio-ingress"),
                 subsets: Mapping[tuple[str, str], str] | None = None, wait_s: float | None = None) -> None:
        self.services = frozenset(services)
        self.entry, self.gateway = entry, gateway
        self._subsets = dict(subsets or {})
        self._covered: set[str] = set()
        super().__init__(url, namespace, interval_s, IstioTelemetryNaming(self._covered),
                         other_namespaces=gateway_namespaces, wait_s=wait_s)

    def scrape(self) -> Snapshot:
        """A snapshot whose naming holds the coverage of this instant: which callees' counters come from the
        sidecars' cluster stats is then the same whenever a window ending here is read."""
        snap = super().scrape()
        snap.naming = IstioTelemetryNaming(set(self._covered))
        return snap

    def views(self) -> IstioViews:
        return IstioViews(self.services, self.entry, self.gateway, self._info, self._seen, self._subsets,
                          self._covered, self._pod_targets)
