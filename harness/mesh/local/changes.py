"""How the local mesh carries out intents: each becomes a JSON ``do`` and its exact JSON ``undo``.

* HTTP faults: every sidecar's inbound HCM and every outbound HCM carries a fault filter configured at
  0% whose runtime keys are unique to it (``envoy_config.fault_runtime_keys``); a fault sets those keys
  in each Envoy's RTDS file layer, the undo removes them. ``at: target`` sets the target instances'
  inbound keys (every caller's retries, timeouts and breakers then meet the fault); ``at: caller`` the
  callers' outbound keys for that callee, where Istio's VirtualService faults act.
* Policy overrides and splits: kept in the state file and rendered into CDS then RDS of every Envoy that
  calls the service; the undo puts back what was there before.
* Certificates (:mod:`harness.mesh.local.certs`): new material published through the SDS files' ``..data``
  renames; the undo re-publishes the material kept before the change.

Instances are named from the environment alone (``service-version-replica``), so ``prepare`` works
without a running mesh and ``plan`` shows exactly the Envoys a run will change.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError
from harness.mesh.base import GATEWAY, Prepared
from harness.mesh.intents import (
    CertChange,
    HttpFault,
    Intent,
    NetworkToxic,
    Partition,
    PolicyOverride,
    ProcessSignal,
    SplitChange,
)
from harness.mesh.local import certs, signals, wire
from harness.mesh.local.envoy_config import FAULT_DENOMINATOR, cluster_name, fault_runtime_keys
from harness.model.durations import format_duration

if TYPE_CHECKING:
    from harness.mesh.local.driver import LocalMesh

__all__ = ["apply", "instance_ids", "prepare", "undo"]


def instance_ids(mesh: LocalMesh, service: str, version: str | None = None) -> list[str]:
    """The ids the local mesh gives a service's instances, from the environment alone."""
    svc = mesh.env.spec.service(service)
    return [f"{service}-{v}-{i}" for v, spec in svc.versions.items() if version in (None, v)
            for i in range(spec.replicas)]


# ------------------------------------------------------------------------------------------- prepare
def prepare(mesh: LocalMesh, intent: Intent) -> Prepared:
    if isinstance(intent, HttpFault):
        return _http_fault(mesh, intent)
    if isinstance(intent, NetworkToxic | Partition):
        return wire.prepare(mesh, intent)
    if isinstance(intent, ProcessSignal):
        return signals.prepare(mesh, intent)
    if isinstance(intent, PolicyOverride):
        return _policy(mesh, intent)
    if isinstance(intent, SplitChange):
        return _split(mesh, intent)
    if isinstance(intent, CertChange):
        return certs.prepare(mesh, intent)
    raise FaultError(f"the local mesh cannot carry out {type(intent).__name__} yet")


def _http_fault(mesh: LocalMesh, fault: HttpFault) -> Prepared:
    spec = mesh.env.spec
    if fault.at == "target":
        nodes = instance_ids(mesh, fault.service, fault.version)
        keys = fault_runtime_keys("inbound")
        where = f"the inbound fault filter of {', '.join(nodes)}"
    else:
        if fault.version:
            raise FaultError(f"{fault.kind} at: caller cannot be narrowed to version {fault.version}; "
                             "drop target.version or use at: target")
        nodes = [n for c in spec.callers_of(fault.service) for n in instance_ids(mesh, c)]
        if fault.service == spec.gateway.service:
            nodes.append(GATEWAY)
        keys = fault_runtime_keys(f"out.{fault.service}")
        where = f"the outbound_{fault.service} fault filter of {', '.join(nodes)}"
    if not nodes:
        raise FaultError(f"{fault.kind}: no Envoy carries {fault.service} ({fault.at})")
    fraction = {"numerator": round(fault.percent * FAULT_DENOMINATOR / 100), "denominator": "MILLION"}
    values: dict[str, Any]
    if fault.abort_status is not None:
        values = {keys["abort.percent"]: fraction, keys["abort.status"]: fault.abort_status}
        what = f"abort {fault.percent:g}% with {fault.abort_status}"
    else:
        delay_s = fault.delay_s or 0.0
        values = {keys["delay.percent"]: fraction, keys["delay.ms"]: round(delay_s * 1000)}
        what = f"delay {fault.percent:g}% by {format_duration(delay_s)}"
    shown = ", ".join(f"{k} -> {v['numerator'] if isinstance(v, dict) else v}" for k, v in values.items())
    return Prepared(
        fault, f"{what} on {where} (runtime {shown}, percent per {FAULT_DENOMINATOR})",
        {"op": "runtime-set", "nodes": nodes, "values": values},
        {"op": "runtime-clear", "nodes": nodes, "keys": sorted(values)},
    )


def _policy(mesh: LocalMesh, change: PolicyOverride) -> Prepared:
    key = f"{change.caller}->{change.callee}"
    state = mesh.saved_state()
    previous = state.overrides.get(key) if state is not None else None
    merged = dict(previous or {}) | change.fields
    clusters = ", ".join(cluster_name(change.callee, v) for v in mesh.env.spec.service(change.callee).versions)
    callers = ", ".join(instance_ids(mesh, change.caller))
    return Prepared(
        change, f"Envoy clusters {clusters} and the route of listener outbound_{change.callee} on {callers} "
                "(CDS, then RDS)",
        {"op": "policy-set", "caller": change.caller, "callee": change.callee, "policy": merged},
        {"op": "policy-restore", "caller": change.caller, "callee": change.callee, "previous": previous},
    )


def _split(mesh: LocalMesh, change: SplitChange) -> Prepared:
    state = mesh.saved_state()
    previous = state.splits.get(change.service) if state is not None else None
    weights = dict(change.weights)
    shown = "/".join(f"{v} {w:g}%" for v, w in weights.items())
    return Prepared(
        change, f"split of {change.service}: {shown} (route of listener outbound_{change.service} on its callers)",
        {"op": "split-set", "service": change.service, "split": weights},
        {"op": "split-restore", "service": change.service, "previous": previous},
    )


# ------------------------------------------------------------------------------------------- apply/undo
def apply(mesh: LocalMesh, prepared: Prepared) -> float:
    """Carry out ``prepared.do``; return the ms until every Envoy it touches shows it."""
    do = prepared.do
    start = time.perf_counter()
    op = do["op"]
    if op == "runtime-set":
        for node_id in do["nodes"]:
            mesh.set_runtime(mesh.node(node_id), do["values"])
    elif op == "policy-set":
        mesh.set_override(do["caller"], do["callee"], do["policy"])
    elif op == "split-set":
        mesh.set_split(do["service"], do["split"])
    elif op == "wire-set":
        wire.apply(mesh, do)
    elif op == "signal":
        signals.apply(mesh, do)
    elif op in ("certs-rotate", "certs-untrusted"):
        certs.apply(mesh, do)
    else:
        raise FaultError(f"the local mesh has no operation {op!r}")
    return (time.perf_counter() - start) * 1000


def undo(mesh: LocalMesh, data: dict[str, Any]) -> None:
    """Reverse one change; a node that is gone has nothing left to undo."""
    op = data["op"]
    if op == "runtime-clear":
        for node_id in data["nodes"]:
            try:
                node = mesh.node(node_id)
            except KeyError:
                continue
            mesh.set_runtime(node, dict.fromkeys(data["keys"]))
    elif op == "policy-restore":
        mesh.set_override(data["caller"], data["callee"], data.get("previous"))
    elif op == "split-restore":
        mesh.set_split(data["service"], data.get("previous"))
    elif op == "wire-clear":
        wire.undo(mesh, data)
    elif op == "signal-clear":
        signals.undo(mesh, data)
    elif op == "certs-restore":
        certs.undo(mesh, data)
    else:
        raise FaultError(f"unknown undo operation {op!r} in the journal")
