"""How the Consul driver carries out intents: each becomes writes of whole config entries, with check-and-set,
and the undo writes back the exact entry each one was (or deletes the one the change created).

* ``traffic-shift``: the service's ``service-splitter`` weights (its resolver has a subset per version).
* policy overrides: retries and timeout in the callee's ``service-router`` (which every caller of the callee
  follows: the description names them), breakers and ejection in the caller's ``service-defaults``
  (``UpstreamConfig.Overrides``, per callee).
* ``http-abort`` / ``http-delay`` (at the target): Envoy's own fault filter (``envoy.filters.http.fault``, the
  one every other driver uses) on each chosen instance's public listener, through Consul's escape hatch
  ``envoy_public_listener_json`` in the sidecar's proxy ``Config``: the sidecar is registered again with it,
  and again without it to undo. Consul still adds its mTLS and its RBAC filter (intentions) to that listener.
  1.16 has no fault injection of its own (its Lua extension has no delay).
* ``partition`` (``mode: reject``): a ``deny`` source in each callee's ``service-intentions`` for each caller
  across the cut: the callee's sidecar refuses it (HTTP 403 from its RBAC filter). Consul cannot make a
  connection hang, so ``mode: blackhole`` is refused.
* ``cert-rotation`` (``what: ca``): a new root for Consul's built-in CA (:mod:`.ca`), which Consul cross-signs
  with the old one and pushes to every sidecar's trust bundle, then re-issues every leaf under (each agent
  after a random 0–30 s); confirmed once every sidecar serves a leaf of the new root. The undo makes the
  harness's original root active again the same way.
* ``kill`` / ``pause``: the instance's app process, by signal (the local mesh's own).

Entry swaps' ``do`` and ``undo`` have one shape, ``{"op": "consul-entries", "entries": [{kind, name, from,
to}], "watch": [node ids]}``: each entry is swapped from the entry expected to the new one (None: absent), so
applying twice, undoing twice or undoing what was never applied changes nothing, and an entry someone else
changed meanwhile is reported (:class:`Conflict`), never overwritten. A swap returns once every watched Envoy's
configuration has changed (Consul has pushed it), which is the activation time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography import x509

from harness._errors import FaultError, MeshError
from harness.mesh.base import GATEWAY, Prepared
from harness.mesh.consul import ca, entries
from harness.mesh.intents import (
    CertChange,
    HttpFault,
    Intent,
    Partition,
    PolicyOverride,
    ProcessSignal,
    SplitChange,
)
from harness.mesh.local import certs as local_certs
from harness.mesh.local import signals
from harness.mesh.local.topology import GATEWAY_ID
from harness.mesh.policy import merge_policy, resolve
from harness.model.environment import EdgePolicy

if TYPE_CHECKING:
    from harness.mesh.consul.driver import ConsulMesh

__all__ = ["Conflict", "apply", "normalized", "prepare", "undo", "unindexed"]

PUSH_TIMEOUT_S = 10.0
"""How long a swap waits for Consul to push it to every watched Envoy before it is an error."""
_INDEXES = ("CreateIndex", "ModifyIndex", "Hash")
_COMPUTED = frozenset({"Precedence", "LegacyID", "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime"})
"""What Consul computes into an intention's sources itself (measured on 1.16.1: ``Precedence``)."""
_DEFAULTS = {"Type": "consul"}
_ZERO_IS_UNSET = frozenset({"MaxFailures"})
"""Fields Consul fills in with their default when an entry leaves them out (an intention source's ``Type``)."""


class Conflict(FaultError):
    """A config entry is not what a change expected: someone else changed it since (reported, not overwritten)."""


def normalized(entry: dict[str, Any] | None) -> Any:
    """An entry as compared: without Consul's indexes, without empty values (Consul leaves out what is empty,
    and fills in nothing the harness writes), durations in seconds (Consul returns some as nanoseconds)."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: round(entries.go_duration(v), 9) if k in entries.DURATION_KEYS and v not in (None, "")
                   else clean(v) for k, v in value.items() if k not in _INDEXES and k not in _COMPUTED}
            # Consul keeps no zero duration and no zero MaxFailures (omitempty): they are no setting to it.
            out = {k: v for k, v in out.items()
                   if not ((k in entries.DURATION_KEYS or k in _ZERO_IS_UNSET) and v in (0, 0.0))}
            sources = out.get("Sources")
            if isinstance(sources, list):  # Consul keeps intention sources by precedence, "*" last
                out["Sources"] = sorted(sources, key=lambda src: (src.get("Name") == "*", str(src.get("Name"))))
            return {k: v for k, v in out.items() if v not in (None, {}, [], "") and _DEFAULTS.get(k) != v}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return None if entry is None else clean(entry)


# ----------------------------------------------------------------------------------- prepare
def prepare(mesh: ConsulMesh, intent: Intent) -> Prepared:
    kind = intent.action if isinstance(intent, ProcessSignal) else getattr(intent, "kind", None)
    refusal = mesh.capabilities.refusal(kind) if isinstance(kind, str) else None
    if refusal is not None:  # a datacenter's (control_plane: cluster): fewer than the local agent's
        raise FaultError(f"the consul mesh cannot do {kind}: {refusal.reason}")
    if isinstance(intent, HttpFault):
        return _fault(mesh, intent)
    if isinstance(intent, SplitChange):
        return _split(mesh, intent)
    if isinstance(intent, Partition):
        return _partition(mesh, intent)
    if isinstance(intent, CertChange):
        return _rotation(mesh, intent)
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
    items = [{"kind": kind, "name": name, "from": unindexed(old), "to": unindexed(new)}
             for kind, name, old, new in changes if normalized(old) != normalized(new)]
    undo_items = [{"kind": i["kind"], "name": i["name"], "from": i["to"], "to": i["from"]} for i in reversed(items)]
    return Prepared(intent, description, {"op": "consul-entries", "entries": items, "watch": watch},
                    {"op": "consul-entries", "entries": undo_items, "watch": watch})


FAULT_DENOMINATOR = 1_000_000
ESCAPE_HATCH = "envoy_public_listener_json"


def fault_filter(percent: float, abort_status: int | None, delay_s: float | None) -> dict[str, Any]:
    """Envoy's fault filter with one abort or delay at ``percent`` of requests (to a millionth)."""
    fraction = {"numerator": round(percent * FAULT_DENOMINATOR / 100), "denominator": "MILLION"}
    config: dict[str, Any] = {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}
    if abort_status is not None:
        config["abort"] = {"http_status": abort_status, "percentage": fraction}
    if delay_s is not None:
        config["delay"] = {"fixed_delay": f"{delay_s:.6f}s", "percentage": fraction}
    return {"name": "envoy.filters.http.fault", "typed_config": config}


def public_listener(port: int, faults: list[dict[str, Any]]) -> dict[str, Any]:
    """The public listener of a sidecar for an HTTP service, routing to ``local_app`` as Consul's does, with the
    fault filters before the router. Consul adds its TLS and its RBAC filter (intentions) to it; what else
    Consul's own listener sets (forwarded client certificate details, websocket upgrades) it does not have
    while a fault is in force."""
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                    ".HttpConnectionManager",
           "stat_prefix": "public_listener",
           "route_config": {"name": "public_listener", "virtual_hosts": [{
               "name": "public_listener", "domains": ["*"],
               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "local_app"}}]}]},
           "http_filters": [*faults, {"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": f"public_listener:127.0.0.1:{port}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "traffic_direction": "INBOUND",
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def _fault(mesh: ConsulMesh, fault: HttpFault) -> Prepared:
    if fault.at != "target":
        raise FaultError(f"{fault.kind} at: caller: Consul 1.16 has no fault of its own at the callers; write "
                         "at: target (Envoy's fault filter on the target's sidecars)")
    ids = mesh.instance_ids(fault.service, fault.version)
    if not ids:
        raise FaultError(f"{fault.kind}: no instance of {fault.service}"
                         + (f" {fault.version}" if fault.version else ""))
    what = (f"abort {fault.abort_status}" if fault.abort_status is not None else f"delay {fault.delay_s:g}s")
    filt = fault_filter(fault.percent, fault.abort_status, fault.delay_s)
    # Another fault of the experiment already on an instance stays: the new filter goes after it.
    before = {i: _fault_filters(mesh, i) for i in ids}
    after = {i: [*before[i], filt] for i in ids}
    return Prepared(fault, f"{what} on {fault.percent:g}% of requests at {', '.join(ids)} (Envoy's fault filter in "
                           "their public listeners, through envoy_public_listener_json)",
                    {"op": "consul-sidecars", "filters": after, "expect": before},
                    {"op": "consul-sidecars", "filters": before, "expect": after})


def _fault_filters(mesh: ConsulMesh, instance: str) -> list[dict[str, Any]]:
    """The fault filters the harness's escape hatch puts on an instance now (none for a mesh not running)."""
    if mesh.saved_state() is None:
        return []
    hatch = mesh.sidecar_config(instance).get(ESCAPE_HATCH)
    if not hatch:
        return []
    try:
        filters = json.loads(hatch)["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Conflict(f"the sidecar of {instance} has an {ESCAPE_HATCH} the harness did not write; it is left as "
                       "it is") from None
    return [f for f in filters if f.get("name") == "envoy.filters.http.fault"]


def _hatch(port: int, filters: list[dict[str, Any]]) -> str | None:
    return json.dumps(public_listener(port, filters)) if filters else None


def sidecars(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    """Register each instance again, with its fault filters in its public listener or (none) as ``up`` did;
    then wait until each one's Envoy serves its new listener. Idempotent: a sidecar already so is left alone; one
    whose escape hatch is neither what this change expects nor what it sets (someone registered it again
    meanwhile) is reported, not overwritten."""
    nodes = [mesh.node(i) for i in data["filters"]]
    before = {node.id: mesh.config_digest(node) for node in nodes}
    changed = []
    for node in nodes:
        assert node.instance is not None
        port = node.instance.inbound_port
        hatch = _hatch(port, data["filters"][node.id])
        expected = _hatch(port, data["expect"][node.id])
        # The agent's view merges in the proxy-defaults' Config (protocol): only the escape hatch is compared.
        current = mesh.sidecar_config(node.id).get(ESCAPE_HATCH)
        if current == hatch:
            continue  # already so (a replayed undo)
        if current != expected:
            raise Conflict(f"the sidecar of {node.id} was registered again by someone else since the harness read "
                           f"it ({ESCAPE_HATCH} is not what the harness left); it is left as it is")
        mesh.register_instance(node.id, {ESCAPE_HATCH: hatch} if hatch is not None else {})
        changed.append(node.id)
    _await_push(mesh, {n: before[n] for n in changed})


def _callers_nodes(mesh: ConsulMesh, service: str) -> list[str]:
    """The Envoys whose routes to ``service`` a router or splitter of it changes: its callers', and the
    gateway's when load enters there."""
    callers = {s.name for s in mesh.env.spec.services if any(c.to == service for c in s.calls)}
    nodes = [i for caller in sorted(callers) for i in mesh.instance_ids(caller)]
    if mesh.env.spec.gateway.service == service:
        nodes.append(GATEWAY_ID)
    return nodes


def _service_of(mesh: ConsulMesh, node_id: str) -> str:
    return mesh.service_of(node_id)


def _split(mesh: ConsulMesh, intent: SplitChange) -> Prepared:
    service = intent.service
    if len(mesh.env.spec.service(service).versions) < 2:
        raise FaultError(f"traffic-shift of {service}: it has one version, nothing to shift between")
    old = mesh.api.config_entry("service-splitter", service)
    new = entries.splitter(service, dict(intent.weights))
    weights = ", ".join(f"{v} {w:g}%" for v, w in intent.weights)
    return _swap(f"service-splitter {service}: {weights}", intent, [("service-splitter", service, old, new)],
                 _callers_nodes(mesh, service))


ROTATION_TIMEOUT_S = 60.0
"""How long a CA rotation waits for every sidecar to serve a leaf of the new root: each agent re-issues its
leaves after a random 0–30 s (Consul's leaf manager, ``RandomStagger(30s)``), then Consul pushes them."""
ROTATION_STAGES = ("the new root in every sidecar's trust bundle (cross-signed by the old)",
                   "every sidecar serving a leaf Consul re-issued under the new root")


def _rotation(mesh: ConsulMesh, intent: CertChange) -> Prepared:
    if intent.what != "ca":
        raise FaultError(f"cert-rotation what: {intent.what}: Consul issues and renews every leaf itself; the "
                         "harness rotates its Connect CA (what: ca)")
    if intent.hold_s:
        raise FaultError("cert-rotation hold: Consul cross-signs the new root and re-issues every leaf by itself, "
                         "with no pause between the two that the harness could hold: remove hold:")
    name = ca.ROTATED  # one name: the undo of any rotation the harness made is the same JSON
    return Prepared(intent, "a new root for Consul's Connect CA (cross-signed by the old one), every leaf re-issued by "
                            "Consul; undone by making the harness's original root active again",
                    {"op": "consul-ca", "root": name, "expect": ca.ORIGINAL},
                    {"op": "consul-ca", "root": ca.ORIGINAL, "expect": name}, stages=ROTATION_STAGES)


def rotate(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    """Make the root named by ``data`` active (a fresh one for ``rotated``), then wait until every sidecar trusts it
    and then serves a leaf issued under it; each stage is logged (``certs/stages.jsonl``, for the timeline) before
    it starts and once confirmed. Idempotent: the original root already active and served changes nothing."""
    target, expected = str(data["root"]), data.get("expect")
    if target == ca.ORIGINAL:
        root = ca.Root(mesh.ca_dir, target)
        if not (root.key.exists() and root.cert.exists()):
            raise MeshError(f"the harness's original Connect CA root is gone from {mesh.ca_dir}: it cannot be made "
                            "active again; the CA is left as it is")
    else:
        root = ca.make_root(mesh.ca_dir, target, mesh.trust_domain())
    change = f"ca-{target}-{secrets.token_hex(4)}"
    cert = x509.load_pem_x509_certificate(root.cert.read_bytes())
    deadline = time.monotonic() + ROTATION_TIMEOUT_S

    def overlap() -> None:
        active = mesh.active_root().strip()
        if active != root.pem()[1].strip():
            before = ca.Root(mesh.ca_dir, str(expected)) if expected else None
            if before is None or not before.cert.exists() or active != before.pem()[1].strip():
                raise Conflict("the Connect CA's active root is neither the one this change expects nor the one it "
                               "sets: someone else rotated it since; it is left as it is")
            mesh.set_root(root)
        serial = f"{cert.serial_number:x}"
        _await_sidecars(mesh, lambda node: serial in {s.lower().lstrip("0") for s in
                                                      mesh.served_certificate(node).trust}, deadline)

    wanted = _ski(cert)

    def leaves() -> None:
        def serves_new_leaf(node: Any) -> bool:
            service = node.instance.service if node.instance is not None else mesh.gateway_service
            leaf = mesh.api.agent_leaf(service)
            try:
                issued = x509.load_pem_x509_certificate(str(leaf.get("CertPEM", "")).encode())
            except ValueError:
                return False  # no leaf to read yet: asked again on the next round, until the deadline
            if _aki(issued) != wanted:
                return False  # the agent has not re-issued this service's leaf yet
            # Every TLS context of the Envoy (its public listener, each upstream cluster) on the new leaf: they
            # come in separate pushes (LDS, CDS), and a drained listener's old context leaves /certs within 1 s.
            return certs_served(mesh, node) == {str(leaf.get("SerialNumber", "")).replace(":", "").lower()
                                                .lstrip("0")}

        _await_sidecars(mesh, serves_new_leaf, deadline)

    for stage, make in (("overlap", overlap), ("leaves", leaves)):
        local_certs.log_stage(mesh, {"change": change, "stage": stage, "event": "start"})
        start = time.perf_counter()
        make()
        local_certs.log_stage(mesh, {"change": change, "stage": stage, "event": "confirmed",
                                     "ms": round((time.perf_counter() - start) * 1000, 1),
                                     "envoys": len(mesh.nodes())})
    if target == ca.ORIGINAL and expected:  # the rotated root's key has no use left
        for path in (ca.Root(mesh.ca_dir, str(expected)).key, ca.Root(mesh.ca_dir, str(expected)).cert):
            path.unlink(missing_ok=True)


def _await_sidecars(mesh: ConsulMesh, done: Callable[[Any], bool], deadline: float) -> None:
    """Until ``done`` holds for every sidecar and gateway; FaultError naming those it does not by ``deadline``."""
    pending = {n.id: n for n in mesh.nodes()}
    while pending:
        for node_id, node in list(pending.items()):
            if done(node):
                del pending[node_id]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"{', '.join(sorted(pending))} did not take the new root within {ROTATION_TIMEOUT_S:g}s; "
                             f"see {mesh.logs_hint('consul')}")
        time.sleep(0.2)


def certs_served(mesh: ConsulMesh, node: Any) -> set[str]:
    """The leaf serials one Envoy serves (its ``/certs``), lowercase hex without leading zeros."""
    return {s.lower().lstrip("0") for s in mesh.served_certificate(node).leaf}


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _partition(mesh: ConsulMesh, intent: Partition) -> Prepared:
    if intent.mode != "reject" or intent.via != "proxy":
        raise FaultError("the consul mesh partitions with intentions only: write mode: reject (via: proxy)")
    a, b = set(intent.sides[0]), set(intent.sides[1])
    edges = [(x, y) for x, y in mesh.env.spec.edges() if (x in a and y in b) or (x in b and y in a)]
    if not edges:
        raise FaultError(f"partition: no calls between {', '.join(intent.sides[0])} and {', '.join(intent.sides[1])}, "
                         "so there is nothing to cut")
    changes: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    for callee in sorted({y for _, y in edges}):
        denied = sorted(x for x, y in edges if y == callee)
        old = mesh.api.config_entry("service-intentions", callee)
        new = dict(unindexed(old) or {"Kind": "service-intentions", "Name": callee})
        kept = [src for src in new.get("Sources") or [] if src.get("Name") not in denied]
        new["Sources"] = [*kept, *({"Name": x, "Action": "deny"} for x in denied)]
        changes.append(("service-intentions", callee, old, new))
    cut = ", ".join(f"{x}->{y}" for x, y in edges)
    watch = [i for callee in sorted({y for _, y in edges}) for i in mesh.instance_ids(callee)]
    return _swap(f"partition ({cut}): a deny intention for each, refused by the callee's sidecar (HTTP 403)", intent,
                 changes, watch)


def _policy(mesh: ConsulMesh, intent: PolicyOverride) -> Prepared:
    caller, callee = intent.caller, intent.callee
    current = mesh.policy(caller, callee)
    override = EdgePolicy.model_validate(intent.fields)
    refused = entries.inexpressible(override)
    if refused:
        raise FaultError(f"policy {caller}->{callee}: " + "; ".join(refused))
    wanted = resolve(merge_policy(_as_edge(current), override), mesh.defaults)
    changes: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
    described = []
    watch: list[str] = []
    if {"retries", "timeout"} & intent.fields.keys():
        old = mesh.api.config_entry("service-router", callee)
        changes.append(("service-router", callee, old, entries.router_with(old, callee, wanted)))
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
        watch += mesh.instance_ids(caller)
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
    elif op == "consul-sidecars":
        sidecars(mesh, prepared.do)
    elif op == "consul-ca":
        rotate(mesh, prepared.do)
    elif op == "signal":
        signals.apply(mesh, prepared.do)
    else:
        raise FaultError(f"the consul mesh has no operation {op!r}")
    return (time.perf_counter() - start) * 1000


def undo(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    op = data["op"]
    if op == "consul-entries":
        swap(mesh, data)
    elif op == "consul-sidecars":
        sidecars(mesh, data)
    elif op == "consul-ca":
        rotate(mesh, data)
    elif op == "signal-clear":
        signals.undo(mesh, data)
    else:
        raise FaultError(f"unknown undo operation {op!r} in the journal")


def swap(mesh: ConsulMesh, data: dict[str, Any]) -> None:
    """Swap each entry from ``from`` to ``to`` with check-and-set; then wait until Consul has pushed the result
    to every watched Envoy (in a datacenter, as its Prometheus sees them: :class:`.cluster.PushWatch`). Entries
    already as wanted are left alone (a replayed undo writes nothing)."""
    local = mesh.control_plane == "local"
    watch = [mesh.node(n) for n in data.get("watch", []) if local and n in {x.id for x in mesh.nodes()}]
    before = {node.id: mesh.config_digest(node) for node in watch}
    marks: dict[str, float] = {}
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
        if not local and not wrote:  # a datacenter's sidecars, as its Prometheus sees them before the first write
            marks = mesh.push_marks(list(data.get("watch", [])))
        ok = (mesh.api.delete_config_entry(kind, name, cas=index) if item["to"] is None
              else mesh.api.put_config_entry(item["to"], cas=index))
        if not ok:
            raise Conflict(f"the {kind} {name} was changed by someone else while the harness wrote it (check-and-set "
                           "lost); it is left as it is")
        wrote = True
    if wrote and local:
        _await_push(mesh, before)
    elif wrote:
        mesh.await_push_marks(marks)


def _await_push(mesh: ConsulMesh, before: dict[str, str]) -> None:
    """Until the configuration of every Envoy in ``before`` (node id → digest) has moved, and no listener or
    filter chain of it is still draining: a fault filter or an intention replaces the public listener's filter
    chain, and the callers' open connections stay on the old chain until it has drained (up to the Envoys'
    ``--drain-time-s 1``). Measured: returning at the move alone, requests still passed unfaulted for 0.7 s."""
    pending = dict(before)
    deadline = time.monotonic() + PUSH_TIMEOUT_S
    while pending:
        for node_id, digest in list(pending.items()):
            node = mesh.node(node_id)
            if mesh.config_digest(node) != digest and not mesh.draining(node):
                del pending[node_id]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"Consul did not push the change to {', '.join(sorted(pending))} within "
                             f"{PUSH_TIMEOUT_S:g}s; see {mesh.logs_hint('consul')}")
        time.sleep(0.01)


def unindexed(entry: dict[str, Any] | None) -> dict[str, Any] | None:
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
