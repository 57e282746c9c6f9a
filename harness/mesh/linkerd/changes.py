"""How the Linkerd driver carries out intents, and the checks that refuse a setup where the change would
silently not take effect (reference/linkerd/linkerd-semantics.md §11, "riskiest gotchas").

* ``http-abort`` / ``http-delay``: the fault backend (ConfigMap, Deployment, Service) and an HTTPRoute on
  the target Service splitting it between the Service and that backend. ``apply`` waits for the backend's
  pod to be available and the route to be Accepted by Linkerd's policy controller; the undo deletes the
  route first (callers fall back to the Service), then the backend.
* ``traffic-shift``: an HTTPRoute splitting the Service between its versions' Services.
* policy: annotations on the callee's Service, set and restored key by key.
* ``kill``: pod deletion, as for Istio (:mod:`harness.mesh.kube.pods`).
* admission (``linkerd.authorization: declared``, for a refusal test): per service a Server on each port
  its Service sends to, a MeshTLSAuthentication naming the ServiceAccounts of the declared callers' pods,
  and an AuthorizationPolicy binding them; created policy first, Server last, and undone in reverse.

The checks, before anything is written (each names what to change):

* a ServiceProfile for the Service with routes or dstOverrides wins over every HTTPRoute and annotation;
* another route on the Service: older, it wins over the harness's for the requests both match, and a
  route with matches would take some requests past the fault (Linkerd orders routes oldest first);
* a GRPCRoute on the Service makes Linkerd set every HTTPRoute there aside;
* failure accrual on the Service would eject the fault backend's pod after a few errors, and the fault
  would quietly stop (its weight goes to the Service);
* a headless Service gets no outbound policy at all;
* a Server of someone else's on the same pods and port: Linkerd admits one Server per pod and port, and
  the cluster's own policy is then what a refusal test tests;
* a delay under the declared admission: the fault backend is outside the mesh, and the requests it
  forwards to the service would be refused.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

from harness._errors import FaultError, MeshError
from harness.mesh.base import Prepared
from harness.mesh.intents import Admission, HttpFault, Intent, PolicyOverride, ProcessSignal, SplitChange
from harness.mesh.kube import pods
from harness.mesh.linkerd import objects
from harness.mesh.linkerd.cluster import LinkerdCluster, key_of, kind_of, owned
from harness.model.environment import EdgePolicy

if TYPE_CHECKING:
    from harness.mesh.linkerd.driver import LinkerdMesh

__all__ = ["apply", "prepare", "undo"]

ASSUMED_PORT = 80
"""The Service port a plan shows when no cluster answers to read it from."""


def prepare(mesh: LinkerdMesh, intent: Intent) -> Prepared:
    if isinstance(intent, HttpFault):
        return _fault(mesh, intent)
    if isinstance(intent, SplitChange):
        return _split(mesh, intent)
    if isinstance(intent, PolicyOverride):
        return _policy(mesh, intent)
    if isinstance(intent, Admission):
        return _admission(mesh, intent)
    if isinstance(intent, ProcessSignal) and intent.action == "kill":
        try:
            return pods.prepare_kill(mesh.pods, intent)
        except MeshError as exc:  # plan with no cluster to reach: it still shows the change
            return pods.unlisted_kill(intent, mesh.namespace, str(exc))
    refusal = mesh.capabilities.refusal(getattr(intent, "kind", type(intent).__name__))
    raise FaultError(f"the linkerd mesh cannot carry out {type(intent).__name__}"
                     + (f": {refusal.reason}" if refusal else ""))


# ------------------------------------------------------------------------------------------- checks
def _target(cluster: LinkerdCluster, service: str) -> int:
    """The Service's HTTP port (named ``http``, else its first), after the checks every change shares."""
    svc = cluster.service(service)
    if svc is None:
        raise FaultError(f"Service {cluster.namespace}/{service} is not in the cluster")
    spec = svc.get("spec") or {}
    if spec.get("clusterIP") == "None":
        raise FaultError(f"Service {cluster.namespace}/{service} is headless (clusterIP: None): Linkerd gives no "
                         "outbound policy to a headless Service, so no route or annotation would act")
    profile = cluster.service_profile(service)
    if profile is not None and ((profile.get("spec") or {}).get("routes") or (profile.get("spec") or {})
                                .get("dstOverrides")):
        raise FaultError(f"ServiceProfile {profile['metadata']['name']} has routes or dstOverrides, and while it does "
                         "Linkerd ignores every HTTPRoute, retry, timeout and failure-accrual setting of "
                         f"{service}: the change would do nothing. Remove its routes (or the profile) first")
    ports = spec.get("ports") or []
    if not ports:
        raise FaultError(f"Service {cluster.namespace}/{service} has no port")
    named = next((p for p in ports if p.get("name") == "http"), ports[0])
    return int(named["port"])


def _no_other_routes(cluster: LinkerdCluster, service: str, own: str, port: int) -> None:
    grpc = cluster.routes_on(service, "GRPCRoute", port)
    if grpc:
        raise FaultError(f"GRPCRoute {grpc[0]['metadata']['name']} is attached to {service}, and Linkerd then sets "
                         "every HTTPRoute on it aside (gRPC routes take precedence): the harness's route would do "
                         "nothing")
    for route in cluster.routes_on(service, port=port):
        name = route["metadata"]["name"]
        if name == own and owned(route):
            continue
        refs = route.get("metadata", {}).get("ownerReferences") or []
        if any(r.get("kind") == "Canary" for r in refs):
            raise FaultError(f"HTTPRoute {name} on {service} belongs to a Flagger Canary, which rewrites its weights "
                             "at every step and whose older route wins over the harness's: suspend the Canary "
                             "(spec.suspend: true) and remove its route, or test another service")
        raise FaultError(f"HTTPRoute {name} is attached to {service} already. Linkerd orders the routes of a "
                         "Service oldest first: for the requests both match, the older one wins and the harness's "
                         "would never act, and requests only the other matches would pass the change by. Remove it "
                         "for the experiment, or test another service")


def _no_accrual(cluster: LinkerdCluster, service: str) -> None:
    svc = cluster.service(service) or {}
    mode = ((svc.get("metadata") or {}).get("annotations") or {}).get(objects.ACCRUAL)
    if mode:
        raise FaultError(f"Service {service} has {objects.ACCRUAL}: {mode}. Failure accrual applies to every backend "
                         "of its routes: after a few errors it would eject the fault backend's pod, its weight would "
                         "go to the service, and the fault would quietly stop. Remove the annotation for a fault "
                         "experiment (or test the breaker itself, with a fault the service's own pods answer)")


def _admits(obj: dict[str, Any], service: str) -> bool:
    """Is ``obj`` one of the harness's objects of the declared admission of ``service``?"""
    return owned(obj) and (obj["metadata"].get("labels") or {}).get(objects.ADMITS) == service


def _no_admission(cluster: LinkerdCluster, service: str) -> None:
    mine = [srv for srv in cluster.servers() if _admits(srv, service)]
    if mine:
        raise FaultError(f"{service} admits only its declared callers for this experiment (Server "
                         f"{mine[0]['metadata']['name']}), and the delay's fault backend is outside the mesh: every "
                         "request it forwards to the service would be refused with a 403. Test the delay in an "
                         "experiment without rejects, or write linkerd.authorization: cluster")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a label selector (matchLabels and matchExpressions, ANDed) select ``labels``?"""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if ((op == "In" and not (present and labels[key] in values))
                or (op == "NotIn" and present and labels[key] in values)
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present)):
            return False
    return True


def _port_number(pod: dict[str, Any], port: int | str) -> int | str:
    """A pod port given by name, as its number (the name itself where no container declares it)."""
    if isinstance(port, int):
        return port
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    return port


def _no_other_server(cluster: LinkerdCluster, service: str, selector: dict[str, str], ports: list[int | str],
                     pods: list[dict[str, Any]]) -> None:
    """Refuse where another Server covers a pod and port the admission would (one of ``service``'s own
    admission, from an earlier run's apply, is the same change)."""
    for srv in cluster.servers():
        name = srv["metadata"]["name"]
        spec = srv.get("spec") or {}
        if _admits(srv, service) or "podSelector" not in spec:
            continue  # ours; or an ExternalWorkload Server, which selects no pod
        chosen = spec["podSelector"] or {}
        # With no pod running, the Service's selector stands in for its pods' labels.
        targets = pods or [{"metadata": {"labels": selector}}]
        for pod in targets:
            if not _selects(chosen, (pod.get("metadata") or {}).get("labels") or {}):
                continue
            theirs = _port_number(pod, spec.get("port", ""))
            if any(_port_number(pod, p) == theirs for p in ports):
                raise FaultError(f"Server {name} already covers the pods of {service} on port {spec.get('port')}: "
                                 "Linkerd admits one Server per pod and port, and the cluster's own policy is what "
                                 "a refusal test there tests. Write linkerd.authorization: cluster, or remove "
                                 f"{name} for the experiment")


def _meshed(pod: dict[str, Any]) -> bool:
    """Does the pod run Linkerd's proxy (a container, or a native sidecar init container, linkerd-proxy)?"""
    spec = pod.get("spec") or {}
    return any(c.get("name") == "linkerd-proxy" for c in (spec.get("containers") or [])
               + (spec.get("initContainers") or []))


def _opaque_ports(annotations: dict[str, str]) -> set[int | str]:
    """The ports ``config.linkerd.io/opaque-ports`` names: numbers, ranges (``4000-4010``) and port names."""
    out: set[int | str] = set()
    for raw in (annotations.get("config.linkerd.io/opaque-ports") or "").split(","):
        part = raw.strip()
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            out.update(range(int(low), int(high) + 1))
        elif part.isdigit():
            out.add(int(part))
        elif part:
            out.add(part)
    return out


def _namespace_wide(cluster: LinkerdCluster, service: str) -> None:
    """Refuse where a policy of the user's would apply to the harness's Servers too: what it admits (a
    NetworkAuthentication can admit the plaintext probe itself) would be read as the mesh's doing."""
    for policy in cluster.rest.list(kind_of(objects.POLICY_V1ALPHA1, "AuthorizationPolicy"), cluster.namespace):
        if owned(policy):
            continue
        target = (policy.get("spec") or {}).get("targetRef") or {}
        if target.get("kind") == "Namespace":
            raise FaultError(f"AuthorizationPolicy {policy['metadata']['name']} targets the namespace, so it applies "
                             "to the harness's Servers too, and whoever it admits would be admitted by them: the "
                             "declared admission would not be what is tested. Write linkerd.authorization: cluster")
    ours = {**objects.MANAGED, objects.ADMITS: service}  # the labels of the Servers the admission writes
    for legacy in cluster.rest.list(kind_of("policy.linkerd.io/v1beta1", "ServerAuthorization"), cluster.namespace):
        chosen = ((legacy.get("spec") or {}).get("server") or {}).get("selector")
        if chosen is not None and _selects(chosen, ours):
            raise FaultError(f"ServerAuthorization {legacy['metadata']['name']} selects Servers by labels the "
                             "harness's Servers carry, so it would apply to them too: the declared admission would "
                             "not be what is tested. Write linkerd.authorization: cluster")


def _accounts(cluster: LinkerdCluster, caller: str) -> list[str]:
    """The ServiceAccounts the pods of ``caller`` run as: the identities its proxies present."""
    svc = cluster.service(caller)
    if svc is None:
        raise FaultError(f"{caller}, a declared caller, has no Service {cluster.namespace}/{caller}: its pods, and "
                         "so the identity to admit, cannot be found")
    selector = (svc.get("spec") or {}).get("selector") or {}
    pods = cluster.pods(selector) if selector else []
    if not pods:
        raise FaultError(f"{caller}, a declared caller, has no pods running: the ServiceAccount to admit cannot be "
                         "read, and it would be refused once it runs. Start it, or run the refusal test without it")
    unmeshed = [p["metadata"]["name"] for p in pods if not _meshed(p)]
    if unmeshed:
        raise FaultError(f"{caller}, a declared caller, has pods without Linkerd's proxy ({', '.join(unmeshed[:3])}): "
                         "its calls are plaintext, and the declared admission would refuse them. Mesh it (linkerd "
                         "inject), or write linkerd.authorization: cluster")
    return sorted({(p.get("spec") or {}).get("serviceAccountName") or "default" for p in pods})


# ------------------------------------------------------------------------------------------- intents
def _swaps(mesh: LinkerdMesh, intent: Intent, description: str,
           pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]]) -> Prepared:
    """Swap each object from the first of its pair (None: none) to the second (None: deleted), in order,
    each waited for; the undo swaps them back, last first. Both name the cluster they are for."""
    where = mesh.cluster_id()
    do = {"op": "linkerd-swap", "cluster": where, "objects": [{"old": o, "new": n} for o, n in pairs]}
    undo = {"op": "linkerd-swap", "cluster": where, "undo": True,
            "objects": [{"old": n, "new": o} for o, n in reversed(pairs)]}
    return Prepared(intent, description, do, undo)


def _fault(mesh: LinkerdMesh, fault: HttpFault) -> Prepared:
    if fault.at != "target":
        raise FaultError(f"{fault.kind} at: {fault.at}: Linkerd has no fault filter; the harness splits the route "
                         "between the service and a fault backend, which every attempt (retries too) picks anew, "
                         "as a fault on the target: write at: target")
    if fault.version:
        raise FaultError(f"{fault.kind} cannot be narrowed to version {fault.version} on Linkerd: the route is the "
                         "Service's, before any version; drop target.version")
    cluster, why = mesh.cluster_or_reason()
    name = objects.fault_name(fault.service)
    if cluster is not None:
        port = _target(cluster, fault.service)
        _no_other_routes(cluster, fault.service, name, port)
        if fault.abort_status is not None:
            _no_accrual(cluster, fault.service)
        else:
            _no_admission(cluster, fault.service)
        api_version = cluster.route_version()
        where = ""
    else:
        port, api_version = ASSUMED_PORT, objects.GATEWAY_V1
        where = f" (port {ASSUMED_PORT} and {api_version} assumed, nothing checked: {why})"
    made = objects.fault_backend(fault.service, mesh.namespace, port, abort_status=fault.abort_status,
                                 delay_s=fault.delay_s)
    made.append(objects.fault_route(fault.service, mesh.namespace, port, fault.percent, api_version))
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(None, o) for o in made]
    what = (f"abort {fault.percent:g}% with {fault.abort_status}" if fault.abort_status is not None
            else f"delay {fault.percent:g}% by {objects.linkerd_duration(fault.delay_s or 0.0, 'delay')}")
    return _swaps(mesh, fault, f"{what}: HTTPRoute {name} splits {fault.service} to the fault backend {name}{where}",
                  pairs)


def _split(mesh: LinkerdMesh, change: SplitChange) -> Prepared:
    weights = dict(change.weights)
    cluster, why = mesh.cluster_or_reason()
    name = f"mesh-harness-split-{change.service}"
    if cluster is not None:
        port = _target(cluster, change.service)
        _no_other_routes(cluster, change.service, name, port)
        missing = [objects.version_service(change.service, v) for v in weights
                   if cluster.service(objects.version_service(change.service, v)) is None]
        if missing:
            raise FaultError(f"traffic-shift of {change.service}: Linkerd splits between Services, and "
                             f"{', '.join(missing)} are not in the cluster: create one Service per version "
                             f"(selector app: {change.service}, version: V), named {change.service}-V")
        api_version = cluster.route_version()
        # A later step of a shift changes the weights of the route the first step made, in place: a spec
        # update keeps its creationTimestamp, so its precedence among the Service's routes stays (§3.1).
        before = cluster.owned_object(api_version, "HTTPRoute", name)
        where = ""
    else:
        port, api_version, before = ASSUMED_PORT, objects.GATEWAY_V1, None
        where = f" (port {ASSUMED_PORT} and {api_version} assumed, nothing checked: {why})"
    route = objects.shift_route(change.service, mesh.namespace, port, weights, api_version)
    shown = "/".join(f"{v} {w:g}%" for v, w in weights.items())
    return _swaps(mesh, change, f"split of {change.service}: {shown} (HTTPRoute {name}){where}", [(before, route)])


def _policy(mesh: LinkerdMesh, change: PolicyOverride) -> Prepared:
    want = objects.annotations_for(EdgePolicy.model_validate(change.fields))
    cluster, why = mesh.cluster_or_reason()
    if cluster is not None:
        port = _target(cluster, change.callee)
        families = {f for f in (objects.RETRY, objects.TIMEOUT) if any(k.startswith(f) for k in want)}
        for route in cluster.routes_on(change.callee, port=port):
            # A route's retries replace the Service's, and its timeouts the Service's, each on its own (§1.3.3).
            notes = route["metadata"].get("annotations") or {}
            overrides = {k for k in notes if k.startswith(tuple(families))} if families else set()
            rules = (route.get("spec") or {}).get("rules") or []
            if objects.TIMEOUT in families and any((r.get("timeouts") or {}).get("request") for r in rules):
                overrides.add("spec.rules[].timeouts.request")
            if overrides:
                raise FaultError(f"HTTPRoute {route['metadata']['name']} on {change.callee} sets "
                                 f"{', '.join(sorted(overrides))}, which replace the Service's for every request it "
                                 "matches: the change on the Service would not act there. Change the route's, or "
                                 "remove them")
        have = (cluster.service(change.callee) or {}).get("metadata", {}).get("annotations") or {}
        expect = {k: have.get(k) for k in want}
        note = ""
    else:
        expect = dict.fromkeys(want)
        note = f" (the Service's current values not read: {why})"
    shown = ", ".join(f"{k}={v}" if v is not None else f"{k} removed" for k, v in want.items())
    where = mesh.cluster_id()
    do = {"op": "linkerd-annotations", "cluster": where, "service": change.callee, "set": want, "expect": expect}
    undo = {"op": "linkerd-annotations", "cluster": where, "service": change.callee, "set": expect, "expect": want,
            "undo": True}
    return Prepared(change, f"{', '.join(sorted(change.fields))} on {change.caller} -> {change.callee}: annotations of "
                            f"Service {change.callee}: {shown} (they hold for every caller of {change.callee}){note}",
                    do, undo)


def _admission(mesh: LinkerdMesh, intent: Admission) -> Prepared:
    cluster, why = mesh.cluster_or_reason()
    service = intent.service
    shared = ""
    if cluster is not None:
        if not cluster.rest.served(kind_of(objects.POLICY_V1BETA3, "Server")):
            raise FaultError(f"the cluster serves no {objects.POLICY_V1BETA3} Server (Linkerd 2.16 or later has it): "
                             "the declared admission cannot be written")
        svc = cluster.service(service)
        if svc is None:
            raise FaultError(f"Service {cluster.namespace}/{service} is not in the cluster")
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector:
            raise FaultError(f"Service {cluster.namespace}/{service} has no selector: a Server cannot choose its pods")
        ports: list[int | str] = list(dict.fromkeys(p.get("targetPort", p["port"]) for p in spec.get("ports") or []))
        if not ports:
            raise FaultError(f"Service {cluster.namespace}/{service} has no port")
        pods = cluster.pods(selector)
        if pods:  # a name and a number for the same pod port would be two Servers Linkerd refuses as overlapping
            ports = list(dict.fromkeys(_port_number(pods[0], p) for p in ports))
        _no_other_server(cluster, service, selector, ports, pods)
        _namespace_wide(cluster, service)
        opaque = _opaque_ports({**((svc.get("metadata") or {}).get("annotations") or {}),
                                **(((pods[0].get("metadata") or {}).get("annotations") or {}) if pods else {})})
        by_account: dict[str, list[str]] = {}
        for caller in () if intent.entry else intent.callers:  # the entry admits any meshed caller
            for account in _accounts(cluster, caller):
                by_account.setdefault(account, []).append(caller)
        accounts = None if intent.entry else sorted(by_account)
        if accounts and "default" in accounts:
            sharing = by_account["default"]
            shared = (f"; {' and '.join(sharing)} {'runs' if len(sharing) == 1 else 'run'} as ServiceAccount "
                      "default, which every pod of the namespace without one of its own shares: those pods are "
                      "admitted too")
        note = ""
    else:
        selector, ports, opaque = {"app": service}, [ASSUMED_PORT], set()
        accounts = None if intent.entry else sorted(intent.callers)
        note = (f" (selector app: {service}, port {ASSUMED_PORT} and ServiceAccounts named after the callers "
                f"assumed, nothing checked: {why})")
    made = objects.admission_objects(service, mesh.namespace, selector, ports, accounts,
                                     frozenset(p for p in ports if p in opaque))
    servers = ", ".join(o["metadata"]["name"] for o in made if o["kind"] == "Server")
    if accounts is None:
        who = ("any caller that authenticates with mTLS (the gateway's service: its callers are not declared; "
               "an unmeshed ingress is refused, port-forwarded load skips the proxy)")
    elif accounts:
        who = (f"only {', '.join(intent.callers)} over mTLS (ServiceAccounts {', '.join(accounts)}; "
               f"MeshTLSAuthentication and AuthorizationPolicy {objects.admission_name(service)})")
    else:
        who = "no caller (none is declared)"
    return _swaps(mesh, intent, f"admission of {service}: Server {servers} admits {who}; any other caller gets a "
                                f"403 for the experiment{shared}{note}", [(None, o) for o in made])


# ------------------------------------------------------------------------------------------- apply and undo
def apply(mesh: LinkerdMesh, prepared: Prepared) -> float:
    """Carry out ``prepared.do``; the ms until Linkerd has taken it (backend available, route Accepted)."""
    start = time.perf_counter()
    _run(mesh, prepared.do)
    return (time.perf_counter() - start) * 1000


def undo(mesh: LinkerdMesh, data: dict[str, Any]) -> None:
    if data["op"] == "pod-delete-undo":
        return  # a deleted pod is replaced by its controller: nothing of the harness's to put back
    _run(mesh, data)


def _run(mesh: LinkerdMesh, data: dict[str, Any]) -> None:
    op = data["op"]
    undoing = bool(data.get("undo"))
    if op in ("linkerd-swap", "linkerd-annotations") and data.get("cluster") is None:
        if undoing:
            return  # prepared with no cluster to read (a plan): it was never applied
        raise MeshError("this change was prepared with no cluster to read (its Service's port and current values "
                        "unknown), so it cannot be applied: check that the kube context's API server answers")
    if op in ("linkerd-swap", "linkerd-annotations"):
        here = mesh.cluster_id()
        if here != data["cluster"]:
            raise MeshError(f"this change was made in cluster {data['cluster']['context']} "
                            f"({data['cluster']['server']}), and the kube context now is "
                            f"{here['context'] if here else 'none'}: switch back to it (kubectl config use-context "
                            f"{data['cluster']['context']}), then run mesh-harness cleanup again")
    cluster = mesh.cluster
    changed = False
    try:
        if op == "linkerd-swap":
            for item in data["objects"]:
                old, new = item.get("old"), item.get("new")
                done = cluster.swap(old, new, undoing=undoing)
                changed |= done
                if new is not None and new["kind"] == "Deployment":
                    cluster.wait(f"the fault backend {key_of(new)}", partial(cluster.deployment_state, new),
                                 mesh.ready_timeout_s)
                elif new is not None and new["kind"] == "HTTPRoute":
                    cluster.wait(f"HTTPRoute {key_of(new)}", partial(cluster.route_state, new), mesh.ready_timeout_s)
                elif done and new is None and (old or {}).get("kind") == "HTTPRoute":
                    time.sleep(mesh.push_settle_s)  # the proxies leave the fault backend before it goes
        elif op == "linkerd-annotations":
            changed = cluster.annotate(data["service"], data["set"], data["expect"], undoing=undoing)
        elif op == "pod-delete":
            if data.get("unlisted"):
                raise MeshError(f"kill: the pods to delete could not be listed: {data['unlisted']}")
            mesh.pods.delete(data["pods"])
        else:
            raise FaultError(f"the linkerd mesh has no operation {op!r}")
    finally:  # what was written reaches the proxies by the policy controller's watch: give it time
        if changed:
            time.sleep(mesh.push_settle_s)
