"""A plaintext peer played against a Linkerd mesh's pods: the ``mtls`` expectation's ``rejects: [plaintext]``.

The harness reaches a pod in a cluster through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/``): the API server opens a plain TCP connection to the pod's
port and speaks HTTP/1.1, as a client outside the mesh does. Linkerd's proxy intercepts it on the pod; where
the pod's inbound policy admits only authenticated (meshed) clients (a Server with ``accessPolicy: deny``
and an AuthorizationPolicy naming MeshTLSAuthentication identities, or the default policy
``all-authenticated``), it answers **403** itself, with an ``l5d-proxy-error`` header, and counts the
denial in ``inbound_http_authz_deny_total`` (reference/linkerd/linkerd-semantics.md §6.4). The counter is
read from the same pod's proxy (``POD:4191/proxy/metrics``) just before and after each probe, so a refusal
is known to be the policy's, not an application's 403.

A peer with a certificate from another CA, or with another identity, cannot be played: Linkerd's proxies
take certificates only from Linkerd's identity service, and the harness has no proxy in the mesh. Those
probes are reported as made by no one (``unreachable``), which the verdict reads as "cannot be told".
"""

from __future__ import annotations

import json
from typing import Any

from harness._errors import MeshError
from harness.mesh.kube.rest import KubeRest, NoAnswer
from harness.metrics.tls import PROBE_KINDS, PeerProbe, ProbeOutcome

__all__ = ["ADMIN_PORT", "classify", "deny_count", "probe_pod"]

ADMIN_PORT = 4191
"""The Linkerd proxy's admin port (``linkerd-admin``), where its metrics are."""
PROBE_TIMEOUT_S = 5.0
NOT_PLAYABLE = ("Linkerd's proxies take certificates only from Linkerd's identity service: a peer with another "
                "CA or identity cannot be played from outside the mesh")


def classify(status: int, headers: dict[str, str], body: bytes) -> tuple[ProbeOutcome, str]:
    """What the answer to a plaintext request through the pod proxy says: Linkerd's proxy refused it (403
    with ``l5d-proxy-error``), the pod's app answered it (let in), or the API server could not reach the pod
    (its own error, a Status object)."""
    error = headers.get("l5d-proxy-error")
    if status == 403 and error is not None:
        return "refused", f"HTTP 403 from Linkerd's proxy: {error}"
    text = body[:2000].decode(errors="replace")
    try:
        doc: Any = json.loads(text)
    except ValueError:
        doc = None
    if status == 0 or (isinstance(doc, dict) and doc.get("kind") == "Status") or \
            text.lower().startswith("error trying to reach"):
        message = doc.get("message") if isinstance(doc, dict) else text.strip()
        return "unreachable", f"the API server could not reach the pod (HTTP {status}: {str(message)[:200]})"
    return "accepted", f"HTTP {status} from the pod" + (f" (l5d-proxy-error: {error})" if error else "")


def deny_count(metrics: str) -> float:
    """The sum of ``inbound_http_authz_deny_total`` in a proxy's metrics text."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("inbound_http_authz_deny_total"):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return total


def _denials(rest: KubeRest, namespace: str, pod: str) -> float | None:
    try:
        status, _, body = rest.raw("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}:{ADMIN_PORT}/proxy/metrics",
                                   PROBE_TIMEOUT_S)
    except MeshError:
        return None
    return deny_count(body.decode(errors="replace")) if status == 200 else None


def probe_pod(rest: KubeRest, namespace: str, service: str, pod: str, port: int) -> list[PeerProbe]:
    """Each bad peer against one pod's ``port``: the plaintext one for real, the others said not playable."""
    out = [PeerProbe(service, pod, kind, "unreachable", NOT_PLAYABLE) for kind in PROBE_KINDS if kind != "plaintext"]
    before = _denials(rest, namespace, pod)
    try:
        status, headers, body = rest.raw("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/",
                                         PROBE_TIMEOUT_S)
    except NoAnswer as exc:
        return [*out, PeerProbe(service, pod, "plaintext", "no-answer", str(exc))]
    except MeshError as exc:
        return [*out, PeerProbe(service, pod, "plaintext", "unreachable", str(exc))]
    outcome, detail = classify(status, headers, body)
    after = _denials(rest, namespace, pod) if outcome == "refused" else None
    counted = None if before is None or after is None else after > before
    return [*out, PeerProbe(service, pod, "plaintext", outcome, detail, counted)]
