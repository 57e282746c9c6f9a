"""``http-abort`` and ``http-delay``: Envoy's fault filter, configured at 0%, raised through runtime.

Every sidecar's inbound HCM and every outbound HCM carries a fault filter whose runtime keys are unique
to it (see ``envoy_config.fault_runtime_keys``), so a fault is scoped exactly: ``at: target`` (default)
sets the keys of the target instances' inbound filter, where the target receives traffic and every
caller's retries, timeouts and breakers meet it; ``at: caller`` sets the keys of the callers' outbound
filter for that callee, where Istio's VirtualService faults act. The keys live in each Envoy's RTDS
file layer; the undo removes them, which returns the filter to its configured 0%.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from harness._errors import FaultError
from harness.mesh.local.driver import LocalMesh
from harness.mesh.local.envoy_config import FAULT_DENOMINATOR, fault_runtime_keys
from harness.mesh.local.topology import GATEWAY_ID
from harness.model.suite import HttpAbort, HttpDelay

__all__ = ["HttpFaultPlan", "plan_http_fault", "undo_runtime"]


@dataclass(frozen=True)
class HttpFaultPlan:
    """The runtime keys one HTTP fault sets, on which Envoys; JSON-able for the journal."""

    nodes: list[str]
    values: dict[str, Any]
    description: str

    def undo(self) -> dict[str, Any]:
        return {"op": "runtime-clear", "nodes": self.nodes, "keys": sorted(self.values)}


def plan_http_fault(mesh: LocalMesh, fault: HttpAbort | HttpDelay) -> HttpFaultPlan:
    target = fault.target
    if fault.at == "target":
        nodes = [n.id for n in mesh.iter_envoys_of(target.service, target.version)]
        keys = fault_runtime_keys("inbound")
        where = f"inbound of {target}"
    else:
        if target.version:
            raise FaultError(f"{fault.kind} at: caller cannot be narrowed to version {target.version} yet; "
                             "drop target.version or use at: target")
        callers = set(mesh.env.spec.callers_of(target.service))
        nodes = [n.id for n in mesh.nodes() if n.instance and n.instance.service in callers]
        if target.service == mesh.env.spec.gateway.service:
            nodes.append(GATEWAY_ID)
        keys = fault_runtime_keys(f"out.{target.service}")
        where = f"outbound to {target.service} on its callers"
    if not nodes:
        raise FaultError(f"{fault.kind}: no Envoy matches {target} ({where})")
    fraction = {"numerator": round(fault.percent * FAULT_DENOMINATOR / 100), "denominator": "MILLION"}
    values: dict[str, Any]
    if isinstance(fault, HttpAbort):
        values = {keys["abort.percent"]: fraction, keys["abort.status"]: fault.status}
        what = f"abort {fault.percent:g}% with {fault.status}"
    else:
        values = {keys["delay.percent"]: fraction, keys["delay.ms"]: round(fault.delay * 1000)}
        what = f"delay {fault.percent:g}% by {fault.delay * 1000:g}ms"
    return HttpFaultPlan(nodes, values, f"{what} at {where} ({len(nodes)} Envoy(s))")


def apply_http_fault(mesh: LocalMesh, plan: HttpFaultPlan) -> float:
    """Write the runtime keys on every node and wait until each Envoy shows them.

    Returns the activation time in ms: from the first write to the last Envoy confirming the keys in
    its ``/runtime``, after which every new request is subject to the fault.
    """
    start = time.perf_counter()
    for n, node_id in enumerate(plan.nodes):
        mesh.set_runtime(mesh.node(node_id), plan.values)
        if n == 0 and os.environ.get("MESH_HARNESS_INJECT") == "fault-apply":
            # Test hook for the kill matrix: fail half-way through applying, after one Envoy changed.
            raise FaultError("injected failure while applying a fault (MESH_HARNESS_INJECT=fault-apply)")
    return (time.perf_counter() - start) * 1000


def undo_runtime(mesh: LocalMesh, nodes: list[str], keys: list[str]) -> None:
    """Remove the keys from each node's runtime layer; a node that is gone has nothing left to undo."""
    for node_id in nodes:
        try:
            node = mesh.node(node_id)
        except KeyError:
            continue
        mesh.set_runtime(node, dict.fromkeys(keys))
