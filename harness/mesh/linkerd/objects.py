"""The objects the Linkerd driver writes, built from intents (reference/linkerd/linkerd-semantics.md).

Linkerd has no fault filter a user can configure (§2.1). The documented way, used here, is an HTTPRoute
on the target Service whose one rule splits its backends by weight between the Service itself and a
backend that answers with the fault: an error status, or the real answer late. The split is made in each
caller's proxy for every attempt, so a caller's retries pick again and can absorb the fault, as with an
Envoy fault on the target's inbound side (``at: target``).

Policy is annotations on the callee's Service (§4.1, §5.1): ``retry.linkerd.io/*``,
``timeout.linkerd.io/request`` and ``balancer.linkerd.io/failure-accrual*``. They hold for every caller
of that Service: Linkerd's outbound policy belongs to the parent Service, not to an edge.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from harness._errors import FaultError, MeshError
from harness.model.durations import format_duration
from harness.model.environment import EdgePolicy

__all__ = ["ADMITS", "FAULT_PORT", "MANAGED", "admission_objects", "annotations_for", "fault_backend", "fault_route",
           "fqdn", "route_weights", "scaled_weights", "shift_route", "version_service"]

MANAGED = {"app.kubernetes.io/managed-by": "mesh-harness"}
"""The label on every object the driver creates (and the only objects it ever deletes)."""
DIGEST = "mesh-harness.io/digest"
"""Annotation with the digest of the object as the harness wrote it: the API server adds defaults to what it
stores (a Deployment's strategy, a Service's clusterIP), so the object read back is compared by this."""
FAULT_PORT = 8080
FAULT_IMAGE = "python:3.12-alpine"
"""The fault backend's image: a Python that runs the script below (no image of the harness's own to pull)."""
WEIGHT_SCALE = 10_000
"""Weights per percent: steps of 0.0001%, and 100% is 1,000,000, the largest weight the Gateway API allows."""

GATEWAY_V1 = "gateway.networking.k8s.io/v1"
ROUTE_VERSIONS = ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1", "policy.linkerd.io/v1beta3")
"""HTTPRoute versions in order of preference: the Gateway API's on Linkerd 2.18+ (v1) and 2.16-2.17
(v1beta1); Linkerd's own, served by every release since 2.16, where no Gateway API CRDs are installed."""

MAX_PENALTY_S = 60.0
"""Linkerd's default ``failure-accrual-consecutive-max-penalty``."""
RETRY = "retry.linkerd.io/"
TIMEOUT = "timeout.linkerd.io/"
ACCRUAL = "balancer.linkerd.io/failure-accrual"
POLICY_KEYS = (f"{RETRY}http", f"{RETRY}limit", f"{RETRY}timeout", f"{TIMEOUT}request", ACCRUAL,
               f"{ACCRUAL}-consecutive-max-failures", f"{ACCRUAL}-consecutive-min-penalty",
               f"{ACCRUAL}-consecutive-max-penalty")
"""Every annotation a policy change may set or clear; each is snapshotted and restored on its own."""

_RETRY_ON = {"5xx": "5xx", "gateway-error": "gateway-error"}
_NOT_BY_STATUS = ("Linkerd retries by HTTP status only (retry.linkerd.io/http: 5xx, gateway-error or codes); its own "
                  "connection failures it retries on its own")

FAULT_SCRIPT = '''\
"""mesh-harness fault backend: every request gets ABORT_STATUS, or is forwarded to UPSTREAM after DELAY_S."""
import http.client, http.server, os, time, urllib.parse

STATUS = int(os.environ.get("ABORT_STATUS") or 0)
DELAY = float(os.environ.get("DELAY_S") or 0)
UPSTREAM = urllib.parse.urlsplit(os.environ.get("UPSTREAM") or "http://localhost")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
       "content-length", "date", "server"}
NO_BODY = {204, 304}


class Fault(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def reply(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status not in NO_BODY:
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in NO_BODY:
            self.wfile.write(data)

    def answer(self):
        body = self.body()
        if DELAY:
            time.sleep(DELAY)
        if STATUS:
            self.reply(STATUS, [], b"fault injected by mesh-harness\\n")
            return
        try:
            conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port or 80, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body or None, headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            self.reply(502, [], f"mesh-harness fault backend: upstream {UPSTREAM.netloc}: {exc}\\n".encode())
            return
        self.reply(resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP], data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = answer

    def log_message(self, *args):
        pass


# In the pod, on the pod's address (the callers' proxies reach it through its Service); LISTEN elsewhere.
HOST, _, PORT = (os.environ.get("LISTEN") or "0.0.0.0:8080").rpartition(":")
http.server.ThreadingHTTPServer((HOST, int(PORT)), Fault).serve_forever()
'''


def fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def digest(obj: dict[str, Any]) -> str:
    """The digest of an object as the harness writes it (without the digest annotation itself)."""
    meta = dict(obj["metadata"])
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k != DIGEST}
    text = json.dumps({**obj, "metadata": meta}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamped(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[DIGEST] = digest(obj)
    return obj


def _meta(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**MANAGED, **(labels or {})}}


def fault_name(service: str) -> str:
    return f"mesh-harness-fault-{service}"


def version_service(service: str, version: str) -> str:
    """The Service that selects one version's pods: Linkerd splits between Services, not labels. With
    Flagger's version names this is Flagger's own naming (``podinfo-primary``, ``podinfo-canary``)."""
    return f"{service}-{version}"


def fault_backend(service: str, namespace: str, port: int, *, abort_status: int | None,
                  delay_s: float | None) -> list[dict[str, Any]]:
    """ConfigMap (the script), Service and Deployment (one pod, not meshed) of the fault backend.

    Not meshed (``linkerd.io/inject: disabled``): a delayed request it forwards goes to the target's
    Service straight, not back through an HTTPRoute that would split it again."""
    name = fault_name(service)
    labels = {"app": name}
    env = [{"name": "ABORT_STATUS", "value": str(abort_status or "")},
           {"name": "DELAY_S", "value": "" if delay_s is None else f"{delay_s:g}"},
           {"name": "UPSTREAM", "value": f"http://{fqdn(service, namespace)}:{port}"}]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, namespace),
              "data": {"fault.py": FAULT_SCRIPT}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace),
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": {**MANAGED, **labels},
                                           "annotations": {"linkerd.io/inject": "disabled"}},
                              "spec": {"containers": [{
                                  "name": "fault", "image": FAULT_IMAGE, "command": ["python", "/fault/fault.py"],
                                  "env": env, "ports": [{"name": "http", "containerPort": FAULT_PORT}],
                                  "readinessProbe": {"tcpSocket": {"port": FAULT_PORT}, "periodSeconds": 1},
                                  # what the "restricted" Pod Security level asks, so such a namespace admits it
                                  "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                                      "allowPrivilegeEscalation": False,
                                                      "capabilities": {"drop": ["ALL"]},
                                                      "seccompProfile": {"type": "RuntimeDefault"}},
                                  "volumeMounts": [{"name": "script", "mountPath": "/fault"}]}],
                                  "volumes": [{"name": "script", "configMap": {"name": name}}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
           "spec": {"selector": labels, "ports": [{"name": "http", "port": FAULT_PORT, "targetPort": FAULT_PORT}]}}
    # The Service before the Deployment: it exists (and the policy controller can resolve it) while the pod starts.
    return [_stamped(config), _stamped(svc), _stamped(deployment)]


def route_weights(percent: float) -> tuple[int, int]:
    """(the Service's weight, the fault backend's) for ``percent`` of requests to the fault."""
    fault = round(percent * WEIGHT_SCALE)
    return 100 * WEIGHT_SCALE - fault, fault


def _route(name: str, namespace: str, service: str, port: int, backends: list[dict[str, Any]],
           api_version: str) -> dict[str, Any]:
    return _stamped({"apiVersion": api_version, "kind": "HTTPRoute", "metadata": _meta(name, namespace),
                     "spec": {"parentRefs": [{"group": "core", "kind": "Service", "name": service, "port": port}],
                              # one rule, no matches: every request to the Service (a rule for only some
                              # requests would leave the rest with Linkerd's 404 for "no route")
                              "rules": [{"backendRefs": backends}]}})


def fault_route(service: str, namespace: str, port: int, percent: float, api_version: str = GATEWAY_V1
                ) -> dict[str, Any]:
    """The HTTPRoute that sends ``percent`` of the requests to ``service`` to its fault backend. At 100%
    the fault backend is the one backendRef: with one backend Linkerd ignores weights (FirstAvailable)."""
    fault = {"name": fault_name(service), "port": FAULT_PORT}
    if percent >= 100:
        backends = [fault]
    else:
        keep, hit = route_weights(percent)
        backends = [{"name": service, "port": port, "weight": keep}, {**fault, "weight": hit}]
    return _route(fault_name(service), namespace, service, port, backends, api_version)


def scaled_weights(split: dict[str, float]) -> dict[str, int]:
    """``split`` (any positive numbers) as whole weights summing to 100 * WEIGHT_SCALE, by largest remainder."""
    total = sum(split.values())
    if total <= 0:
        raise FaultError("every weight is 0, which Linkerd's weighted pick cannot serve; give one version a weight")
    whole = 100 * WEIGHT_SCALE
    exact = {v: w * whole / total for v, w in split.items()}
    floors = {v: int(x) for v, x in exact.items()}
    for v in sorted(exact, key=lambda v: exact[v] - floors[v], reverse=True)[:whole - sum(floors.values())]:
        floors[v] += 1
    return floors


def shift_route(service: str, namespace: str, port: int, weights: dict[str, float], api_version: str = GATEWAY_V1
                ) -> dict[str, Any]:
    """The HTTPRoute that splits ``service`` between its versions' Services by ``weights``."""
    backends = [{"name": version_service(service, v), "port": port, "weight": w}
                for v, w in scaled_weights(weights).items()]
    return _route(f"mesh-harness-split-{service}", namespace, service, port, backends, api_version)


POLICY_V1BETA3 = "policy.linkerd.io/v1beta3"
POLICY_V1ALPHA1 = "policy.linkerd.io/v1alpha1"


def admission_name(service: str) -> str:
    return f"mesh-harness-admit-{service}"


ADMITS = "mesh-harness.io/admits"
"""Label on each object of a declared admission: the service it admits to (found by it, never by its name)."""


def admission_objects(service: str, namespace: str, selector: dict[str, str], ports: list[int | str],
                      accounts: list[str] | None, opaque: frozenset[int | str] = frozenset()) -> list[dict[str, Any]]:
    """The objects that admit to ``service`` only what ``mtls: strict`` declares (semantics §6.4), in the
    order they are created: a MeshTLSAuthentication naming the callers' ServiceAccounts, then, per port of
    the pods, an AuthorizationPolicy binding it to the port's Server, then the Server (``accessPolicy: deny``:
    whatever no policy admits is refused with a 403). With ``accounts`` None (the gateway's service, whose
    callers are not declared) only a Server that admits any caller authenticated by mTLS
    (``all-authenticated``); with none (nobody declared to call it), a Server that admits no one.

    Created in this order, a Server never stands without the policy that admits the declared callers (an
    AuthorizationPolicy whose Server is missing is ignored by Linkerd, not refused), and undone in reverse
    the Server goes first: the pods fall back to the cluster's default policy before its exceptions go.
    A port in ``opaque`` (the pods' ``config.linkerd.io/opaque-ports``) keeps ``proxyProtocol: opaque``: a
    Server's protocol overrides that annotation, and its default, ``unknown``, would detect HTTP there.
    """
    name = admission_name(service)
    labels = {ADMITS: service}
    out: list[dict[str, Any]] = []
    if accounts:
        out.append({"apiVersion": POLICY_V1ALPHA1, "kind": "MeshTLSAuthentication",
                    "metadata": _meta(name, namespace, labels),
                    "spec": {"identityRefs": [{"kind": "ServiceAccount", "name": a} for a in accounts]}})
    for port in ports:
        server = f"{name}-{port}"
        if accounts:
            out.append({"apiVersion": POLICY_V1ALPHA1, "kind": "AuthorizationPolicy",
                        "metadata": _meta(server, namespace, labels),
                        "spec": {"targetRef": {"group": "policy.linkerd.io", "kind": "Server", "name": server},
                                 "requiredAuthenticationRefs": [{"group": "policy.linkerd.io",
                                                                 "kind": "MeshTLSAuthentication", "name": name}]}})
        spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(selector)}, "port": port,
                                "accessPolicy": "all-authenticated" if accounts is None else "deny"}
        if port in opaque:
            spec["proxyProtocol"] = "opaque"
        out.append({"apiVersion": POLICY_V1BETA3, "kind": "Server", "metadata": _meta(server, namespace, labels),
                    "spec": spec})
    return [_stamped(o) for o in out]


def linkerd_duration(seconds: float, what: str) -> str:
    """A duration as Linkerd parses it: a whole number with a unit (``2s``, ``250ms``); no fractions."""
    ms = seconds * 1000
    if abs(ms - round(ms)) > 1e-6:
        raise FaultError(f"{what} {format_duration(seconds)}: Linkerd takes whole milliseconds at the finest")
    ms = round(ms)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


_DURATION = re.compile(r"^(?:0|(\d+)(ms|s|m|h|d))$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_linkerd_duration(text: str, what: str) -> float:
    """Seconds of a duration as Linkerd parses its annotations (a whole number and a unit, or 0); a value
    Linkerd would refuse is a MeshError naming it (Linkerd itself only logs it, and drops the setting)."""
    found = _DURATION.match(text.strip())
    if found is None:
        raise MeshError(f"{what}: {text!r} is no duration Linkerd reads (a whole number and ms, s, m, h or d); "
                        "Linkerd ignores the setting: fix the annotation")
    return 0.0 if found.group(1) is None else int(found.group(1)) * _UNIT_S[found.group(2)]


def annotations_for(policy: EdgePolicy) -> dict[str, str | None]:
    """The Service annotations for the fields ``policy`` sets (None: the key is removed). Fields it leaves
    unset are not touched; a field Linkerd cannot express is a FaultError saying why."""
    out: dict[str, str | None] = {}
    if policy.circuit_breaker is not None:
        raise FaultError("Linkerd has no connection or request limits to set; its circuit breaker is failure "
                         "accrual: write outlier_detection instead")
    if policy.retries is not None:
        r = policy.retries
        if r.attempts == 0:
            out |= {f"{RETRY}http": None, f"{RETRY}limit": None, f"{RETRY}timeout": None}
        else:
            codes = []
            for cond in r.on:
                if cond.isdigit():
                    codes.append(cond)
                elif cond in _RETRY_ON:
                    codes.append(_RETRY_ON[cond])
                else:
                    raise FaultError(f"retries on {cond}: {_NOT_BY_STATUS}")
            out[f"{RETRY}http"] = ",".join(codes)
            out[f"{RETRY}limit"] = str(r.attempts)
            out[f"{RETRY}timeout"] = (None if r.per_try_timeout is None
                                      else linkerd_duration(r.per_try_timeout, "retries.per_try_timeout"))
    if policy.timeout is not None:
        out[f"{TIMEOUT}request"] = None if policy.timeout == 0 else linkerd_duration(policy.timeout, "timeout")
    od = policy.outlier_detection
    if od is not None:
        for name in ("interval", "max_ejection_percent", "min_health_percent"):
            if getattr(od, name) is not None:
                raise FaultError(f"outlier_detection.{name}: Linkerd's failure accrual ejects an endpoint after "
                                 "consecutive failures, for a penalty that backs off; it has no "
                                 f"{name.replace('_', ' ')}: set consecutive_5xx and base_ejection_time only")
        out[ACCRUAL] = "consecutive"
        if od.consecutive_5xx == 0:
            raise FaultError("outlier_detection.consecutive_5xx: 0: Linkerd's failure accrual needs at least one "
                             "failure to eject an endpoint; write 1 or more, or no outlier_detection")
        if od.consecutive_5xx is not None:
            out[f"{ACCRUAL}-consecutive-max-failures"] = str(od.consecutive_5xx)
        if od.base_ejection_time is not None:
            out[f"{ACCRUAL}-consecutive-min-penalty"] = linkerd_duration(od.base_ejection_time,
                                                                         "outlier_detection.base_ejection_time")
            if od.base_ejection_time > MAX_PENALTY_S:
                # Linkerd refuses a min-penalty above the max-penalty (default 1m) and then turns accrual
                # off with only a log line: raise the max with it.
                out[f"{ACCRUAL}-consecutive-max-penalty"] = out[f"{ACCRUAL}-consecutive-min-penalty"]
    return out
