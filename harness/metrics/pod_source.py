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
from harness.metrics.prometheus import PrometheusSource, regex_literal
from harness.metrics.snapshot import NodeInfo

__all__ = ["PodSource"]


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
