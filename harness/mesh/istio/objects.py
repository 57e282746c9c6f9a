"""The Istio objects that describe an environment: its workloads, its policy, its gateway.

Istio learns about workloads outside Kubernetes exactly as it learns about VMs: a ServiceEntry per
service (``MESH_INTERNAL``, selecting its workloads by label) and a WorkloadEntry per instance. The
environment's declared policy becomes what an Istio user writes for it: per service a DestinationRule
(one subset per version, the callers' breaker and ejection settings) and a VirtualService (the split as
route weights, one route per caller that declares retries or a timeout, matched by ``sourceLabels``),
plus a mesh-wide PeerAuthentication. Load enters through a real Istio ingress gateway (a Gateway and the
VirtualService bound to it), as with Bookinfo.

Without iptables nothing captures traffic, so each workload's Sidecar resource binds its listeners
explicitly (``captureMode: NONE``): the inbound listener on the workload's own loopback address, one
outbound listener per callee on a second one, each on the callee's service port. Every object here is
plain data, validated against Istio's CRD schemas by the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.mesh.local.envoy_config import seconds as duration  # protobuf JSON (0.25s): every Istio parses it
from harness.model.environment import Call, Environment, Retries

__all__ = [
    "GATEWAY_NAME",
    "INSTANCE_LABEL",
    "ROOT_NAMESPACE",
    "TRUST_DOMAIN",
    "Placement",
    "Workload",
    "base_objects",
    "duration",
    "fqdn",
    "identity",
    "key_of",
    "policy_objects",
    "retries_of",
    "service_ports",
]

TRUST_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"
"""Istio's root namespace: a PeerAuthentication here is mesh-wide."""
INSTANCE_LABEL = "mesh-harness.io/instance"
"""The label that tells one instance's proxy from its siblings (its Sidecar selects on it)."""
GATEWAY_NAME = "mesh-harness-gateway"
GATEWAY_LABELS = {"istio": "ingressgateway"}
FIRST_PORT = 9080
"""Service ports are 9080, 9081, ... in declaration order (Bookinfo's 9080 first)."""

NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
_MTLS_MODES = {"strict": "STRICT", "permissive": "PERMISSIVE", "off": "DISABLE"}


@dataclass(frozen=True)
class Workload:
    """One instance as Istio sees it: the address its inbound listener binds (its WorkloadEntry's), the
    address its outbound listeners bind, and the port of the app behind it."""

    id: str
    service: str
    version: str
    inbound: str
    outbound: str
    app_port: int


@dataclass(frozen=True)
class Placement:
    """Where everything of one local Istio mesh lives."""

    namespace: str
    ports: dict[str, int]
    workloads: tuple[Workload, ...]
    gateway_address: str
    gateway_port: int


def fqdn(service: str, namespace: str) -> str:
    """The host Istio gives a service: ``reviews.shop.svc.cluster.local``, so that short names in users'
    VirtualServices (``reviews``) resolve to it as in a cluster."""
    return f"{service}.{namespace}.svc.{TRUST_DOMAIN}"


def identity(service: str, namespace: str) -> str:
    """The SPIFFE identity of a service's workloads (one service account per service)."""
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service}"


def key_of(obj: dict[str, Any]) -> str:
    """``Kind/namespace/name``: how objects are told apart (and named on disk)."""
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', 'default')}/{meta['name']}"


def service_ports(env: Environment) -> dict[str, int]:
    return {svc.name: FIRST_PORT + i for i, svc in enumerate(env.spec.services)}


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "mesh-harness"}}


def base_objects(env: Environment, placement: Placement) -> list[dict[str, Any]]:
    """What Istio must know of the local workloads and the gateway; the user's own policy files never
    replace these (they describe a cluster's, not this machine's, workloads)."""
    ns = placement.namespace
    out: list[dict[str, Any]] = []
    for svc in env.spec.services:
        port = placement.ports[svc.name]
        out.append({"apiVersion": NETWORKING, "kind": "ServiceEntry", "metadata": _meta(svc.name, ns), "spec": {
            "hosts": [fqdn(svc.name, ns)], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": port, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": {"app": svc.name}}}})
    for w in placement.workloads:
        labels = {"app": w.service, "version": w.version, INSTANCE_LABEL: w.id,
                  "security.istio.io/tlsMode": "istio"}
        out.append({"apiVersion": NETWORKING, "kind": "WorkloadEntry", "metadata": _meta(w.id, ns), "spec": {
            "address": w.inbound, "labels": labels, "serviceAccount": w.service}})
        calls = env.spec.service(w.service).calls
        out.append({"apiVersion": NETWORKING, "kind": "Sidecar", "metadata": _meta(w.id, ns), "spec": {
            "workloadSelector": {"labels": {INSTANCE_LABEL: w.id}},
            "ingress": [{"port": {"number": placement.ports[w.service], "protocol": "HTTP", "name": "http"},
                         "bind": w.inbound, "captureMode": "NONE",
                         "defaultEndpoint": f"127.0.0.1:{w.app_port}"}],
            "egress": [{"port": {"number": placement.ports[c.to], "protocol": "HTTP", "name": f"http-{c.to}"},
                        "bind": w.outbound, "captureMode": "NONE", "hosts": [f"./{fqdn(c.to, ns)}"]}
                       for c in calls] or [{"hosts": [f"{ROOT_NAMESPACE}/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}})
    entry = env.spec.gateway.service
    out.append({"apiVersion": NETWORKING, "kind": "Gateway", "metadata": _meta(GATEWAY_NAME, ns), "spec": {
        "selector": dict(GATEWAY_LABELS),
        "servers": [{"port": {"number": placement.gateway_port, "name": "http", "protocol": "HTTP"},
                     "bind": placement.gateway_address, "hosts": ["*"]}]}})
    out.append({"apiVersion": NETWORKING, "kind": "VirtualService", "metadata": _meta(GATEWAY_NAME, ns), "spec": {
        "hosts": ["*"], "gateways": [GATEWAY_NAME],
        "http": [{"name": "entry", "route": _weighted(entry, ns, placement.ports[entry],
                                                      env.spec.service(entry).effective_split())}]}})
    return out


def _weighted(service: str, namespace: str, port: int, split: dict[str, float]) -> list[dict[str, Any]]:
    """Route destinations for a split: one per version with weight > 0, integer weights summing to 100
    (Istio requires both), by largest remainder so that 33.3/33.3/33.4 stays as close as integers allow."""
    weights = _integer_weights(split)
    return [{"destination": {"host": fqdn(service, namespace), "subset": version, "port": {"number": port}},
             "weight": weight} for version, weight in weights.items() if weight > 0]


def _integer_weights(split: dict[str, float]) -> dict[str, int]:
    total = sum(split.values()) or 1.0
    exact = {v: w * 100 / total for v, w in split.items()}
    floors = {v: int(x) for v, x in exact.items()}
    short = 100 - sum(floors.values())
    for v in sorted(exact, key=lambda v: exact[v] - floors[v], reverse=True)[:short]:
        floors[v] += 1
    return floors


def retries_of(retries: Retries) -> dict[str, Any]:
    """A VirtualService ``retries`` block. ``attempts: 0`` stands alone: istiod refuses a retry policy
    configured with attempts 0 ("http retry policy configured when attempts are set to 0 (disabled)"), and
    one refused file stops it reloading the whole config directory."""
    if retries.attempts == 0:
        return {"attempts": 0}
    out: dict[str, Any] = {"attempts": retries.attempts, "retryOn": ",".join(retries.on)}
    if retries.per_try_timeout is not None:
        out["perTryTimeout"] = duration(retries.per_try_timeout)
    return out


def _route_policy(call: Call | None) -> dict[str, Any]:
    """A caller's declared retries and timeout as VirtualService route fields (absent: Istio's defaults)."""
    out: dict[str, Any] = {}
    if call is None:
        return out
    if call.retries is not None:
        out["retries"] = retries_of(call.retries)
    if call.timeout:  # 0 is no route timeout: istiod refuses "0s", and its absence means none
        out["timeout"] = duration(call.timeout)
    return out


def _traffic_policy(calls: Iterable[Call], callee: str) -> dict[str, Any]:
    """The callers' breaker and ejection settings for ``callee`` as a DestinationRule trafficPolicy.

    Istio has one DestinationRule per host for every caller, so callers that declare different values
    cannot all be had: refused by the environment checks (:func:`policy_conflicts`)."""
    out: dict[str, Any] = {}
    for call in calls:
        cb = call.circuit_breaker
        if cb is not None:
            tcp = {"maxConnections": cb.max_connections} if cb.max_connections is not None else {}
            http = {k: v for k, v in (("http1MaxPendingRequests", cb.max_pending),
                                      ("http2MaxRequests", cb.max_requests),
                                      ("maxRetries", cb.max_retries)) if v is not None}
            pool = {k: v for k, v in (("tcp", tcp), ("http", http)) if v}
            if pool:
                out["connectionPool"] = pool
        od = call.outlier_detection
        if od is not None:
            fields = {k: v for k, v in (
                ("consecutive5xxErrors", od.consecutive_5xx),
                ("interval", None if od.interval is None else duration(od.interval)),
                ("baseEjectionTime", None if od.base_ejection_time is None else duration(od.base_ejection_time)),
                ("maxEjectionPercent", od.max_ejection_percent),
                ("minHealthPercent", od.min_health_percent)) if v is not None}
            out["outlierDetection"] = fields
    return out


def policy_conflicts(env: Environment) -> list[str]:
    """Callees whose callers declare different breakers or ejection (one DestinationRule cannot hold both)."""
    out = []
    for svc in env.spec.services:
        calls = [env.spec.call(c, svc.name) for c in env.spec.callers_of(svc.name)]
        seen = {repr(_traffic_policy([c], svc.name)) for c in calls if c is not None and _traffic_policy([c], svc.name)}
        if len(seen) > 1:
            out.append(svc.name)
    return out


def policy_objects(env: Environment, namespace: str) -> list[dict[str, Any]]:
    """The environment's declared policy as Istio objects: what ``istio.config`` files replace."""
    ns = namespace
    spec = env.spec
    out: list[dict[str, Any]] = []
    for svc in spec.services:
        calls = [c for c in (spec.call(caller, svc.name) for caller in spec.callers_of(svc.name)) if c is not None]
        dr_spec: dict[str, Any] = {
            "host": fqdn(svc.name, ns),
            "subsets": [{"name": v, "labels": {"version": v}} for v in svc.versions]}
        traffic = _traffic_policy(calls, svc.name)
        if traffic:
            dr_spec["trafficPolicy"] = traffic
        out.append({"apiVersion": NETWORKING, "kind": "DestinationRule", "metadata": _meta(svc.name, ns),
                    "spec": dr_spec})
        port = service_ports(env)[svc.name]
        route = _weighted(svc.name, ns, port, svc.effective_split())
        http: list[dict[str, Any]] = []
        for caller in spec.callers_of(svc.name):
            fields = _route_policy(spec.call(caller, svc.name))
            if fields:
                http.append({"name": f"from-{caller}", "match": [{"sourceLabels": {"app": caller}}],
                             "route": route, **fields})
        http.append({"name": "default", "route": route})
        out.append({"apiVersion": NETWORKING, "kind": "VirtualService", "metadata": _meta(svc.name, ns), "spec": {
            "hosts": [fqdn(svc.name, ns)], "http": http}})
    out.append({"apiVersion": SECURITY, "kind": "PeerAuthentication", "metadata": _meta("default", ROOT_NAMESPACE),
                "spec": {"mtls": {"mode": _MTLS_MODES[spec.mtls]}}})
    return out
