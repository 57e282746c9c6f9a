"""The Consul config entries that express an environment's topology and declared policy.

Consul keeps L7 policy per *destination* service, where the environment declares it per edge: a
``service-router`` (retries, timeout) applies to every caller of its service, so two callers that declare
different retries towards one callee are refused (:func:`router_conflicts`); breakers and ejection are per
caller and callee (the caller's ``service-defaults``, ``UpstreamConfig.Overrides``), as declared.

Every service with more than one version gets a ``service-resolver`` with a subset per version (filtered
on the instance's ``version`` metadata) and a ``service-splitter`` with the environment's split (else one
proportional to replicas, as the local mesh and a Kubernetes Service spread it): each version is then a
cluster of its own in every caller's Envoy, which is where per-version counters come from.
"""

from __future__ import annotations

import re
from typing import Any

from harness._errors import MeshError
from harness.mesh.policy import MeshDefaults, ResolvedPolicy, resolve
from harness.model.environment import EdgePolicy, Environment

__all__ = ["CONSUL_RETRY_ON", "DURATION_KEYS", "GLOBAL_PROXY_DEFAULTS", "base_entries", "catch_all", "duration",
           "go_duration", "inexpressible", "inexpressible_at", "ingress_gateway", "resolver", "router",
           "router_conflicts", "router_with", "splitter", "subset_weights", "upstream_overrides"]

GLOBAL_PROXY_DEFAULTS: dict[str, Any] = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
"""Every service speaks HTTP: routers, splitters and L7 intentions need it (Consul refuses them on tcp)."""


def duration(seconds: float) -> str:
    """A Go duration Consul parses (``3s``, ``250ms``, ``400us``), exact to the microsecond: a duration written
    as ``0s`` would be no setting at all to Consul."""
    us = round(seconds * 1_000_000)
    if us % 1_000_000 == 0:
        return f"{us // 1_000_000}s"
    return f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
DURATION_KEYS = frozenset({"RequestTimeout", "IdleTimeout", "ConnectTimeout", "Interval", "BaseEjectionTime"})
"""Fields of the entries the harness writes that hold a duration. Consul takes ``"1s"`` and returns some as
that text (a router's timeouts), others as integer nanoseconds (a passive health check's ``Interval``)."""


def go_duration(value: object) -> float:
    """Seconds of a duration as Consul returns it: Go's text (``3s``, ``1m30s``, ``250ms``) or nanoseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1e9
    text = str(value)
    if text.isdigit():
        return int(text) / 1e9
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        raise MeshError(f"Consul returned a duration the harness cannot read: {text!r}")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


def subset_weights(split: dict[str, float]) -> list[dict[str, Any]]:
    """A splitter's ``Splits``: Consul takes weights to 0.01 that sum to exactly 100, so the rounding error
    goes to the largest share."""
    rounded = {v: round(w, 2) for v, w in split.items()}
    largest = max(rounded, key=lambda v: rounded[v])
    rounded[largest] = round(rounded[largest] + 100.0 - sum(rounded.values()), 2)
    return [{"Weight": w, "ServiceSubset": v} for v, w in rounded.items() if w > 0]


def resolver(service: str, versions: list[str]) -> dict[str, Any]:
    return {"Kind": "service-resolver", "Name": service,
            "Subsets": {v: {"Filter": f'Service.Meta.version == "{v}"'} for v in versions}}


def splitter(service: str, split: dict[str, float]) -> dict[str, Any]:
    return {"Kind": "service-splitter", "Name": service, "Splits": subset_weights(split)}


def router(service: str, policy: ResolvedPolicy) -> dict[str, Any]:
    """One catch-all route carrying the edge's retries and timeout (Consul 1.16's ``ServiceRouteDestination``)."""
    destination: dict[str, Any] = {"RequestTimeout": duration(policy.timeout_s)}
    if policy.retries:
        destination["NumRetries"] = policy.retries
        codes = [int(c) for c in policy.retry_on if c.isdigit()]
        conditions = [c for c in policy.retry_on if not c.isdigit()]
        if conditions:
            destination["RetryOn"] = conditions
        if codes:
            destination["RetryOnStatusCodes"] = codes
    return {"Kind": "service-router", "Name": service,
            "Routes": [{"Match": {"HTTP": {"PathPrefix": "/"}}, "Destination": destination}]}


_ROUTE_POLICY = ("NumRetries", "RetryOn", "RetryOnStatusCodes", "RetryOnConnectFailure", "RequestTimeout",
                 "PerTryTimeout")
"""What of a route's destination the harness's policy sets (a destination's service, subset and the rest are
the router's own)."""


def catch_all(router: dict[str, Any] | None) -> int | None:
    """The index of a router's first route that every request matches (no match, or path prefix ``/``)."""
    for index, route in enumerate((router or {}).get("Routes") or []):
        http = (route.get("Match") or {}).get("HTTP") or {}
        rest = {k: v for k, v in http.items() if v not in (None, "", [], {})}
        if not rest or rest == {"PathPrefix": "/"}:
            return index
    return None


def router_with(current: dict[str, Any] | None, service: str, policy: ResolvedPolicy) -> dict[str, Any]:
    """``current`` (a router someone wrote, or the harness's) with the retries and timeout of its catch-all route
    set as ``policy`` says, every other route and the rest of that route's destination kept; with a catch-all
    route appended when it has none, and the harness's own router when there is none."""
    fresh = router(service, policy)
    if not current:
        return fresh
    out = {k: v for k, v in current.items() if k not in ("CreateIndex", "ModifyIndex", "Hash")}
    routes = [dict(r) for r in out.get("Routes") or []]
    index = catch_all(out)
    if index is None:
        routes.append(fresh["Routes"][0])
    else:
        kept = {k: v for k, v in (routes[index].get("Destination") or {}).items() if k not in _ROUTE_POLICY}
        routes[index]["Destination"] = {**kept, **fresh["Routes"][0]["Destination"]}
    out["Routes"] = routes
    return out


def upstream_overrides(callee: str, policy: ResolvedPolicy) -> dict[str, Any]:
    """One ``UpstreamConfig.Overrides`` item of the caller's service-defaults: the edge's breaker limits and
    passive health check (Envoy's outlier detection)."""
    out: dict[str, Any] = {"Name": callee, "Limits": {"MaxConnections": policy.max_connections,
                                                      "MaxPendingRequests": policy.max_pending,
                                                      "MaxConcurrentRequests": policy.max_requests}}
    if policy.outlier is not None:
        o = policy.outlier
        out["PassiveHealthCheck"] = {"Interval": duration(o.interval_s), "MaxFailures": o.consecutive_5xx,
                                     "EnforcingConsecutive5xx": 100,
                                     "MaxEjectionPercent": round(o.max_ejection_percent),
                                     "BaseEjectionTime": duration(o.base_ejection_time_s)}
    return out


def ingress_gateway(name: str, port: int, service: str) -> dict[str, Any]:
    """One HTTP listener for one service, any Host (Consul allows ``*`` where a listener has one service)."""
    return {"Kind": "ingress-gateway", "Name": name,
            "Listeners": [{"Port": port, "Protocol": "http", "Services": [{"Name": service, "Hosts": ["*"]}]}]}


def base_entries(env: Environment, policies: dict[tuple[str, str], ResolvedPolicy], gateway: str,
                 gateway_port: int) -> list[dict[str, Any]]:
    """Every entry ``up`` writes for the environment, in an order Consul accepts (defaults and resolvers
    before the routers and splitters that use their subsets, the gateway once its service speaks HTTP)."""
    spec = env.spec
    out: list[dict[str, Any]] = [dict(GLOBAL_PROXY_DEFAULTS)]
    for svc in spec.services:
        overrides = [upstream_overrides(c.to, policies[(svc.name, c.to)]) for c in svc.calls]
        entry: dict[str, Any] = {"Kind": "service-defaults", "Name": svc.name, "Protocol": "http"}
        if overrides:
            entry["UpstreamConfig"] = {"Overrides": overrides}
        out.append(entry)
    for svc in spec.services:
        if len(svc.versions) > 1:
            out.append(resolver(svc.name, list(svc.versions)))
    for svc in spec.services:
        callers = [(a, b) for (a, b) in policies if b == svc.name]
        if callers:
            out.append(router(svc.name, policies[callers[0]]))
    for svc in spec.services:
        if len(svc.versions) > 1:
            out.append(splitter(svc.name, svc.effective_split()))
    out.append(ingress_gateway(gateway, gateway_port, spec.gateway.service))
    return out


CONSUL_RETRY_ON = frozenset({"5xx", "gateway-error", "reset", "connect-failure", "envoy-ratelimited",
                             "retriable-4xx", "refused-stream", "cancelled", "deadline-exceeded", "internal",
                             "resource-exhausted", "unavailable"})
"""The retry conditions a Consul 1.16 service-router takes (``isValidRetryCondition``); status codes go to
``RetryOnStatusCodes``."""


def inexpressible_at(policy: EdgePolicy) -> list[tuple[tuple[str, ...], str]]:
    """What of an edge's policy Consul 1.16 cannot hold: (the field's path in the policy, why and what to write
    instead)."""
    out: list[tuple[tuple[str, ...], str]] = []
    retries = policy.retries
    if retries is not None:
        if retries.per_try_timeout is not None:
            out.append((("retries", "per_try_timeout"),
                        "Consul 1.16's service-router has no per-try timeout (retries.per_try_timeout); leave it out"))
        bad = sorted(c for c in retries.on if not c.isdigit() and c not in CONSUL_RETRY_ON)
        if bad:
            out.append((("retries", "on"), f"Consul 1.16's service-router cannot retry on {', '.join(bad)}; use "
                                           f"{', '.join(sorted(CONSUL_RETRY_ON))} or status codes"))
    if policy.timeout is not None and policy.timeout <= 0:
        out.append((("timeout",), "Consul cannot turn a route's timeout off (a RequestTimeout of 0 is no setting: "
                                  "Envoy's 15s); write a timeout above 0"))
    if policy.circuit_breaker is not None and policy.circuit_breaker.max_retries is not None:
        out.append((("circuit_breaker", "max_retries"),
                    "Consul 1.16's upstream Limits have no retry budget (circuit_breaker.max_retries); leave it out"))
    od = policy.outlier_detection
    if od is not None:
        if od.min_health_percent is not None:
            out.append((("outlier_detection", "min_health_percent"),
                        "Consul turns panic routing off (healthy_panic_threshold 0) and has no field for it "
                        "(outlier_detection.min_health_percent); leave it out"))
        if od.consecutive_5xx == 0:
            out.append((("outlier_detection", "consecutive_5xx"),
                        "a PassiveHealthCheck with MaxFailures 0 is no setting to Consul (Envoy's 5): write "
                        "consecutive_5xx of 1 or more"))
    return out


def inexpressible(policy: EdgePolicy) -> list[str]:
    """What of an edge's policy Consul 1.16 cannot hold, each with what to write instead."""
    return [why for _, why in inexpressible_at(policy)]


def router_conflicts(env: Environment, defaults: MeshDefaults) -> list[tuple[tuple[str | int, ...], str]]:
    """Callees whose callers declare different retries or timeouts (one service-router cannot hold both), each
    at the later caller's field (its path under ``spec``)."""
    first: dict[str, tuple[str, tuple[Any, ...]]] = {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for si, svc in enumerate(env.spec.services):
        for ci, call in enumerate(svc.calls):
            p = resolve(call, defaults)
            key = (p.retries, p.retry_on if p.retries else (), p.per_try_timeout_s, p.timeout_s)
            seen = first.setdefault(call.to, (svc.name, key))
            if seen[1] != key:
                field = "retries" if seen[1][:3] != key[:3] else "timeout"
                out.append((("services", si, "calls", ci, field),
                            f"{seen[0]} and {svc.name} declare different retries or timeouts towards {call.to}, and "
                            f"Consul's service-router for {call.to} applies to every caller: declare them alike"))
    return out
