"""Envoy configuration for the local mesh: bootstrap, CDS, LDS and SDS documents as plain dicts.

Shapes follow what was measured to work with envoy 1.40 (shared/reference/envoy-probe.md): xDS documents
on disk, read over ADS from the harness's xDS server (:func:`over_ads`; ``mesh: compose`` reads them as
filesystem xDS with ``watched_directory``), fault filters configured at 0% and driven through runtime, explicit
circuit-breaker thresholds on every cluster, and file-based SDS secrets in the ``..data`` layout.

Naming, relied upon by the metric source and the faults:
  * inbound listener/HCM ``inbound`` → cluster ``inbound_app`` (the instance's own app);
  * outbound listener/HCM ``outbound_<callee>`` → clusters ``out_<callee>_<version>`` (one per subset);
  * the gateway's listener/HCM ``gateway`` → clusters ``out_<service>_<version>``.
``_`` never occurs in a service or version name, so these names parse back unambiguously.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.mesh.local.topology import Instance, Layout
from harness.mesh.policy import ResolvedPolicy

__all__ = [
    "FAULT_KEYS",
    "bootstrap",
    "cluster_name",
    "clusters",
    "fault_runtime_keys",
    "listeners",
    "over_ads",
    "secret_files",
]

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
ROUTE_CONFIGURATION = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

FAULT_KEYS = ("abort.percent", "abort.status", "delay.percent", "delay.ms")
"""Suffixes of the runtime keys every fault filter reads; see :func:`fault_runtime_keys`."""

FAULT_DENOMINATOR = 1_000_000
"""Fault percentages are runtime integers over a MILLION, so 0.5% (5000) is expressible."""


def seconds(value: float) -> str:
    """A protobuf JSON duration exact to the nanosecond (never rounded to '0s', Envoy's 'disabled')."""
    return f"{value:.9f}".rstrip("0").rstrip(".") + "s"


def cluster_name(service: str, version: str) -> str:
    return f"out_{service}_{version}"


def fault_runtime_keys(scope: str) -> dict[str, str]:
    """Runtime keys of one fault filter: ``scope`` is ``inbound`` or ``out.<callee>``."""
    return {suffix: f"harness.fault.{scope}.{suffix}" for suffix in FAULT_KEYS}


def _source(path: Path) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
    }


ADS_SOURCE = {"ads": {}, "resource_api_version": "V3"}
XDS_CLUSTER = "harness_xds"


def over_ads(value: Any) -> Any:
    """The same configuration with every file config source read over ADS instead.

    The local mesh's xDS server (:mod:`harness.mesh.local.xds_server`) serves each Envoy exactly the
    documents these sources name, under the same resource names, so a file source and ADS are
    interchangeable resource for resource; one Envoy then holds no inotify instance at all.
    """
    if isinstance(value, dict):
        if "path_config_source" in value:
            return dict(ADS_SOURCE)
        return {k: over_ads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [over_ads(v) for v in value]
    return value


def xds_cluster(socket: Path) -> dict[str, Any]:
    """The bootstrap cluster of the harness's xDS server: gRPC (HTTP/2) on a unix socket."""
    return {
        "name": XDS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS, "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": XDS_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"pipe": {"path": str(socket)}}}}]}]},
    }


RUNTIME = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
RTDS_LAYER = "harness"


def runtime_file(layer: dict[str, Any], version: int) -> dict[str, Any]:
    """The RTDS file: one Runtime resource whose layer holds every fault key in force on this Envoy."""
    return {"version_info": str(version), "resources": [{"@type": RUNTIME, "name": RTDS_LAYER, "layer": layer}]}


LATENCY_BUCKETS_MS = (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 15, 17, 20, 25, 30, 35, 40, 50, 60, 70, 80,
                      100, 120, 150, 170, 200, 250, 300, 350, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000,
                      2500, 3000, 4000, 5000, 7500, 10000, 15000, 30000, 60000, 300000, 3600000)
"""Latency histogram bucket bounds (ms) of every Envoy of the local mesh, as Prometheus sees them."""


def bootstrap(node_id: str, node_cluster: str, admin_port: int, xds_dir: Path,
              prometheus: bool = False, admin_address: str = "127.0.0.1",
              ads_socket: Path | None = None) -> dict[str, Any]:
    """Static part of an Envoy: admin on 127.0.0.1 (``admin_address``), runtime layers, xDS from files,
    or over ADS from the harness's xDS server at ``ads_socket`` (the same documents, no file watch).

    Fault percentages live in an RTDS file layer, not the admin layer: an admin value can only be an
    integer percentage, while an RTDS value can be a FractionalPercent (0.5% is expressible), and the
    file is on disk for anyone to inspect. The admin layer stays for operators.
    """
    out: dict[str, Any] = {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "layered_runtime": {
            "layers": [
                {"name": "static", "static_layer": {"upstream.base_retry_backoff_ms": 25}},
                {"name": "rtds", "rtds_layer": {"name": RTDS_LAYER, "rtds_config": _source(xds_dir / "rtds.json")}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        # Histograms merge on a stats flush; flushing on each admin request keeps every scrape current.
        "stats_flush_on_admin": True,
        "dynamic_resources": {
            "cds_config": _source(xds_dir / "cds.json"),
            "lds_config": _source(xds_dir / "lds.json"),
        },
    }
    if prometheus:
        # Prometheus reads latency from fixed buckets; Envoy's default ones (0.5, 1, 5, 10, 25, 50, 100,
        # 250 ms...) are too coarse for a quantile near a bound, so about four per doubling instead. (The
        # admin source reads the detailed bins, which these settings do not change.)
        out["stats_config"] = {"histogram_bucket_settings": [{"match": {"suffix": "rq_time"},
                                                              "buckets": list(LATENCY_BUCKETS_MS)}]}
    if ads_socket is not None:
        out = over_ads(out)
        out["dynamic_resources"]["ads_config"] = {
            "api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
            "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}]}
        out["static_resources"] = {"clusters": [xds_cluster(ads_socket)]}
    return out


def envoy_args(bootstrap_file: Path, base_id: int, node_id: str, node_cluster: str) -> list[str]:
    """Envoy's command line after the binary, for every Envoy the harness runs (local or in a container):
    its own base id, one worker, immediate drains (a config switch is in force at once), warnings only."""
    return ["-c", str(bootstrap_file), "--base-id", str(base_id), "--concurrency", "1", "--drain-strategy",
            "immediate", "--drain-time-s", "1", "--parent-shutdown-time-s", "2", "-l", "warning",
            "--service-node", node_id, "--service-cluster", node_cluster]


def _fault_filter(scope: str) -> dict[str, Any]:
    keys = fault_runtime_keys(scope)
    zero = {"numerator": 0, "denominator": "MILLION"}
    return {
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": FAULT,
            "abort": {"http_status": 503, "percentage": zero},
            "delay": {"fixed_delay": "0.001s", "percentage": zero},
            "abort_percent_runtime": keys["abort.percent"],
            "abort_http_status_runtime": keys["abort.status"],
            "delay_percent_runtime": keys["delay.percent"],
            "delay_duration_runtime": keys["delay.ms"],
        },
    }


ACCESS_LOG_FORMAT = (
    "[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% %DURATION%ms upstream=%UPSTREAM_CLUSTER% "
    "%UPSTREAM_HOST% %UPSTREAM_TRANSPORT_FAILURE_REASON% details=%RESPONSE_CODE_DETAILS%\n"
)


def _access_log(path: Path) -> list[dict[str, Any]]:
    """Failed requests only (5xx and resets): the evidence a user needs when a verdict surprises them."""
    return [{
        "name": "envoy.access_loggers.file",
        "filter": {"status_code_filter": {"comparison": {"op": "GE", "value": {
            "default_value": 500, "runtime_key": "harness.access_log.min_status"}}}},
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}},
        },
    }]


def route_configuration(name: str, route: dict[str, Any], extra_vhost: dict[str, Any]) -> dict[str, Any]:
    """One RouteConfiguration: a single virtual host matching every domain, with ``route``."""
    return {
        "@type": ROUTE_CONFIGURATION,
        "name": name,
        "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route], **extra_vhost}],
    }


def rds_file(xds_dir: Path, name: str) -> Path:
    """Where the route configuration ``name`` of an Envoy is read from (its own RDS file)."""
    return xds_dir / f"rds_{name}.json"


def _hcm(stat_prefix: str, fault_scope: str, route: dict[str, Any] | Path, extra_vhost: dict[str, Any],
         log_dir: Path) -> dict[str, Any]:
    """An HTTP connection manager whose routes are inline (``route``), or read over RDS from the file
    ``route`` names, as route configuration ``stat_prefix``."""
    routing: dict[str, Any] = (
        {"rds": {"route_config_name": stat_prefix, "config_source": _source(route)}} if isinstance(route, Path)
        else {"route_config": {k: v for k, v in route_configuration(stat_prefix, route, extra_vhost).items()
                               if k != "@type"}}
    )
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "access_log": _access_log(log_dir / "access.log"),
            **routing,
            "http_filters": [_fault_filter(fault_scope), {"name": "envoy.filters.http.router",
                                                          "typed_config": {"@type": ROUTER}}],
            # Keep-alive clients must see config switches at once (envoy-probe.md §1).
            "common_http_protocol_options": {"idle_timeout": "60s"},
        },
    }


def _sds(name: str, file: Path) -> dict[str, Any]:
    return {"name": name, "sds_config": _source(file)}


def _common_tls(sds_dir: Path, trust_domain: str, peer_san: str | None) -> dict[str, Any]:
    match = (
        {"san_type": "URI", "matcher": {"exact": peer_san}}
        if peer_san
        else {"san_type": "URI", "matcher": {"prefix": f"spiffe://{trust_domain}/"}}
    )
    return {
        "tls_certificate_sds_secret_configs": [_sds("leaf", sds_dir / "leaf.json")],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": [match]},
            "validation_context_sds_secret_config": _sds("trust", sds_dir / "trust.json"),
        },
    }


def secret_files(cert: Path, key: str | Path, trust: Path) -> dict[str, dict[str, Any]]:
    """The two SDS files of one Envoy: its leaf (rotated by a ``..data`` rename) and the trust bundle."""
    return {
        "leaf.json": {
            "version_info": "1",
            "resources": [{
                "@type": SECRET,
                "name": "leaf",
                "tls_certificate": {
                    "certificate_chain": {"filename": str(cert)},
                    "private_key": {"filename": str(key)},
                    "watched_directory": {"path": str(cert.parent)},
                },
            }],
        },
        "trust.json": {
            "version_info": "1",
            "resources": [{
                "@type": SECRET,
                "name": "trust",
                "validation_context": {
                    "trusted_ca": {"filename": str(trust)},
                    "watched_directory": {"path": str(trust.parent)},
                },
            }],
        },
    }


def _route(callee_weights: dict[str, float], callee: str, policy: ResolvedPolicy, caller: str) -> dict[str, Any]:
    weighted = [
        {"name": cluster_name(callee, version), "weight": round(weight * 100)}
        for version, weight in callee_weights.items()
    ]
    route: dict[str, Any] = {
        "weighted_clusters": {"clusters": weighted},
        "timeout": seconds(policy.timeout_s),
    }
    if policy.retries > 0:
        conditions = [c for c in policy.retry_on if not c.isdigit()]
        codes = [int(c) for c in policy.retry_on if c.isdigit()]
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        retry: dict[str, Any] = {"retry_on": ",".join(conditions), "num_retries": policy.retries}
        if codes:
            retry["retriable_status_codes"] = codes
        if policy.per_try_timeout_s is not None:
            retry["per_try_timeout"] = seconds(policy.per_try_timeout_s)
        route["retry_policy"] = retry
    # The callee's app counts attempts per calling service from this header (retry oracle evidence).
    caller_header = {"header": {"key": "x-harness-caller", "value": caller},
                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    return {"match": {"prefix": "/"}, "route": route, "request_headers_to_add": [caller_header]}


def _tls_transport(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": kind, **config}}


def listeners(
    inst: Instance | None,
    layout: Layout,
    weights: dict[str, dict[str, float]],
    policies: dict[str, ResolvedPolicy],
    mtls: str,
    sds_dir: Path,
    trust_domain: str,
    gateway_service: str,
) -> list[dict[str, Any]]:
    """LDS resources: inbound + one outbound per callee for a sidecar, or the gateway listener.

    The routes that faults and policies change (the gateway's, each outbound listener's) are read over
    RDS (:func:`routes`), so that the listeners themselves never change after ``up``. Why: an LDS update
    replaces a listener's filter chain, and connections open on the old one keep its routes until the
    drain time closes them (``--drain-time-s 1``, measured: the first request on a kept-alive connection
    after a split change took the old route), so every route change cost a second of waiting; an RDS
    update is used by the next request on every connection. The inbound listener's route never changes
    and stays inline."""
    xds_dir = sds_dir.parent / "xds"
    if inst is None:
        return [{
            "@type": LISTENER,
            "name": "gateway",
            "address": {"socket_address": {"address": layout.bind, "port_value": layout.gateway_port}},
            "filter_chains": [{"filters": [
                _hcm("gateway", f"out.{gateway_service}", rds_file(xds_dir, "gateway"), {}, sds_dir.parent)]}],
        }]
    out: list[dict[str, Any]] = []
    inbound_route = {"match": {"prefix": "/"}, "route": {"cluster": "inbound_app", "timeout": "0s"}}
    inbound_hcm = _hcm("inbound", "inbound", inbound_route, {}, sds_dir.parent)
    plain_chain: dict[str, Any] = {"filters": [inbound_hcm]}
    tls_chain: dict[str, Any] = {
        "filters": [inbound_hcm],
        "transport_socket": _tls_transport(DOWNSTREAM_TLS, {
            "require_client_certificate": True,
            "common_tls_context": _common_tls(sds_dir, trust_domain, None),
        }),
    }
    inbound: dict[str, Any] = {
        "@type": LISTENER,
        "name": "inbound",
        "address": {"socket_address": {"address": layout.bind, "port_value": inst.inbound_port}},
    }
    if mtls == "strict":
        inbound["filter_chains"] = [tls_chain]
    elif mtls == "off":
        inbound["filter_chains"] = [plain_chain]
    else:
        inbound["listener_filters"] = [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
            },
        }]
        inbound["filter_chains"] = [{**tls_chain, "filter_chain_match": {"transport_protocol": "tls"}}]
        inbound["default_filter_chain"] = plain_chain
    out.append(inbound)
    for callee, port in inst.outbound_ports.items():
        name = f"outbound_{callee}"
        out.append({
            "@type": LISTENER,
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [
                _hcm(name, f"out.{callee}", rds_file(xds_dir, name), {}, sds_dir.parent)]}],
        })
    return out


def routes(inst: Instance | None, weights: dict[str, dict[str, float]], policies: dict[str, ResolvedPolicy],
           gateway_service: str) -> dict[str, dict[str, Any]]:
    """RDS resources by name: the gateway's route, or one per outbound listener of a sidecar (the split,
    timeout and retries of each call), each read from its own file (:func:`rds_file`)."""
    attempt_count = {"include_request_attempt_count": True}
    if inst is None:
        route = _route(weights[gateway_service], gateway_service, policies[gateway_service], "gateway")
        return {"gateway": route_configuration("gateway", route, attempt_count)}
    return {f"outbound_{callee}": route_configuration(
        f"outbound_{callee}", _route(weights[callee], callee, policies[callee], inst.service), attempt_count)
        for callee in inst.outbound_ports}


def _static_cluster(name: str, endpoints: list[tuple[str, int]], connect_timeout_s: float) -> dict[str, Any]:
    return {
        "@type": CLUSTER,
        "name": name,
        "type": "STATIC",
        "connect_timeout": seconds(connect_timeout_s),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": p}}}}
                for host, p in endpoints
            ]}],
        },
    }


def _outbound_cluster(
    callee: str, version: str, layout: Layout, policy: ResolvedPolicy, mtls: str, sds_dir: Path,
    trust_domain: str, endpoints: dict[str, int] | None = None, tls_material: str | None = None,
    endpoint_stats: bool = False,
) -> dict[str, Any]:
    name = cluster_name(callee, version)
    # An instance reached through an interposed Toxiproxy has the proxy as its endpoint; TLS goes through
    # the proxy untouched (the SAN is checked, not the address).
    interposed = endpoints or {}
    hosts = [(layout.address("toxiproxy"), interposed[i.id]) if i.id in interposed
             else (layout.address(i.id), i.inbound_port) for i in layout.of(callee, version)]
    cluster = _static_cluster(name, hosts, 1.0)
    if endpoint_stats:
        # Each host's requests and health as stats (/clusters shows them to the admin source; Prometheus
        # sees only stats): envoy_cluster_endpoint_{rq_total,rq_error,healthy}.
        cluster["track_cluster_stats"] = {"per_endpoint_stats": True}
    cluster["circuit_breakers"] = {"thresholds": [{
        "priority": "DEFAULT",
        "max_connections": policy.max_connections,
        "max_pending_requests": policy.max_pending,
        "max_requests": policy.max_requests,
        "max_retries": policy.max_retries,
        "track_remaining": True,
    }]}
    if policy.outlier is not None:
        od = policy.outlier
        cluster["outlier_detection"] = {
            "consecutive_5xx": od.consecutive_5xx,
            "interval": seconds(od.interval_s),
            "base_ejection_time": seconds(od.base_ejection_time_s),
            "max_ejection_percent": od.max_ejection_percent,
            "enforcing_consecutive_5xx": 100,
            "enforcing_success_rate": 0,
        }
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": od.min_health_percent}}
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "explicit_http_config": {"http_protocol_options": {}},
            "common_http_protocol_options": {"idle_timeout": "30s"},
        }
    }
    if mtls != "off":
        cluster["transport_socket"] = _tls_transport(UPSTREAM_TLS, {
            "sni": callee,
            "common_tls_context": _common_tls(sds_dir, trust_domain,
                                              f"spiffe://{trust_domain}/ns/default/sa/{callee}"),
        })
        if tls_material is not None:
            # New TLS material reaches Envoy through SDS and applies to new connections only; a cluster
            # that names the material in force is a new cluster when it changes, so the old one's pooled
            # connections drain and every request after a certificate change handshakes with what is
            # served now (see harness.mesh.local.certs).
            cluster["metadata"] = {"filter_metadata": {"harness": {"tls_material": tls_material}}}
    return cluster


def clusters(
    inst: Instance | None,
    layout: Layout,
    callees: list[str],
    versions: dict[str, list[str]],
    policies: dict[str, ResolvedPolicy],
    mtls: str,
    sds_dir: Path,
    trust_domain: str,
    endpoints: dict[str, dict[str, int]] | None = None,
    tls_material: str | None = None,
    endpoint_stats: bool = False,
) -> list[dict[str, Any]]:
    """CDS resources: the local app (sidecars only) and one cluster per callee version.

    ``endpoints`` overrides, per callee, the port of some of its instances (an interposed proxy's);
    ``tls_material`` names the certificates in force (a digest), carried in each mTLS cluster's metadata.
    """
    out: list[dict[str, Any]] = []
    if inst is not None:
        out.append(_static_cluster("inbound_app", [("127.0.0.1", inst.app_port)], 1.0))
        out[-1]["circuit_breakers"] = {"thresholds": [{
            "priority": "DEFAULT", "max_connections": 100000, "max_pending_requests": 100000,
            "max_requests": 100000, "max_retries": 100000,
        }]}
    for callee in callees:
        for version in versions[callee]:
            out.append(_outbound_cluster(callee, version, layout, policies[callee], mtls, sds_dir, trust_domain,
                                         (endpoints or {}).get(callee), tls_material, endpoint_stats))
    return out
