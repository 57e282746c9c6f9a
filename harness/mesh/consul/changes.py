"""How the Consul driver carries out intents: each becomes writes of whole config entries, with check-and-set,
and the undo writes back the exact entry each one was (or deletes the one the change created).

* ``traffic-shift``: the service's ``service-splitter`` weights (its resolver has a subset per version).
* policy overrides: retries and timeout in the callee's ``service-router`` (which every caller of the callee
  follows: the description names them), breakers and ejection in the caller's ``service-defaults``
  (``UpstreamConfig.Overrides``, per callee).
* ``kill`` / ``pause``: the instance's app process, by signal (the local mesh's own).

``do`` and ``undo`` have one shape, ``{"op": "consul-entries", "entries": [{kind, name, from, to}], "watch":
[node ids]}``: each entry is swapped from the entry expected to the new one (None: absent), so applying twice,
undoing twice or undoing what was never applied changes nothing, and an entry someone else changed meanwhile
is reported (:class:`Conflict`), never overwritten. A swap returns once every watched Envoy's configuration
has changed (Consul has pushed it), which is the activation time.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError
from harness.mesh.base import GATEWAY, Prepared
from harness.mesh.consul import entries
from harness.mesh.intents import Intent, PolicyOverride, ProcessSignal, SplitChange
from harness.mesh.local import signals
from harness.mesh.local.topology import GATEWAY_ID
from harness.mesh.policy import merge_policy, resolve
from harness.model.environment import EdgePolicy

if TYPE_CHECKING:
    from harness.mesh.consul.driver import ConsulMesh

__all__ = ["Conflict", "apply", "normalized", "prepare", "undo"]

PUSH_TIMEOUT_S = 10.0
"""How long a swap waits for Consul to push it to every watched Envoy before it is an error."""
_INDEXES = ("CreateIndex", "ModifyIndex", "Hash")


class Conflict(FaultError):
    """A config entry is not what a change expected: someone else changed it since (reported, not overwritten)."""


def normalized(entry: dict[str, Any] | None) -> Any:
    """An entry as compared: without Consul's indexes, without empty values (Consul leaves out what is empty,
    and fills in nothing the harness writes), durations in seconds (Consul returns some as nanoseconds)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: round(entries.go_duration(v), 9) if k in entries.DURATION_KEYS and v not in (None, "")
                   else clean(v) for k, v in value.items() if k not in _INDEXES}
            return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return None if entry is None else clean(entry)


# ----------------------------------------------------------------------------------- prepare
def prepare(mesh: ConsulMesh, intent: Intent) -> Prepared:
    if isinstance(intent, SplitChange):
        return _split(mesh, intent)
    if isinstance(intent, PolicyOverride):
        return _policy(mesh, intent)
    if isinstance(intent, ProcessSignal):
        return signals.prepare(mesh, intent)
    refusal = mesh.capabilities.refusal(getattr(intent, "kind", type(intent).__name__))
    raise FaultError(f"the consul mesh cannot carry out {type(intent).__name__}"
                     + (f": {refusal.reason}" if refusal else ""))


def _swap(description: str, intent: Intent, changes: list[tuple[str, str, dict[str, Any] | None,
                                                                dict[str, Any] | None]],
          watch: list[str]) -> Prepared:
    items = [{"kind": kind, "name": name, "from": _unindexed(old), "to": _unindexed(new)}
             for kind, name, old, new in changes if normalized(old) != normalized(new)]
    undo_items = [{"kind": i["kind"], "name": i["name"], "from": i["to"], "to": i["from"]} for i in reversed(items)]
    return Prepared(intent, description, {"op": "consul-entries", "entries": items, "watch": watch},
                    {"op": "consul-entries", "entries": undo_items, "watch": watch})


def _callers_nodes(mesh: ConsulMesh, service: str) -> list[str]:
    """The Envoys whose routes to ``service`` a router or splitter of it changes: its callers', and the
    gateway's when load enters there."""
    callers = {s.name for s in mesh.env.spec.services if any(c.to == service for c in s.calls)}
    nodes = [n.id for n in mesh.nodes() if n.instance is not None and n.instance.service in callers]
    if mesh.env.spec.gateway.service == service:
        nodes.append(GATEWAY_ID)
    return nodes


def _service_of(mesh: ConsulMesh, node_id: str) -> str:
    instance = mesh.node(node_id).instance
    return instance.service if instance is not None else GATEWAY


def _split(mesh: ConsulMesh, intent: SplitChange) -> Prepared:
    service = intent.service
    if len(mesh.env.spec.service(service).versions) < 2:
        raise FaultError(f"traffic-shift of {service}: it has one version, nothing to shift between")
    old = mesh.api.config_entry("service-splitter", service)
    new = entries.splitter(service, dict(intent.weights))
    weights = ", ".join(f"{v} {w:g}%" for v, w in intent.weights)
    return _swap(f"service-splitter {service}: {weights}", intent, [("service-splitter", service, old, new)],
                 _callers_nodes(mesh, service))


def _policy(mesh: ConsulMesh, intent: PolicyOverride) -> Prepared:
    caller, callee = intent.caller, intent.callee
    current = mesh.policy(caller, callee)
    override = EdgePolicy.model_validate(intent.fields)
    wanted = resolve(merge_policy(_as_edge(current), override), mesh.defaults)
    changes: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    described = []
    watch: list[str] = []
    if {"retries", "timeout"} & intent.fields.keys():
        old = mesh.api.config_entry("service-router", callee)
        changes.append(("service-router", callee, old, entries.router(callee, wanted)))
        others = sorted({_service_of(mesh, n) for n in _callers_nodes(mesh, callee)} - {caller})
        described.append(f"service-router {callee}" + (f" (every caller follows it: also {', '.join(others)})"
                                                       if others else ""))
        watch += _callers_nodes(mesh, callee)
    if {"circuit_breaker", "outlier_detection"} & intent.fields.keys():
        if caller in (GATEWAY, GATEWAY_ID):
            raise FaultError("circuit_breaker and outlier_detection on the gateway's edge: the harness's ingress "
                             "gateway has no service-defaults of its own to hold them")
        old = mesh.api.config_entry("service-defaults", caller)
        new = dict(old or {"Kind": "service-defaults", "Name": caller, "Protocol": "http"})
        upstream = dict(new.get("UpstreamConfig") or {})
        overrides = [o for o in upstream.get("Overrides") or [] if o.get("Name") != callee]
        upstream["Overrides"] = [*overrides, entries.upstream_overrides(callee, wanted)]
        new["UpstreamConfig"] = upstream
        changes.append(("service-defaults", caller, old, new))
        described.append(f"service-defaults {caller} (upstream {callee})")
        watch += [n.id for n in mesh.nodes() if n.instance is not None and n.instance.service == caller]
    return _swap(f"policy {caller}->{callee}: {intent.fields} as " + " and ".join(described), intent, changes,
                 sorted(set(watch)))


def _as_edge(p: Any) -> EdgePolicy:
    """A resolved policy as the fields an override merges into."""
    data: dict[str, Any] = {"timeout": entries.duration(p.timeout_s),
                            "circuit_breaker": {"max_connections": p.max_connections, "max_pending": p.max_pending,
                                                "max_requests": p.max_requests}}
    if p.retries:
        data["retries"] = {"attempts": p.retries, "on": list(p.retry_on)}
    if p.outlier is not None:
        o = p.outlier
        data["outlier_detection"] = {"consecutive_5xx": o.consecutive_5xx, "interval": entries.duration(o.interval_s),
                                     "base_ejection_time": entries.duration(o.base_ejection_time_s),
                                     "max_ejection_percent": round(o.max_ejection_percent)}
    return EdgePolicy.model_validate(data)


# ----------------------------------------------------------------------------------- apply / undo
def apply(mesh: ConsulMesh, prepared: Prepared) -> float:
    """Carry out ``prepared.do``; the ms until every Envoy it concerns shows it."""
    start = time.perf_counter()
    op = prepared.do["op"]
    if op == "consul-entries":
        swap(mesh, prepared.do)
    elif op == "signal":
        signals.apply(mesh, prepared.do)
    else:
        raise FaultError(f"the consul mesh has no operation {op!r}")
    return (time.perf_counter() - start) * 1000


def undo(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    op = data["op"]
    if op == "consul-entries":
        swap(mesh, data)
    elif op == "signal-clear":
        signals.undo(mesh, data)
    else:
        raise FaultError(f"unknown undo operation {op!r} in the journal")


def swap(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    """Swap each entry from ``from`` to ``to`` with check-and-set; then wait until Consul has pushed the result
    to every watched Envoy. Entries already as wanted are left alone (a replayed undo writes nothing)."""
    watch = [mesh.node(n) for n in data.get("watch", []) if n in {x.id for x in mesh.nodes()}]
    before = {node.id: mesh.config_digest(node) for node in watch}
    wrote = False
    for item in data["entries"]:
        kind, name = item["kind"], item["name"]
        current = mesh.api.config_entry(kind, name)
        if normalized(current) == normalized(item["to"]):
            continue
        if normalized(current) != normalized(item["from"]):
            raise Conflict(f"the {kind} {name} was changed by someone else since the harness read it; it is left as "
                           f"it is. Now: {json.dumps(normalized(current))[:300]}")
        index = int(current["ModifyIndex"]) if current else 0
        ok = (mesh.api.delete_config_entry(kind, name, cas=index) if item["to"] is None
              else mesh.api.put_config_entry(item["to"], cas=index))
        if not ok:
            raise Conflict(f"the {kind} {name} was changed by someone else while the harness wrote it (check-and-set "
                           "lost); it is left as it is")
        wrote = True
    if not wrote:
        return
    pending = dict(before)
    deadline = time.monotonic() + PUSH_TIMEOUT_S
    while pending:
        for node_id, digest in list(pending.items()):
            if mesh.config_digest(mesh.node(node_id)) != digest:
                del pending[node_id]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"Consul did not push the change to {', '.join(sorted(pending))} within "
                             f"{PUSH_TIMEOUT_S:g}s; see {mesh.logs_hint('consul')}")
        time.sleep(0.01)


def _unindexed(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """An entry as it is written back: Consul's own text of it, without the indexes it adds."""
    return None if entry is None else {k: v for k, v in entry.items() if k not in _INDEXES}


def digest(documents: list[Any]) -> str:
    """A digest of Envoy config dumps without their timestamps (``last_updated`` moves on every push)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "last_updated"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return hashlib.sha256(json.dumps(strip(documents), sort_keys=True).encode()).hexdigest()
