"""Istio sidecar metrics as a pod's merged endpoint (``:15020/stats/prometheus``) exposes them, for tests of
the cluster's metric source: series shaped as Istio's stats plugin labels them (every standard label,
in its order), and Envoy cluster stats as Istio's bootstrap tags them (``cluster_name``,
``response_code_class``).

A :class:`Pod` holds its series' values; :class:`Exporter` serves every pod's at ``/pod/<name>`` so that
a real Prometheus scrapes them as it scrapes pods (labels ``namespace`` and ``pod`` from its config).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LE = ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000",
      "60000", "300000", "600000", "1.8e+06", "3.6e+06", "+Inf")
"""Istio's default buckets of ``istio_request_duration_milliseconds``."""


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    app: str
    version: str

    def labels(self, side: str) -> list[tuple[str, str]]:
        sa = "istio-ingressgateway-service-account" if self.app == "istio-ingressgateway" else f"bookinfo-{self.app}"
        return [(f"{side}_workload", self.name), (f"{side}_workload_namespace", self.namespace),
                (f"{side}_principal", f"spiffe://cluster.local/ns/{self.namespace}/sa/{sa}"),
                (f"{side}_app", self.app), (f"{side}_version", self.version),
                (f"{side}_cluster", "Kubernetes")]


def request_labels(reporter: str, src: Workload, dst: Workload, code: int, flags: str = "-") -> str:
    """The label set of one ``istio_requests_total`` series, in the stats plugin's order."""
    pairs = [("reporter", reporter), *src.labels("source"),
             *dst.labels("destination")[:5], ("destination_service", f"{dst.app}.{dst.namespace}.svc.cluster.local"),
             ("destination_service_name", dst.app), ("destination_service_namespace", dst.namespace),
             ("destination_cluster", "Kubernetes"), ("request_protocol", "http"), ("response_code", str(code)),
             ("grpc_response_status", ""), ("response_flags", flags),
             ("connection_security_policy", "mutual_tls" if reporter == "destination" else "unknown"),
             ("source_canonical_service", src.app), ("destination_canonical_service", dst.app),
             ("source_canonical_revision", src.version), ("destination_canonical_revision", dst.version)]
    return ",".join(f'{k}="{v}"' for k, v in pairs)


def cluster_name(dst: Workload, port: int = 9080) -> str:
    return f"outbound|{port}|{dst.version}|{dst.app}.{dst.namespace}.svc.cluster.local"


@dataclass
class Pod:
    """One pod's series: ``requests`` per label set, ``durations`` per label set as cumulative bucket
    counts, ``envoy`` per (metric name, label set)."""

    name: str
    namespace: str
    requests: dict[str, float] = field(default_factory=dict)
    durations: dict[str, list[float]] = field(default_factory=dict)
    envoy: dict[tuple[str, str], float] = field(default_factory=dict)

    def count(self, reporter: str, src: Workload, dst: Workload, code: int, n: int, *, flags: str = "-",
              ms: float = 3.0) -> None:
        """``n`` more requests of ``reporter``'s view, each taking ``ms``."""
        labels = request_labels(reporter, src, dst, code, flags)
        self.requests[labels] = self.requests.get(labels, 0) + n
        buckets = self.durations.setdefault(labels, [0.0] * len(LE))
        for i, le in enumerate(LE):
            if le == "+Inf" or ms <= float(le):
                buckets[i] += n

    def envoy_stat(self, name: str, dst: Workload, n: float, **extra: str) -> None:
        labels = ",".join([*(f'{k}="{v}"' for k, v in extra.items()), f'cluster_name="{cluster_name(dst)}"'])
        self.envoy[(name, labels)] = self.envoy.get((name, labels), 0) + n

    def exposition(self) -> str:
        lines = ["# TYPE istio_requests_total counter"]
        lines += [f"istio_requests_total{{{labels}}} {value:g}" for labels, value in self.requests.items()]
        lines.append("# TYPE istio_request_duration_milliseconds histogram")
        for labels, buckets in self.durations.items():
            lines += [f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} {n:g}'
                      for le, n in zip(LE, buckets, strict=True)]
            lines.append(f"istio_request_duration_milliseconds_count{{{labels}}} {buckets[-1]:g}")
        for (name, labels), value in sorted(self.envoy.items()):
            lines.append(f"{name}{{{labels}}} {value:g}")
        lines.append("envoy_server_live 1")
        return "\n".join(lines) + "\n"


class Exporter:
    """Serves each pod's exposition at ``/pod/<name>`` on 127.0.0.1 until :meth:`close`."""

    def __init__(self, pods: list[Pod]) -> None:
        self.pods = {p.name: p for p in pods}
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pod = exporter.pods.get(self.path.rpartition("/")[2].split("?")[0])
                if pod is None:
                    self.send_error(404)
                    return
                with exporter.lock:
                    body = pod.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def scrape_config(self, interval: str) -> dict[str, Any]:
        """A Prometheus config scraping every pod with its ``namespace`` and ``pod`` labels."""
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [{
                "job_name": "kubernetes-pods",
                "static_configs": [{"targets": [f"127.0.0.1:{self.port}"],
                                    "labels": {"__metrics_path__": f"/pod/{p.name}", "namespace": p.namespace,
                                               "pod": p.name}} for p in self.pods.values()],
            }],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
