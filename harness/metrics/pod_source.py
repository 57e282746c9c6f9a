"""What a metric source of a cluster's pods shares, whatever the mesh: each pod of the namespace that the
cluster's Prometheus scrapes is a node, sampled as :class:`~harness.metrics.prometheus.PrometheusSource`
samples a local Envoy (a window reads the increase between two samples of the same pod inside it).

The pods are found in the samples, labelled ``namespace`` and ``pod`` (as Istio's sample Prometheus,
linkerd-viz's and the Prometheus operator's pod monitors all label them), so a pod that replaces a killed
one is a new node from its first scrape, and a deleted one is no longer waited for. A mesh's own source
(:mod:`~harness.metrics.istio_telemetry`, :mod:`~harness.metrics.linkerd_telemetry`) says which series it
reads (:attr:`metric_names`) and what they mean (:meth:`views`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from harness._errors import MeshError
from harness.metrics.prometheus import PrometheusSource, SampleViews, regex_literal
from harness.metrics.snapshot import NodeInfo

__all__ = ["PodSource", "PodViews", "prometheus_url"]


class PodViews(SampleViews):
    """The samples of one instant of every pod, each pod read through one scrape job.

    A pod scraped by two jobs (Istio's merged :15020 and Envoy's :15090, say) exports the same counters
    twice: the first job a pod is seen under is the one it is read through (``targets``, shared with the
    source). Not the instance either: a StatefulSet's pod comes back under its name with a new address.
    """

    def __init__(self, seen: dict[str, float], targets: dict[str, str]) -> None:
        super().__init__()
        self.seen = seen
        """Per node, its latest counter sample (shared: which pods still report)."""
        self.targets = targets

    def pinned(self, node: str, name: str, labels: Mapping[str, str], ts: float, value: float) -> bool:
        """Whether a sample is to be read as the pod's: ``up`` is handled here (and is not); a sample of
        another job than the pod's is not."""
        target = labels.get("job", "")
        if name == "up":
            if self.targets.get(node, target) == target:
                super().add(node, name, labels, ts, value)
            return False
        return self.targets.setdefault(node, target) == target

    def mark(self, node: str, ts: float) -> None:
        """The pod sampled at ``ts`` (it reports, and this view holds it)."""
        self.at[node] = max(self.at.get(node, ts), ts)
        self.seen[node] = max(self.seen.get(node, ts), ts)

    def count(self, node: str, key: str, value: float) -> None:
        counters = self.counters.setdefault(node, {})
        counters[key] = counters.get(key, 0.0) + value


def prometheus_url(env: Any, env_path: Any, mesh: str, whose: str) -> str:
    """The cluster's Prometheus a driver reads (``metrics.url`` with ``source: prometheus``); MeshError
    saying what to write when there is none. ``whose``: which Prometheus that is, for the message."""
    url = env.spec.metrics.url
    if env.spec.metrics.source != "prometheus" or not url:
        raise MeshError(f"mesh: {mesh} reads the mesh through the cluster's Prometheus ({whose}): write metrics: "
                        f"{{source: prometheus, url: http://127.0.0.1:9090}} (a port-forward of it) in {env_path}")
    return str(url)


class PodSource(PrometheusSource):
    """Snapshots of every pod of ``namespace`` (and of ``other_namespaces``, named ``ns/pod``) that the
    Prometheus at ``url`` scrapes."""

    scraped_how = "each pod's metrics, with the labels namespace and pod"
    """What the Prometheus must scrape, for :meth:`check`'s message."""

    def __init__(self, url: str, namespace: str, interval_s: float, naming: Any, *,
                 other_namespaces: Sequence[str] = (), wait_s: float | None = None) -> None:
        self.namespace = namespace
        self.namespaces = (namespace, *[n for n in other_namespaces if n != namespace])
        self._info: dict[str, NodeInfo] = {}
        self._seen: dict[str, float] = {}
        self._pod_targets: dict[str, str] = {}
        super().__init__(url, [], [], interval_s, naming, wait_s=wait_s)
        self._targets = f'namespace=~"{"|".join(regex_literal(n) for n in self.namespaces)}",pod!=""'
        self._selector = f'{{__name__=~"{"|".join(self.metric_names)}",{self._targets}}}'

    def node_of(self, labels: Mapping[str, str]) -> str | None:
        """The pod a series was scraped from; None for another namespace, or for another job than the one
        the pod is read through (so that its scrapes are waited for through that job alone)."""
        pod, namespace = labels.get("pod"), labels.get("namespace")
        if not pod or namespace not in self.namespaces:
            return None
        node = pod if namespace == self.namespace else f"{namespace}/{pod}"
        job = self._pod_targets.get(node)
        return node if job is None or job == labels.get("job", "") else None

    def expected_nodes(self) -> set[str]:
        """The pods seen so far that still report (a sample within the last three scrape intervals): a
        snapshot waits for a sample of each (and :meth:`last_scrapes` stops waiting for a deleted one)."""
        recent = time.time() - 3 * self.interval_s - 2.0
        seen = dict(self._seen)  # copies: the background reader adds pods while the runner asks
        return {node for node in list(self._info) if seen.get(node, 0.0) > recent}

    def last_scrapes(self, at: float) -> dict[str, float]:
        """As for Envoys; and a pod Prometheus no longer scrapes at all (deleted: its target gone) counts as
        scraped for ever, so that no snapshot waits for it."""
        out = super().last_scrapes(at)
        targets = {node for item in self.query(f"up{{{self._targets}}}", at)
                   if (node := self.node_of(item.get("metric", {}))) is not None}
        for node in self.expected_nodes() - targets:
            out[node] = math.inf
        return out

    @property
    def node_info(self) -> dict[str, NodeInfo]:
        return dict(self._info)

    def check(self) -> None:
        """Refuse to measure through a Prometheus that does not see the mesh: unreachable, or scraping no
        pod of the namespace (no traffic yet is fine). Then one snapshot, so that the first window waits
        for every pod that reports."""
        try:
            ups = self.query(f'up{{namespace="{self.namespace}",pod!=""}}', time.time())
        except Exception as exc:
            raise MeshError(f"Prometheus at {self.url} cannot be queried: {type(exc).__name__}: {exc}") from None
        if not ups:
            raise MeshError(f"Prometheus at {self.url} scrapes no pod of namespace {self.namespace}: it must scrape "
                            f"{self.scraped_how}")
        self.scrape()
