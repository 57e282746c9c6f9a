"""Metric source ``prometheus``: every sidecar counter read back through PromQL.

Prometheus scrapes each Envoy's ``/stats/prometheus`` on its own schedule, so a counter read "at" an
instant is really the last sample before it, taken up to one scrape interval earlier; a window that
started there would count the end of the previous phase. So a snapshot at ``t`` is taken only once
Prometheus holds a sample of every node *after* ``t`` (scrape lag is waited for, never slept away), and
it carries two views of each node, from one range query of the raw samples around ``t``:

* as the end of a window: each node's last sample at or before ``t``;
* as the start of one (:attr:`Snapshot.opening`): each node's first sample after ``t``.

A window then reads exactly the increase between two samples inside it (up to two scrape intervals
shorter than the window: :attr:`Snapshot.span` says how long), never a burst from a neighbouring phase.

Prometheus names are Envoy's with its tags cut out into labels (``cluster.out_ratings_v1.upstream_rq_5xx``
is ``envoy_cluster_upstream_rq_xx{envoy_cluster_name="out_ratings_v1",envoy_response_code_class="5"}``).
:func:`envoy_stat` puts the ones the vocabulary reads back together, so that the mesh's
:class:`~harness.metrics.envoy_names.EnvoyNaming` maps them exactly as it maps the admin endpoint's, and
the verdicts are the same whichever source read the counters. Latency comes from the ``_bucket`` series
(bins between consecutive ``le`` bounds), each host's requests and ejection from Envoy's per-endpoint
stats (``envoy_cluster_endpoint_*``, on when the cluster sets ``track_cluster_stats.per_endpoint_stats``).
The demo apps' own counters (attempts seen, requests in flight) are the workload's ground truth, not
mesh metrics, and are read from the apps as with the ``envoy`` source.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness._errors import MeshError
from harness.metrics.envoy import read_apps
from harness.metrics.envoy_names import HISTOGRAM_SUFFIX, LISTENER_STATS, TLS_STATS, UPSTREAM_STATS, EnvoyNaming
from harness.metrics.snapshot import Bins, NodeInfo, Snapshot
from harness.metrics.targets import TargetClients

__all__ = ["METRIC_NAMES", "PrometheusSource", "SampleViews", "bins_from_buckets", "envoy_stat", "prometheus_client",
           "regex_literal", "scrape_filter"]

QUERY_TIMEOUT_S = 10
"""How long one query may take before the client gives up."""

_CLASS = "envoy_response_code_class"
_CLUSTER_LABEL = "envoy_cluster_name"
_PREFIX_LABEL = "envoy_http_conn_manager_prefix"
_LISTENER_LABEL = "envoy_listener_address"

_CLUSTER_NAMES = {f"envoy_cluster_{suffix.replace('.', '_')}": suffix for suffix in UPSTREAM_STATS
                  if not suffix.endswith("xx")}
"""Prometheus name → Envoy cluster stat suffix, for every suffix without a status class in it."""
_LISTENER_NAMES = {f"envoy_http_{suffix}": suffix for suffix in LISTENER_STATS if not suffix.endswith("xx")}
_TLS_LISTENER_NAMES = {f"envoy_listener_{suffix.replace('.', '_')}": suffix for suffix in TLS_STATS}
_ENDPOINT_NAMES = {"envoy_cluster_endpoint_rq_total": "rq_total", "envoy_cluster_endpoint_rq_error": "rq_error",
                   "envoy_cluster_endpoint_healthy": "healthy"}
_HISTOGRAM = f"envoy_http_{HISTOGRAM_SUFFIX}_bucket"

METRIC_NAMES: tuple[str, ...] = tuple(sorted({
    *_CLUSTER_NAMES, "envoy_cluster_upstream_rq_xx", *_LISTENER_NAMES, "envoy_http_downstream_rq_xx",
    *_TLS_LISTENER_NAMES, *_ENDPOINT_NAMES, _HISTOGRAM, "up",
}))
"""Every Prometheus metric the source reads (one ``__name__`` regex selects them all). ``up`` is among
them so that a node scraped successfully is in the snapshot even when it exports none of the others yet
(Envoy's ``usedonly`` leaves out a counter never incremented: an idle sidecar), as the admin source
counts an idle node with no counters."""


def envoy_stat(name: str, labels: Mapping[str, str]) -> str | None:
    """The Envoy stat name a Prometheus counter or gauge stands for; None for one the vocabulary does not
    read (histogram buckets and per-endpoint stats are not stats of this kind: see the source)."""
    if name == "envoy_cluster_upstream_rq_xx":
        cluster, cls = labels.get(_CLUSTER_LABEL), labels.get(_CLASS)
        return f"cluster.{cluster}.upstream_rq_{cls}xx" if cluster and cls else None
    if name == "envoy_http_downstream_rq_xx":
        prefix, cls = labels.get(_PREFIX_LABEL), labels.get(_CLASS)
        return f"http.{prefix}.downstream_rq_{cls}xx" if prefix and cls else None
    if (suffix := _CLUSTER_NAMES.get(name)) is not None:
        cluster = labels.get(_CLUSTER_LABEL)
        return f"cluster.{cluster}.{suffix}" if cluster else None
    if (suffix := _LISTENER_NAMES.get(name)) is not None:
        prefix = labels.get(_PREFIX_LABEL)
        return f"http.{prefix}.{suffix}" if prefix else None
    if (suffix := _TLS_LISTENER_NAMES.get(name)) is not None:
        address = labels.get(_LISTENER_LABEL)
        return f"listener.{address}.{suffix}" if address else None
    return None


def bins_from_buckets(cumulative: Mapping[float, float]) -> Bins:
    """Prometheus's cumulative ``le`` buckets as bins (lower bound, width, count) between consecutive
    bounds, so that a window subtracts them like the admin endpoint's; the ``+Inf`` bucket becomes a bin
    as wide as its lower bound (nothing the verdicts read lies there)."""
    bins: Bins = []
    lower, below = 0.0, 0.0
    for le in sorted(cumulative):
        count = cumulative[le]
        upper = le if math.isfinite(le) else max(2 * lower, 1.0)
        bins.append((lower, upper - lower, round(count - below)))
        lower, below = upper, count
    return bins


def prometheus_client(url: str) -> Any:
    """A ``prometheus_api_client.PrometheusConnect`` to ``url``; MeshError naming the package when the
    optional dependency is missing."""
    try:
        from prometheus_api_client import PrometheusConnect
    except ImportError:
        raise MeshError("metrics: {source: prometheus} needs the Python package prometheus-api-client: "
                        "pip install prometheus-api-client (or use metrics: {source: envoy})") from None
    return PrometheusConnect(url=url, disable_ssl=True, timeout=QUERY_TIMEOUT_S)


class SampleViews:
    """Per node: the samples of one range query split at ``t`` (the last at or before it, the first after)."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[str, float]] = {}
        self.buckets: dict[str, dict[str, dict[float, float]]] = {}
        self.endpoints: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        self.at: dict[str, float] = {}

    def add(self, node: str, name: str, labels: Mapping[str, str], ts: float, value: float) -> None:
        if name == "up":
            if value == 1.0:  # a failed scrape has an up sample too, and nothing else: not this node's view
                self.at[node] = max(self.at.get(node, ts), ts)
            return
        self.at[node] = max(self.at.get(node, ts), ts)
        if name == _HISTOGRAM:
            prefix, le = labels.get(_PREFIX_LABEL), labels.get("le")
            if prefix and le:
                hist = self.buckets.setdefault(node, {}).setdefault(f"http.{prefix}.{HISTOGRAM_SUFFIX}", {})
                hist[float(le)] = value
        elif (key := _ENDPOINT_NAMES.get(name)) is not None:
            cluster, address = labels.get(_CLUSTER_LABEL), labels.get("envoy_endpoint_address")
            if cluster and address:
                self.endpoints.setdefault(node, {}).setdefault(cluster, {}).setdefault(address, {})[key] = value
        elif (stat := envoy_stat(name, labels)) is not None:
            counters = self.counters.setdefault(node, {})
            counters[stat] = counters.get(stat, 0.0) + value

    def snapshot(self, t: float, naming: EnvoyNaming, apps: dict[str, dict[str, Any]],
                 history: Sequence[Snapshot] | None) -> Snapshot:
        snap = Snapshot(t, naming=naming, history=history, apps=apps, at=dict(self.at))
        for node in self.at:
            snap.envoy[node] = self.counters.get(node, {})
            snap.hist[node] = {name: bins_from_buckets(b) for name, b in self.buckets.get(node, {}).items()}
            snap.hosts[node] = {
                cluster: {address: {"rq_total": s.get("rq_total", 0.0), "rq_error": s.get("rq_error", 0.0),
                                    "ejected": 1.0 if s.get("healthy", 1.0) < 1.0 else 0.0}
                          for address, s in by_address.items()}
                for cluster, by_address in self.endpoints.get(node, {}).items()}
        return snap


class PrometheusSource:
    """Snapshots of every sidecar through a Prometheus that scrapes them, plus the demo apps' counters.

    ``nodes`` pairs each Envoy with the ``instance`` label Prometheus gives its target (``host:port`` of
    its admin endpoint). A source of another mesh's metrics overrides :attr:`metric_names`,
    :meth:`node_of`, :meth:`expected_nodes` and :meth:`views` (:mod:`harness.metrics.istio_telemetry`).
    """

    metric_names: tuple[str, ...] = METRIC_NAMES
    scrape_hint = "it must scrape each admin endpoint's /stats/prometheus with instance=\"host:port\""
    """What a Prometheus that misses some Envoys must do instead (a refusal's last words)."""

    def __init__(self, url: str, nodes: Sequence[tuple[NodeInfo, str]], apps: Sequence[tuple[str, int]],
                 interval_s: float, naming: EnvoyNaming, *, wait_s: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.nodes = list(nodes)
        self.apps = list(apps)
        self.interval_s = interval_s
        self.naming = naming
        self.wait_s = wait_s if wait_s is not None else 3 * interval_s + 2.0
        """How long a snapshot waits for a sample of every node after its instant; a node still without
        one is left out of windows that start or end there (as a missed admin scrape is)."""
        self.history: deque[Snapshot] = deque(maxlen=3600)
        self._prom = prometheus_client(self.url)
        self._query_lock = threading.Lock()
        self._by_instance = {instance: info.id for info, instance in self.nodes}
        self._targets = f'instance=~"{"|".join(regex_literal(i) for i in self._by_instance)}"'
        """The matcher selecting this mesh's scrape targets (with ``up``, and in every query)."""
        self._selector = f'{{__name__=~"{"|".join(self.metric_names)}",{self._targets}}}'
        self._apps = TargetClients(timeout_s=2.0)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="prometheus-apps")
        self.last_error: str | None = None
        """The last query that failed (a failed query leaves a snapshot empty, which windows treat as
        every node missed)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []

    # ------------------------------------------------------------------------------ PromQL
    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        """The raw result of an instant query evaluated at ``at`` (a vector, a scalar or a matrix)."""
        with self._query_lock:  # one requests.Session, shared by the runner and the background reader
            result = self._prom.custom_query(promql, params={"time": f"{at:.3f}"})
        return list(result) if isinstance(result, list) else [result]

    def last_scrapes(self, at: float) -> dict[str, float]:
        """Per node, when Prometheus last scraped it successfully, as of ``at``.

        ``timestamp()`` of the ``up`` selector itself (of an expression such as ``up == 1`` it would give
        the evaluation time, not the scrape's: measured, Prometheus 2.42), kept only where that scrape
        succeeded (``and`` on ``up == 1``): a failed scrape records ``up`` 0 and nothing else.
        """
        out: dict[str, float] = {}
        for item in self.query(f"timestamp(up{{{self._targets}}}) and up{{{self._targets}}} == 1", at):
            node = self.node_of(item.get("metric", {}))
            if node is not None:
                out[node] = max(out.get(node, 0.0), float(item["value"][1]))
        return out

    def node_of(self, labels: Mapping[str, str]) -> str | None:
        """The node a series was scraped from (by its target's ``instance``); None for another target."""
        return self._by_instance.get(labels.get("instance", ""))

    def expected_nodes(self) -> set[str]:
        """The nodes a snapshot waits for: a sample of each after its instant."""
        return set(self._by_instance.values())

    def views(self) -> SampleViews:
        """An empty view of one instant, which the samples of a range query are added to."""
        return SampleViews()

    def _scrapes_after(self, t: float, deadline: float) -> dict[str, float] | None:
        """Ask until every node's last successful scrape is after ``t``, or until ``deadline``; the last
        answer, None if Prometheus never answered (its error in :attr:`last_error`)."""
        want = self.expected_nodes()
        scraped: dict[str, float] | None = None
        while True:
            try:
                scraped = self.last_scrapes(time.time())
            except Exception as exc:  # a slow or restarting Prometheus: try again until the deadline
                self.last_error = f"{type(exc).__name__}: {exc}"
            if scraped is not None and all(scraped.get(node, 0.0) > t for node in want):
                return scraped
            if time.time() >= deadline:
                return scraped
            time.sleep(min(0.1, self.interval_s / 5))

    # ------------------------------------------------------------------------------ snapshots
    def scrape(self) -> Snapshot:
        """The snapshot of this instant, returned once Prometheus holds samples after it."""
        t = time.time()
        apps = read_apps(self._apps, self._pool, self.apps)
        self._scrapes_after(t, t + self.wait_s)
        now = time.time()
        span = max(now - t, 0.0) + 2 * self.interval_s + 1.0
        end, start = self.views(), self.views()
        try:
            matrix = self.query(f"{self._selector}[{int(span * 1000)}ms]", now)
        except Exception as exc:  # whatever the client raises, the snapshot is just empty
            matrix = []
            self.last_error = f"{type(exc).__name__}: {exc}"
        for series in matrix:
            labels = series.get("metric", {})
            node = self.node_of(labels)
            if node is None:
                continue
            name = labels.get("__name__", "")
            samples = [(float(ts), float(v)) for ts, v in series.get("values", [])]
            before = [s for s in samples if s[0] <= t]
            after = [s for s in samples if s[0] > t]
            if before:
                end.add(node, name, labels, *before[-1])
            if after:
                start.add(node, name, labels, *after[0])
        snap = end.snapshot(t, self.naming, apps, self.history)
        snap.opening = start.snapshot(t, self.naming, apps, None)
        self.history.append(snap)
        return snap

    def check(self) -> None:
        """Refuse to measure through a Prometheus that does not see the mesh: unreachable, or not scraping
        some of its Envoys (a wrong ``url``, or targets under other ``instance`` labels). MeshError (exit 3)
        naming what is missing, rather than every sidecar verdict inconclusive for want of samples."""
        scraped = self._scrapes_after(0.0, time.time() + self.wait_s)  # a fresh mesh: its first scrapes
        if scraped is None:
            raise MeshError(f"Prometheus at {self.url} cannot be queried: {self.last_error}")
        missing = sorted(f"{node} ({instance})" for instance, node in self._by_instance.items() if node not in scraped)
        if missing:
            raise MeshError(f"Prometheus at {self.url} does not scrape {len(missing)} of the mesh's "
                            f"{len(self._by_instance)} Envoys: {', '.join(missing)}; {self.scrape_hint}")

    def on_snapshot(self, listener: Callable[[Snapshot], None]) -> None:
        """Hear each background snapshot (after it is in :attr:`history`)."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Check that Prometheus sees the mesh, then take a snapshot about every ``interval_s`` in the
        background (gauges inside windows come from these), until :meth:`stop`."""
        if self._thread is not None:
            return
        self.check()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    snap = self.scrape()
                    for listener in self._listeners:
                        listener(snap)
                except Exception as exc:  # a background snapshot that failed is one missing: never a crash
                    self.last_error = f"{type(exc).__name__}: {exc}"

        self._thread = threading.Thread(target=loop, name="prometheus-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background snapshots; waits for the one under way (its queries time out)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_s + 2 * QUERY_TIMEOUT_S + 5)
            if not self._thread.is_alive():
                self._thread = None

    def close(self) -> None:
        """Stop, then release the connections (not while a snapshot could still use them)."""
        self.stop()
        if self._thread is not None:
            return  # still stuck in a query: its daemon thread ends with the process
        self._pool.shutdown(wait=True)
        self._apps.close()
        with contextlib.suppress(Exception):
            self._prom.close()

    @property
    def node_info(self) -> dict[str, NodeInfo]:
        return {info.id: info for info, _ in self.nodes}


def regex_literal(text: str) -> str:
    """``text`` as a literal inside a PromQL regex in a double-quoted string: first escaped for RE2 (a
    backslash before each metacharacter), then for the string literal (backslashes and quotes)."""
    regex = "".join(f"\\{c}" if c in ".^$*+?()[]{}|\\" else c for c in text)
    return regex.replace("\\", "\\\\").replace('"', '\\"')


def scrape_filter(naming: EnvoyNaming) -> str:
    """The admin ``filter`` regex a Prometheus scrape of one Envoy passes, so each scrape carries only what
    the source reads (a few kilobytes, not a few hundred)."""
    return "|".join(f for f in (naming.stats_filter, naming.histogram_filter, naming.endpoint_filter) if f)
