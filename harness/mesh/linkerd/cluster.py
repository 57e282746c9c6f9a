"""A Linkerd cluster as the driver reads and changes it: the namespace's Services, routes and profiles, the
objects the harness creates, and the annotations it sets, each change guarded so that nothing someone else
wrote is ever overwritten.

* Objects the harness creates (the fault backend, its routes) carry the managed-by label and the digest of
  what was written (:data:`~harness.mesh.linkerd.objects.DIGEST`). Creating one that exists already with
  the same digest does nothing; with another, or without the label, it is a Conflict. Deleting one that is
  gone does nothing.
* Annotations are set key by key with a JSON merge patch that carries the resourceVersion read, and only
  where each key still holds the value the change expects: a concurrent edit of the Service's spec (a
  Flagger step, a GitOps sync) is not touched, and a concurrent edit of the same key is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness._errors import MeshError
from harness.mesh.kube.rest import Conflict, Kind, KubeRest
from harness.mesh.linkerd.objects import DIGEST, MANAGED, POLICY_V1BETA3, ROUTE_VERSIONS, fqdn

__all__ = ["LinkerdCluster", "kind_of"]

_KINDS = {
    ("v1", "Service"): Kind("", "v1", "services"),
    ("v1", "ConfigMap"): Kind("", "v1", "configmaps"),
    ("v1", "Pod"): Kind("", "v1", "pods"),
    ("apps/v1", "Deployment"): Kind("apps", "v1", "deployments"),
    ("linkerd.io/v1alpha2", "ServiceProfile"): Kind("linkerd.io", "v1alpha2", "serviceprofiles"),
}


def kind_of(api_version: str, kind: str) -> Kind:
    """Where the API server serves ``kind`` of ``api_version``."""
    known = _KINDS.get((api_version, kind))
    if known is not None:
        return known
    group, _, version = api_version.rpartition("/")
    plurals = {"HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes", "Server": "servers",
               "AuthorizationPolicy": "authorizationpolicies", "MeshTLSAuthentication": "meshtlsauthentications",
               "ServerAuthorization": "serverauthorizations"}
    if kind not in plurals or not group:
        raise MeshError(f"{api_version} {kind} is not a kind the linkerd driver reads or writes")
    return Kind(group, version, plurals[kind])


def key_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', 'default')}/{meta['name']}"


def parents(route: dict[str, Any]) -> list[dict[str, Any]]:
    return list((route.get("spec") or {}).get("parentRefs") or [])


def attached_to(route: dict[str, Any], service: str, namespace: str, port: int | None = None) -> bool:
    """Does ``route`` attach to Service ``service`` (on ``port``, when given: a parentRef without a port
    holds for every port)? Group ``core`` or "" both mean the core group."""
    own = route["metadata"].get("namespace", "default")
    return any(p.get("kind", "Gateway") == "Service" and p.get("group", "core") in ("core", "")
               and p.get("name") == service and p.get("namespace", own) == namespace
               and (port is None or p.get("port") in (None, port)) for p in parents(route))


def _digest(obj: dict[str, Any]) -> str | None:
    value = (obj["metadata"].get("annotations") or {}).get(DIGEST)
    return str(value) if value is not None else None


def owned(obj: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in MANAGED.items())


class LinkerdCluster:
    """The objects of one namespace of the cluster the kube context names."""

    def __init__(self, rest: KubeRest, namespace: str) -> None:
        self.rest = rest
        self.namespace = namespace
        self._route_version: str | None = None

    # ------------------------------------------------------------------------------------------- reading
    def route_version(self) -> str:
        """The HTTPRoute version to write: the first of :data:`ROUTE_VERSIONS` the API server serves."""
        if self._route_version is None:
            for api_version in ROUTE_VERSIONS:
                if self.rest.served(kind_of(api_version, "HTTPRoute")):
                    self._route_version = api_version
                    break
            else:
                raise MeshError("the cluster serves no HTTPRoute (neither the Gateway API's nor policy.linkerd.io's): "
                                "is Linkerd installed? (linkerd install --crds | kubectl apply -f -)")
        return self._route_version

    def service(self, name: str) -> dict[str, Any] | None:
        return self.rest.get(kind_of("v1", "Service"), self.namespace, name)

    def routes_on(self, service: str, kind: str = "HTTPRoute", port: int | None = None) -> list[dict[str, Any]]:
        """Every route of ``kind`` in the namespace attached to Service ``service`` (on ``port``): the Gateway
        API's (read once, in the first version served) and, for HTTPRoutes, Linkerd's own."""
        gateway_versions = {"HTTPRoute": ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"),
                            "GRPCRoute": ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1alpha2")}
        gateway = next((v for v in gateway_versions[kind] if self.rest.served(kind_of(v, kind))), None)
        versions = [v for v in (gateway, "policy.linkerd.io/v1beta3" if kind == "HTTPRoute" else None) if v]
        seen: dict[str, dict[str, Any]] = {}
        for api_version in versions:
            for route in self.rest.list(kind_of(api_version, kind), self.namespace):
                route.setdefault("apiVersion", api_version)
                route.setdefault("kind", kind)
                if attached_to(route, service, self.namespace, port):
                    seen[f"{api_version.split('/')[0]}/{route['metadata']['name']}"] = route
        return list(seen.values())

    def service_profile(self, service: str) -> dict[str, Any] | None:
        return self.rest.get(kind_of("linkerd.io/v1alpha2", "ServiceProfile"), self.namespace,
                             fqdn(service, self.namespace))

    def pods(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        """The namespace's pods that ``selector`` (a Service's) selects, not being deleted."""
        chosen = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return [p for p in self.rest.list(kind_of("v1", "Pod"), self.namespace, chosen)
                if not (p.get("metadata") or {}).get("deletionTimestamp")]

    def servers(self) -> list[dict[str, Any]]:
        """The namespace's Servers (none where Linkerd's policy CRDs are not installed)."""
        return self.rest.list(kind_of(POLICY_V1BETA3, "Server"), self.namespace)

    # ------------------------------------------------------------------------------------------- objects
    def owned_object(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """The harness's object of that name as it stands (its digest annotation says what was written), or
        None when there is none, or only someone else's."""
        current = self.rest.get(kind_of(api_version, kind), self.namespace, name)
        if current is None or not owned(current):
            return None
        meta = current["metadata"]
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta},
                "spec": current.get("spec") or {}}

    def swap(self, old: dict[str, Any] | None, new: dict[str, Any] | None, *, undoing: bool = False) -> bool:
        """Make the harness's object ``old`` (None: there is none) into ``new`` (None: delete it): create,
        replace or delete, each only where the cluster holds ``old`` (by its digest). Nothing where it holds
        ``new`` already. A same-named object that is not the harness's is never touched: creating over it is
        a Conflict, and deleting it does nothing (nothing of the harness's is there). An undo finds the
        harness's object gone and leaves it gone. False when nothing was written."""
        ref = new if new is not None else old
        assert ref is not None
        kind = kind_of(ref["apiVersion"], ref["kind"])
        meta = ref["metadata"]
        current = self.rest.get(kind, meta["namespace"], meta["name"])
        have = _digest(current) if current is not None and owned(current) else None
        if new is not None and have == _digest(new):
            return False
        if current is not None and have is None:
            if new is None:
                return False
            raise Conflict(f"{key_of(ref)} exists in the cluster and is not mesh-harness's; it was left as it is: "
                           "remove or rename it, then run again")
        if current is None and old is not None:
            if undoing:
                return False  # removed by someone else meanwhile: nothing of the harness's to put back
            raise Conflict(f"{key_of(ref)} was removed from the cluster since mesh-harness wrote it")
        if old is None and current is not None:
            raise Conflict(f"{key_of(ref)} is in the cluster already, from another change of mesh-harness (a run "
                           "killed before its cleanup?): run mesh-harness cleanup, or delete it, then run again")
        if old is not None and _digest(old) != have:
            raise Conflict(f"{key_of(ref)} in the cluster is no longer the one mesh-harness wrote (its {DIGEST} "
                           "annotation changed); it was left as it is")
        version = None if current is None else current["metadata"].get("resourceVersion")
        try:
            if new is None:
                self.rest.delete(kind, meta["namespace"], meta["name"], version)
            elif current is None:
                self.rest.create(kind, new)
            else:
                self.rest.replace(kind, {**new, "metadata": {**new["metadata"], "resourceVersion": version}})
        except Conflict:
            raise Conflict(f"{key_of(ref)} changed while mesh-harness wrote it; it was left as it is") from None
        return True

    # ------------------------------------------------------------------------------------------- annotations
    def annotate(self, service: str, want: dict[str, str | None], expect: dict[str, str | None], *,
                 undoing: bool = False) -> bool:
        """Set each annotation of Service ``service`` to ``want`` (None: remove it) where it holds
        ``expect``; nothing where it holds ``want`` already; a Conflict (nothing written) where any key
        holds a third value. The write carries the resourceVersion read: an unrelated edit of the Service
        in between (a label, a Flagger step) makes the API server refuse it, and it is read and tried again.
        An undo on a Service that is gone does nothing (the harness's annotations went with it). False when
        nothing was written."""
        for _ in range(5):
            current = self.service(service)
            if current is None:
                if undoing or all(v is None for v in want.values()):
                    return False
                raise MeshError(f"Service {self.namespace}/{service} is not in the cluster")
            have = current["metadata"].get("annotations") or {}
            changed = {k: v for k, v in want.items() if have.get(k) != v}
            if not changed:
                return False
            wrong = {k: have.get(k) for k in changed if have.get(k) != expect.get(k)}
            if wrong:
                shown = ", ".join(f"{k}={v!r} (expected {expect.get(k)!r})" for k, v in sorted(wrong.items()))
                raise Conflict(f"Service {self.namespace}/{service} was changed since mesh-harness read it: {shown}; "
                               "it was left as it is: set the annotations you want, then run mesh-harness cleanup "
                               "again")
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"], "annotations": changed}}
            try:
                self.rest.merge_patch(kind_of("v1", "Service"), self.namespace, service, patch)
            except Conflict:
                continue  # something else of the Service changed in between: read it again
            return True
        raise Conflict(f"Service {self.namespace}/{service} kept changing while mesh-harness wrote its annotations "
                       "(409 Conflict five times); it was left as the other writers made it")

    # ------------------------------------------------------------------------------------------- readiness
    def wait(self, what: str, ready: Callable[[], str | None], timeout_s: float) -> None:
        """Until ``ready()`` says None (ready); MeshError with its last word after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            reason = ready()
            if reason is None:
                return
            if time.monotonic() > deadline:
                raise MeshError(f"{what} was not ready within {timeout_s:g}s: {reason}")
            time.sleep(0.2)

    def route_state(self, route: dict[str, Any]) -> str | None:
        """None once Linkerd's policy controller has accepted ``route`` as it now stands (its conditions
        observed the route's current generation) with every backend resolved: only accepted routes reach
        the proxies (§1.2). Else what is missing; a refusal (``Accepted`` False) is an error at once."""
        meta = route["metadata"]
        current = self.rest.get(kind_of(route["apiVersion"], route["kind"]), meta["namespace"], meta["name"])
        if current is None:
            return "it is not in the cluster"
        ours = [p for p in (current.get("status") or {}).get("parents") or []
                if p.get("controllerName") == "linkerd.io/policy-controller"]
        if not ours:
            return ("no status from linkerd.io/policy-controller yet (is Linkerd's control plane running, and were "
                    "the route CRDs installed before it started?)")
        generation = current["metadata"].get("generation")
        conditions = {c.get("type"): c for p in ours for c in p.get("conditions") or []
                      if c.get("observedGeneration") in (None, generation)}
        accepted, resolved = conditions.get("Accepted"), conditions.get("ResolvedRefs")
        if accepted is None:
            return f"its generation {generation} not observed by the policy controller yet"
        if accepted.get("status") != "True":
            raise MeshError(f"Linkerd's policy controller did not accept {key_of(route)}: {accepted.get('reason')}: "
                            f"{accepted.get('message')}")
        if resolved is not None and resolved.get("status") != "True":  # a backend not indexed yet: wait
            return f"ResolvedRefs is {resolved.get('status')} ({resolved.get('reason')}: {resolved.get('message')})"
        return None

    def deployment_state(self, deployment: dict[str, Any]) -> str | None:
        """None once the Deployment has an available pod: an unready backend is skipped by the callers'
        proxies, and the fault would quietly reach no one (§2.3)."""
        meta = deployment["metadata"]
        current = self.rest.get(kind_of("apps/v1", "Deployment"), meta["namespace"], meta["name"])
        if current is None:
            return "it is not in the cluster"
        available = int((current.get("status") or {}).get("availableReplicas") or 0)
        return None if available >= 1 else "no available replica yet (is its image pullable here?)"
