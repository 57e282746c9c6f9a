"""The static part of an Envoy that istiod configures: who it is, where istiod is, where secrets come from.

pilot-agent normally writes this bootstrap; here the harness writes the parts istiod relies on. istiod
reads the proxy's identity from the node id (``sidecar~IP~POD.NS~NS.svc.cluster.local``, ``router~...``
for a gateway) and its metadata (pkg/model/proxy.go: ``NAMESPACE``, ``LABELS``, ``INSTANCE_IPS``,
``INTERCEPTION_MODE``, ...). Listeners and clusters then come over ADS from istiod; certificates over
SDS from the ``sds-grpc`` cluster, which the harness serves from its own CA (pilot-agent's job in a pod).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ISTIO_PROXY_VERSION", "bootstrap", "node_id"]

ISTIO_PROXY_VERSION = "1.31.0"
"""What the proxies tell istiod they are (the pinned tree's VERSION is 1.31): istiod decides which features a
proxy gets from this version."""

HTTP2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def node_id(kind: str, ip: str, name: str, namespace: str) -> str:
    """``sidecar~IP~NAME.NS~NS.svc.cluster.local`` (``kind`` is ``sidecar`` or ``router``)."""
    return f"{kind}~{ip}~{name}.{namespace}~{namespace}.svc.cluster.local"


def _static_cluster(name: str, address: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "typed_extension_protocol_options": HTTP2,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": address, "port_value": port}}}}]}]}}


def _sds_cluster(socket: Path) -> dict[str, Any]:
    return {"name": "sds-grpc", "type": "STATIC", "connect_timeout": "1s", "typed_extension_protocol_options": HTTP2,
            "load_assignment": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"pipe": {"path": str(socket)}}}}]}]}}


def bootstrap(*, kind: str, ip: str, name: str, namespace: str, labels: dict[str, str], service_account: str,
              admin_port: int, istiod_port: int, sds_socket: Path, prometheus: bool = False) -> dict[str, Any]:
    """One proxy's bootstrap: admin on 127.0.0.1, ADS from istiod at 127.0.0.1:``istiod_port``, SDS from
    the harness at ``sds_socket``, no interception (the Sidecar resources bind every listener)."""
    out: dict[str, Any] = {
        "node": {
            "id": node_id(kind, ip, name, namespace),
            "cluster": f"{labels.get('app', name)}.{namespace}",
            "metadata": {
                "NAMESPACE": namespace, "LABELS": labels, "INSTANCE_IPS": ip, "INTERCEPTION_MODE": "NONE",
                "NAME": name, "WORKLOAD_NAME": labels.get("app", name), "SERVICE_ACCOUNT": service_account,
                "CLUSTER_ID": "Kubernetes", "MESH_ID": "cluster.local", "ISTIO_VERSION": ISTIO_PROXY_VERSION,
            },
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "layered_runtime": {"layers": [
            {"name": "static", "static_layer": {"upstream.base_retry_backoff_ms": 25}},
            {"name": "admin", "admin_layer": {}}]},
        "stats_flush_on_admin": True,
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [_static_cluster("xds-grpc", "127.0.0.1", istiod_port),
                                          _sds_cluster(sds_socket)]},
    }
    if prometheus:
        from harness.mesh.local.envoy_config import LATENCY_BUCKETS_MS

        out["stats_config"] = {"histogram_bucket_settings": [{"match": {"suffix": "rq_time"},
                                                              "buckets": list(LATENCY_BUCKETS_MS)}]}
    return out
