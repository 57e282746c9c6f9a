"""How the Istio driver carries out intents: each becomes writes of whole Istio objects, and the undo
writes back the exact text each object had (or removes the one the change created).

* ``http-abort`` / ``http-delay`` (``at: caller``): a ``fault`` on every route of the VirtualService for
  the target's host, and on the gateway's routes to it when the target is where load enters. That is
  where Istio's faults act: in the callers' sidecars, before their router, so the callers' own retries
  never see an injected abort (reference/mesh-semantics.md §2).
* ``traffic-shift``: the weights of every route to the service, across its version subsets (a subset the
  DestinationRule lacks is added to it, labelled ``version: V``).
* policy overrides: retries and timeout on the caller's own route (matched by ``sourceLabels``), breakers
  and ejection in the host's DestinationRule.
* ``kill``: the instance's app process is killed and started again; in a cluster, the chosen pods are
  deleted (:mod:`harness.mesh.kube.pods`) and their controller replaces them.

``do`` and ``undo`` have the same shape, ``{"op": "istio-objects", "objects": [{key, expect, text}]}``:
each object is swapped from the text expected to the new text, so applying twice, undoing twice or
undoing what was never applied changes nothing, and an object someone else changed meanwhile is
reported (:class:`~harness.mesh.istio.config.Conflict`), never overwritten.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError, MeshError
from harness.mesh.base import GATEWAY, Prepared
from harness.mesh.intents import HttpFault, Intent, PolicyOverride, ProcessSignal, SplitChange
from harness.mesh.istio import routing
from harness.mesh.istio.config import dump
from harness.mesh.istio.objects import _integer_weights, duration, fqdn, key_of
from harness.mesh.kube import pods
from harness.mesh.local import signals
from harness.model.environment import EdgePolicy

if TYPE_CHECKING:
    from harness.mesh.istio.driver import IstioMesh

__all__ = ["apply", "prepare", "undo"]


def prepare(mesh: IstioMesh, intent: Intent) -> Prepared:
    if isinstance(intent, HttpFault):
        return _fault(mesh, intent)
    if isinstance(intent, SplitChange):
        return _split(mesh, intent)
    if isinstance(intent, PolicyOverride):
        return _policy(mesh, intent)
    if isinstance(intent, ProcessSignal) and intent.action == "kill":
        if mesh.control_plane != "local":
            try:
                return pods.prepare_kill(mesh.pods, intent)
            except MeshError as exc:  # plan with no cluster to reach: it still shows the change
                return pods.unlisted_kill(intent, mesh.namespace, str(exc))
        return signals.prepare(mesh, intent)
    refusal = mesh.capabilities.refusal(getattr(intent, "kind", type(intent).__name__))
    raise FaultError(f"the istio mesh cannot carry out {type(intent).__name__}"
                     + (f": {refusal.reason}" if refusal else ""))


def _objects_change(intent: Intent, description: str, changes: list[tuple[str, str | None, str | None]],
                    services: list[str]) -> Prepared:
    """A Prepared that swaps each (key, previous text, new text); the undo swaps them back, last first."""
    do = {"op": "istio-objects", "services": services,
          "objects": [{"key": k, "expect": old, "text": new} for k, old, new in changes]}
    undo = {"op": "istio-objects", "services": services,
            "objects": [{"key": k, "expect": new, "text": old} for k, old, new in reversed(changes)]}
    return Prepared(intent, description, do, undo)


def _entry_routes(mesh: IstioMesh, host: str) -> list[dict[str, Any]]:
    return routing.routes_to(mesh.objects(), host)


def _fault(mesh: IstioMesh, fault: HttpFault) -> Prepared:
    if fault.at != "caller":
        raise FaultError(f"{fault.kind} at: {fault.at}: Istio's VirtualService faults act in the callers' sidecars; "
                         "write at: caller")
    if fault.version:
        raise FaultError(f"{fault.kind} at: caller cannot be narrowed to version {fault.version}: an Istio fault is "
                         "on a route, before the route picks a version; drop target.version")
    ns = mesh.namespace
    host = fqdn(fault.service, ns)
    percentage = {"value": fault.percent}
    spec: dict[str, Any]
    if fault.abort_status is not None:
        spec = {"abort": {"httpStatus": fault.abort_status, "percentage": percentage}}
        what = f"abort {fault.percent:g}% with {fault.abort_status}"
    else:
        spec = {"delay": {"fixedDelay": duration(fault.delay_s or 0.0), "percentage": percentage}}
        what = f"delay {fault.percent:g}% by {duration(fault.delay_s or 0.0)}"
    objects = mesh.objects()
    changes: list[tuple[str, str | None, str | None]] = []
    vs = routing.virtual_service(objects, host)
    if mesh.env.spec.callers_of(fault.service) or vs is not None:
        new = routing.with_fault(vs, host, ns, fault.service, spec)
        changes.append((key_of(new), dump(vs) if vs else None, dump(new)))
    for gw in _entry_routes(mesh, host):
        new = routing.with_fault(gw, host, ns, gw["metadata"]["name"], spec, only_to=True)
        changes.append((key_of(new), dump(gw), dump(new)))
    if not changes:
        raise FaultError(f"{fault.kind}: nothing routes to {fault.service} (no caller and no gateway route)")
    where = ", ".join(k for k, _, _ in changes)
    return _objects_change(fault, f"{what}: fault on the routes to {host} in {where}", changes, [fault.service])


def _subsets(mesh: IstioMesh, host: str, versions: list[str],
             changes: list[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """Subset name per version from the host's DestinationRule; missing ones are added to it (a change)."""
    dr = routing.destination_rule(mesh.objects(), host)
    if dr is None:
        raise FaultError(f"no DestinationRule for {host}: a shift needs its version subsets; add one to istio.config")
    names = {s.get("labels", {}).get("version"): s["name"] for s in dr["spec"].get("subsets", [])}
    missing = [v for v in versions if v not in names]
    if missing:
        import copy

        new = copy.deepcopy(dr)
        for v in missing:
            new["spec"].setdefault("subsets", []).append({"name": v, "labels": {"version": v}})
            names[v] = v
        changes.append((key_of(new), dump(dr), dump(new)))
    return {v: str(names[v]) for v in versions}


def _split(mesh: IstioMesh, change: SplitChange) -> Prepared:
    ns = mesh.namespace
    host = fqdn(change.service, ns)
    weights = _integer_weights(dict(change.weights))
    changes: list[tuple[str, str | None, str | None]] = []
    subsets = _subsets(mesh, host, list(weights), changes)
    port = mesh.ports.get(change.service)
    objects = mesh.objects()
    vs = routing.virtual_service(objects, host)
    if mesh.env.spec.callers_of(change.service) or vs is not None:
        new = routing.with_split(vs, host, ns, change.service, weights, subsets, port)
        changes.append((key_of(new), dump(vs) if vs else None, dump(new)))
    for gw in _entry_routes(mesh, host):
        new = routing.with_split(gw, host, ns, gw["metadata"]["name"], weights, subsets, port, only_to=True)
        changes.append((key_of(new), dump(gw), dump(new)))
    shown = "/".join(f"{v} {w}%" for v, w in weights.items())
    where = ", ".join(k for k, _, _ in changes)
    return _objects_change(change, f"split of {change.service}: {shown} (route weights in {where})", changes,
                           [change.service])


def _policy(mesh: IstioMesh, change: PolicyOverride) -> Prepared:
    ns = mesh.namespace
    host = fqdn(change.callee, ns)
    objects = mesh.objects()
    vs, dr = routing.virtual_service(objects, host), routing.destination_rule(objects, host)
    if change.caller == GATEWAY:
        raise FaultError("a policy on the gateway's edge lives in the gateway's VirtualService: put it in istio.config")
    edge = EdgePolicy.model_validate(change.fields)
    new_vs, new_dr = routing.with_policy(vs, dr, host, ns, change.callee, change.caller, edge)
    changes: list[tuple[str, str | None, str | None]] = []
    if new_vs is not None:
        changes.append((key_of(new_vs), dump(vs) if vs else None, dump(new_vs)))
    if new_dr is not None and dr is not None:
        changes.append((key_of(new_dr), dump(dr), dump(new_dr)))
    fields = ", ".join(sorted(change.fields))
    where = ", ".join(k for k, _, _ in changes)
    note = " (the DestinationRule's settings hold for every caller of the host)" if new_dr is not None else ""
    return _objects_change(change, f"{fields} on {change.caller} -> {change.callee}: {where}{note}", changes,
                           [change.callee])


def apply(mesh: IstioMesh, prepared: Prepared) -> float:
    """Carry out ``prepared.do``; the ms until every Envoy it concerns shows it."""
    start = time.perf_counter()
    op = prepared.do["op"]
    if op == "istio-objects":
        mesh.swap_objects(prepared.do)
    elif op == "signal":
        signals.apply(mesh, prepared.do)
    elif op == "pod-delete":
        if prepared.do.get("unlisted"):
            raise MeshError(f"kill: the pods to delete could not be listed: {prepared.do['unlisted']}")
        mesh.pods.delete(prepared.do["pods"])
    else:
        raise FaultError(f"the istio mesh has no operation {op!r}")
    return (time.perf_counter() - start) * 1000


def undo(mesh: IstioMesh, data: dict[str, Any]) -> None:
    op = data["op"]
    if op == "istio-objects":
        mesh.swap_objects(data)
    elif op == "signal-clear":
        signals.undo(mesh, data)
    elif op == "pod-delete-undo":
        pass  # a deleted pod is replaced by its controller: nothing of the harness's to put back
    else:
        raise FaultError(f"unknown undo operation {op!r} in the journal")
