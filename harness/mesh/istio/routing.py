"""Reading Istio objects the way istiod does, and patching the routes a change needs inside them.

* Hosts: a short name in a VirtualService or DestinationRule (``reviews``) means
  ``reviews.<the object's namespace>.svc.cluster.local``; ``reviews.shop`` the same in ``shop``.
* A caller's route: in the VirtualService for the callee's host, the first HTTP route with no match, or
  with a match whose only condition is ``sourceLabels`` the caller carries (``app``, ``version``). Routes
  that match on paths or headers serve only some requests; they are not the edge's policy.
* Policy in force: what the objects say, else Istio's defaults at the pinned revision
  (pilot/pkg/networking/core/route/retry/retry.go, cluster_traffic_policy.go): 2 retries on
  ``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`` with *no* status code
  (so no 503 is retried: older Istio added 503, reference/mesh-semantics.md §2 still says so), no route
  timeout, breakers at 2³²−1 (a value of 0 is ignored by istiod, as if unset), no outlier detection
  (when it is set, Istio's defaults for its absent fields and a panic threshold of ``minHealthPercent``,
  default 0).

Patches never add a second VirtualService for a host (Istio would merge them unpredictably): the one
there is patched, or, where there is none, one is created (and removed by the undo).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from harness._errors import FaultError, InputError
from harness.mesh.istio.objects import NETWORKING, duration, fqdn, key_of, retries_of
from harness.mesh.policy import ResolvedOutlier, ResolvedPolicy
from harness.model.durations import parse_duration
from harness.model.environment import EdgePolicy

__all__ = ["ISTIO_DEFAULT_RETRY_ON", "caller_route", "destination_rule", "normalize_host", "resolved_policy",
           "routes_to", "sends_to", "virtual_service", "with_fault", "with_policy", "with_split"]

ISTIO_DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")
"""Istio's retry conditions when a route sets none (retry.go ``defaultRetryOn``). It also names
``retriable-status-codes``, but with no code configured that condition retries nothing: left out here."""
UNLIMITED = 2**32 - 1
"""What Istio writes for a breaker threshold the DestinationRule leaves out."""


def normalize_host(host: str, namespace: str) -> str:
    """A host as istiod resolves it in ``namespace`` (``ResolveShortnameToFQDN``, pilot/pkg/model/config.go):
    a name with no dot gets the namespace and the cluster domain; any other is taken as written."""
    if "." not in host and not host.startswith("*"):
        return fqdn(host, namespace)
    return host


def _ns(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("namespace", "default"))


def _is_gateway_bound(vs: dict[str, Any]) -> bool:
    gateways = vs["spec"].get("gateways") or []
    return bool(gateways) and "mesh" not in gateways


def virtual_service(objects: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    """The mesh VirtualService for ``host`` (an FQDN); FaultError when there are several."""
    found = [o for o in objects if o.get("kind") == "VirtualService" and not _is_gateway_bound(o)
             and host in (normalize_host(h, _ns(o)) for h in o["spec"].get("hosts", []))]
    if len(found) > 1:
        raise FaultError(f"{', '.join(key_of(o) for o in found)} all route {host}: Istio merges such VirtualServices "
                         "unpredictably, so mesh-harness will not patch them; keep one per host")
    return found[0] if found else None


def destination_rule(objects: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    found = [o for o in objects if o.get("kind") == "DestinationRule" and not o["spec"].get("workloadSelector")
             and normalize_host(o["spec"].get("host", ""), _ns(o)) == host]
    return found[0] if found else None


def sends_to(route: dict[str, Any], host: str, namespace: str) -> bool:
    return any(normalize_host(d.get("destination", {}).get("host", ""), namespace) == host
               for d in route.get("route", []))


def routes_to(objects: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """Gateway-bound VirtualServices with a route to ``host`` (the traffic entering at a gateway)."""
    return [o for o in objects if o.get("kind") == "VirtualService" and _is_gateway_bound(o)
            and any(sends_to(r, host, _ns(o)) for r in o["spec"].get("http", []))]


def _matches_caller(route: dict[str, Any], labels: dict[str, str], namespace: str | None = None) -> bool:
    """Does every request of a caller with ``labels`` (in ``namespace``) take this route? A match on
    ``sourceLabels``, ``sourceNamespace`` or ``gateways: [mesh]`` can; one on paths, headers or methods
    takes only some requests."""
    matches = route.get("match") or []
    if not matches:
        return True
    for m in matches:
        if not set(m) <= {"sourceLabels", "sourceNamespace", "gateways", "name"}:
            continue
        if "gateways" in m and "mesh" not in m["gateways"]:
            continue
        if "sourceNamespace" in m and m["sourceNamespace"] != namespace:
            continue
        if all(labels.get(k) == v for k, v in m.get("sourceLabels", {}).items()):
            return True
    return False


def caller_route(vs: dict[str, Any] | None, labels: dict[str, str]) -> dict[str, Any] | None:
    """The route a caller with ``labels`` takes in ``vs`` (None: no VirtualService, or no route for it)."""
    if vs is None:
        return None
    for route in vs["spec"].get("http", []):
        if _matches_caller(route, labels, _ns(vs)):  # the harness's callers live in the objects' namespace
            return dict(route)
    return None


@dataclass(frozen=True)
class _Sources:
    route: dict[str, Any] | None
    traffic_policy: dict[str, Any]


def resolved_policy(objects: list[dict[str, Any]], caller_labels: dict[str, str] | None, host: str,
                    gateway_route: dict[str, Any] | None = None) -> ResolvedPolicy:
    """The policy on an edge as Istio applies it: the caller's route (the gateway's own route when the
    caller is the gateway), the host's DestinationRule, Istio's defaults for the rest. A value istiod could
    not read either (``attempts: "x"``, ``timeout: 5``) is an InputError naming the host, not a crash."""
    try:
        return _resolved(objects, caller_labels, host, gateway_route)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"the VirtualService or DestinationRule for {host} holds a value Istio cannot read "
                         f"({exc}); fix it in istio.config (durations like 0.5s, whole numbers for counts)") from None


def _resolved(objects: list[dict[str, Any]], caller_labels: dict[str, str] | None, host: str,
              gateway_route: dict[str, Any] | None) -> ResolvedPolicy:
    route = gateway_route if caller_labels is None else caller_route(virtual_service(objects, host), caller_labels)
    dr = destination_rule(objects, host)
    src = _Sources(route, dict(dr["spec"].get("trafficPolicy") or {}) if dr else {})
    defaulted: list[str] = []
    retries = (src.route or {}).get("retries")
    if retries is None:
        defaulted.append("retries")
        attempts, per_try = 2, None
        retry_on: tuple[str, ...] = ISTIO_DEFAULT_RETRY_ON
    else:
        attempts = max(0, int(retries.get("attempts", 0)))  # absent or 0: retries off (retry.go ConvertPolicy)
        on = [c.strip() for c in str(retries.get("retryOn", "")).split(",") if c.strip()]
        retry_on = tuple(c for c in on if c != "retriable-status-codes") if on else ISTIO_DEFAULT_RETRY_ON
        per_try = parse_duration(retries["perTryTimeout"]) if retries.get("perTryTimeout") else None
    timeout_text = (src.route or {}).get("timeout")
    if timeout_text is None:
        defaulted.append("timeout")
    timeout = parse_duration(timeout_text) if timeout_text else 0.0
    pool = src.traffic_policy.get("connectionPool") or {}
    tcp, http = pool.get("tcp") or {}, pool.get("http") or {}
    limits = {}
    for name, value in (("max_connections", tcp.get("maxConnections")),
                        ("max_pending", http.get("http1MaxPendingRequests")),
                        ("max_requests", http.get("http2MaxRequests")),
                        ("max_retries", http.get("maxRetries"))):
        if value is None or int(value) <= 0:  # istiod applies these only when > 0
            defaulted.append(f"circuit_breaker.{name}")
        limits[name] = int(value) if value is not None and int(value) > 0 else UNLIMITED
    od = src.traffic_policy.get("outlierDetection")
    outlier = None
    if od is None:
        defaulted.append("outlier_detection")
    else:
        consecutive = od.get("consecutive5xxErrors", 5)  # istiod ignores the deprecated consecutiveErrors
        outlier = ResolvedOutlier(
            consecutive_5xx=int(consecutive),
            interval_s=parse_duration(od["interval"]) if od.get("interval") else 10.0,
            base_ejection_time_s=parse_duration(od["baseEjectionTime"]) if od.get("baseEjectionTime") else 30.0,
            max_ejection_percent=float(od.get("maxEjectionPercent") or 10),  # 0: istiod's default, 10
            min_health_percent=float(od.get("minHealthPercent", 0)),
        )
    return ResolvedPolicy(retries=attempts, retry_on=tuple(retry_on), per_try_timeout_s=per_try, timeout_s=timeout,
                          outlier=outlier, defaulted=tuple(defaulted), **limits)


# ------------------------------------------------------------------------------------------- patches
def _new_vs(host: str, namespace: str, name: str, port: int | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": host}
    if port:
        dest["port"] = {"number": port}
    return {"apiVersion": NETWORKING, "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "mesh-harness"}},
            "spec": {"hosts": [host], "http": [{"name": "default", "route": [{"destination": dest}]}]}}


def _editable(vs: dict[str, Any] | None, host: str, namespace: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(vs) if vs is not None else _new_vs(host, namespace, name, None)


def with_fault(vs: dict[str, Any] | None, host: str, namespace: str, name: str, fault: dict[str, Any],
               only_to: bool = False) -> dict[str, Any]:
    """``vs`` with ``fault`` on every route for ``host`` (a new VirtualService where there is none);
    ``only_to``: only the routes that send to ``host`` (a gateway's VirtualService routes other hosts too)."""
    out = _editable(vs, host, namespace, name)
    for route in out["spec"].setdefault("http", []):
        if not only_to or sends_to(route, host, _ns(out)):
            # An abort and a delay on one target are one fault block: each keeps the other's part.
            route["fault"] = {**route.get("fault", {}), **copy.deepcopy(fault)}
    return out


def with_split(vs: dict[str, Any] | None, host: str, namespace: str, name: str, weights: dict[str, int],
               subsets: dict[str, str], port: int | None, only_to: bool = False) -> dict[str, Any]:
    """``vs`` with every route that sends to ``host`` re-weighted across its version subsets (routes that
    redirect, answer directly or send elsewhere are left as they are)."""
    out = _editable(vs, host, namespace, name)
    del only_to  # every VirtualService: only the routes to the host
    for route in out["spec"].setdefault("http", []):
        if not sends_to(route, host, _ns(out)):
            continue
        template = next((d["destination"] for d in route.get("route", [])), {"host": host})
        dests = []
        for version, weight in weights.items():
            if weight <= 0:
                continue
            dest = {k: v for k, v in template.items() if k != "subset"} | {"subset": subsets[version]}
            if port and "port" not in dest:
                dest["port"] = {"number": port}
            dests.append({"destination": dest, "weight": weight})
        route["route"] = dests
    return out


def with_policy(vs: dict[str, Any] | None, dr: dict[str, Any] | None, host: str, namespace: str, name: str,
                caller: str, edge: EdgePolicy) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(``vs``, ``dr``) with an edge's policy fields: retries and timeout on the caller's own route (one
    matched on ``sourceLabels: {app: caller}`` is added before the first route the caller takes, a copy of
    it, where there is none), breakers and ejection in the DestinationRule's trafficPolicy (for every
    caller of the host: Istio has one DestinationRule per host). Untouched objects come back as None."""
    new_vs = None
    if edge.retries is not None or edge.timeout is not None:
        new_vs = _editable(vs, host, namespace, name)
        http = new_vs["spec"].setdefault("http", [])
        own = next((r for r in http if r.get("match") == [{"sourceLabels": {"app": caller}}]), None)
        if own is None:
            taken = next((i for i, r in enumerate(http) if _matches_caller(r, {"app": caller})), len(http))
            base = copy.deepcopy(http[taken]) if taken < len(http) else {"route": [{"destination": {"host": host}}]}
            base.pop("match", None)
            own = {"name": f"from-{caller}", "match": [{"sourceLabels": {"app": caller}}],
                   **{k: v for k, v in base.items() if k != "name"}}
            http.insert(taken, own)
        if edge.retries is not None:
            own["retries"] = retries_of(edge.retries)
        if edge.timeout:
            own["timeout"] = duration(edge.timeout)
        elif edge.timeout is not None:
            own.pop("timeout", None)  # 0: no route timeout, which istiod writes as the absence of one
    new_dr = None
    if edge.circuit_breaker is not None or edge.outlier_detection is not None:
        if dr is None:
            raise FaultError(f"no DestinationRule for {host}: breakers and ejection live in one; add one to "
                             "istio.config")
        new_dr = copy.deepcopy(dr)
        traffic = new_dr["spec"].setdefault("trafficPolicy", {})
        cb = edge.circuit_breaker
        if cb is not None:
            if cb.max_retries == 0:
                raise FaultError("circuit_breaker.max_retries: 0 cannot be had on Istio: istiod ignores a maxRetries "
                                 "of 0 (the limit stays at 2^32-1); write at least 1")
            values = {k: v for k, v in (("http1MaxPendingRequests", cb.max_pending),
                                        ("http2MaxRequests", cb.max_requests), ("maxRetries", cb.max_retries))
                      if v is not None}
            if cb.max_connections is not None or values:  # istiod refuses an empty connectionPool
                pool = traffic.setdefault("connectionPool", {})
                if cb.max_connections is not None:
                    pool.setdefault("tcp", {})["maxConnections"] = cb.max_connections
                if values:
                    pool.setdefault("http", {}).update(values)
        od = edge.outlier_detection
        if od is not None:
            out = traffic.setdefault("outlierDetection", {})
            for number, theirs in ((od.consecutive_5xx, "consecutive5xxErrors"),
                                   (od.max_ejection_percent, "maxEjectionPercent"),
                                   (od.min_health_percent, "minHealthPercent")):
                if number is not None:
                    out[theirs] = number
            for seconds, theirs in ((od.interval, "interval"), (od.base_ejection_time, "baseEjectionTime")):
                if seconds is not None:
                    out[theirs] = duration(seconds)
    return new_vs, new_dr
