"""Linkerd proxy metrics as its proxies expose them on ``:4191/metrics`` (series names and labels from
reference/linkerd/linkerd-semantics.md §7, Linkerd edge-26.8.3 / proxy v2.366.0), for tests of the
cluster's metric source. Served by tests/istiometrics.py's :class:`Exporter`, scraped by a real Prometheus
that labels each pod as linkerd-viz's does: ``namespace``, ``pod``, and the pod's ``app`` and ``version``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from istiometrics import Exporter

__all__ = ["LinkerdExporter", "ProxyPod"]

ROUTE_LE = ("0.05", "0.5", "1.0", "10.0", "+Inf")
"""Buckets of ``outbound_http_route_request_duration_seconds``."""
INBOUND_LE = ("1", "2", "3", "4", "5", "10", "20", "30", "40", "50", "100", "200", "300", "400", "500", "1000",
              "2000", "3000", "4000", "5000", "10000", "20000", "30000", "40000", "50000", "+Inf")
"""Buckets of ``response_latency_ms``."""


def _labels(pairs: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in pairs.items())


def parent(callee: str, namespace: str = "shop", port: int = 9080) -> dict[str, str]:
    return {"parent_group": "core", "parent_kind": "Service", "parent_namespace": namespace, "parent_name": callee,
            "parent_port": str(port), "parent_section_name": ""}


def route(name: str = "http", kind: str = "default", namespace: str = "") -> dict[str, str]:
    """The synthesized default route (``route_kind="default"``), or an HTTPRoute."""
    group = "" if kind == "default" else "gateway.networking.k8s.io"
    return {"route_group": group, "route_kind": kind, "route_namespace": namespace, "route_name": name}


def backend(name: str, namespace: str = "shop", port: int = 9080) -> dict[str, str]:
    return {"backend_group": "core", "backend_kind": "Service", "backend_namespace": namespace, "backend_name": name,
            "backend_port": str(port), "backend_section_name": ""}


@dataclass
class ProxyPod:
    """One meshed pod's proxy: counters and gauges per (metric, label set), histograms as bucket counts."""

    name: str
    namespace: str
    app: str
    version: str
    series: dict[tuple[str, str], float] = field(default_factory=dict)
    histograms: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, metric: str, labels: dict[str, str], n: float) -> None:
        key = (metric, _labels(labels))
        self.series[key] = self.series.get(key, 0.0) + n

    def set(self, metric: str, labels: dict[str, str], value: float) -> None:
        self.series[(metric, _labels(labels))] = value

    def observe(self, metric: str, bounds: tuple[str, ...], labels: dict[str, str], n: int, value: float) -> None:
        buckets = self.histograms.setdefault((metric, _labels(labels)), [0.0] * len(bounds))
        for i, le in enumerate(bounds):
            if le == "+Inf" or value <= float(le):
                buckets[i] += n

    def requests(self, callee: str, status: int, n: int, *, error: str = "", seconds: float = 0.02,
                 via: dict[str, str] | None = None) -> None:
        """``n`` requests of this pod's app to ``callee``, finally answered ``status`` (0: none)."""
        labels = {**parent(callee), **(via or route()), "hostname": "", "http_status": str(status or ""),
                  "error": error}
        self.add("outbound_http_route_request_statuses_total", labels, n)
        self.observe("outbound_http_route_request_duration_seconds", ROUTE_LE,
                     {**parent(callee), **(via or route()), "hostname": ""}, n, seconds)

    def attempts(self, callee: str, to: str, status: int, n: int, *, via: dict[str, str] | None = None) -> None:
        """``n`` attempts dispatched to backend ``to`` for ``callee``, answered ``status``."""
        labels = {**parent(callee), **(via or route()), **backend(to)}
        self.add("outbound_http_route_backend_requests_total", labels, n)
        self.add("outbound_http_route_backend_response_statuses_total", {**labels, "http_status": str(status),
                                                                         "error": ""}, n)

    def retries(self, callee: str, metric: str, n: int, *, via: dict[str, str] | None = None) -> None:
        self.add(f"outbound_http_route_retry_{metric}_total", {**parent(callee), **(via or route()), "hostname": ""}, n)

    def inbound(self, status: int, n: int, ms: float = 3.0) -> None:
        """``n`` requests this pod's proxy answered its callers with ``status``."""
        common = {"direction": "inbound", "tls": "true", "srv_kind": "default", "srv_name": "all-unauthenticated"}
        self.add("request_total", common, n)
        self.add("response_total", {**common, "status_code": str(status),
                                    "classification": "failure" if status >= 500 else "success"}, n)
        self.observe("response_latency_ms", INBOUND_LE, {**common, "status_code": str(status)}, n, ms)

    def exposition(self) -> str:
        lines = []
        for (metric, labels), value in sorted(self.series.items()):
            lines.append(f"{metric}{{{labels}}} {value:g}")
        for (metric, labels), buckets in sorted(self.histograms.items()):
            bounds = ROUTE_LE if metric.startswith("outbound") else INBOUND_LE
            lines += [f'{metric}_bucket{{{labels},le="{le}"}} {n:g}' for le, n in zip(bounds, buckets, strict=True)]
            lines.append(f"{metric}_count{{{labels}}} {buckets[-1]:g}")
        lines.append("process_start_time_seconds 1")
        return "\n".join(lines) + "\n"


class LinkerdExporter(Exporter):
    """Each proxy's metrics at ``/pod/<name>``, scraped as linkerd-viz's ``linkerd-proxy`` job labels pods."""

    def __init__(self, pods: list[ProxyPod]) -> None:
        super().__init__(pods)  # type: ignore[arg-type]  # duck-typed: name, namespace, exposition()
        self.proxies = {p.name: p for p in pods}

    def scrape_config(self, interval: str) -> dict[str, Any]:
        config = super().scrape_config(interval)
        job = config["scrape_configs"][0]
        job["job_name"] = "linkerd-proxy"
        for static in job["static_configs"]:
            pod = self.proxies[static["labels"]["pod"]]
            static["labels"] |= {"app": pod.app, "version": pod.version}
        return config
