"""``mesh: linkerd``: the harness's changes as Linkerd objects and annotations in an existing cluster.

Linkerd's data plane cannot run on this machine (its Rust proxy is published to no registry reachable here,
and it needs Linkerd's identity, destination and policy services): there is no ``control_plane: local``.
The driver acts on the cluster of the current kube context, within ``safety``, through the kubernetes
client. What each intent becomes, and what is refused before anything is written, is in
:mod:`harness.mesh.linkerd.changes`; docs/concepts/linkerd.md says it for users.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from harness._errors import FaultError, MeshError
from harness._paths import default_state_dir
from harness.mesh.base import Capabilities, Prepared, Topology
from harness.mesh.intents import Admission, Intent
from harness.mesh.kube.pods import Pods
from harness.mesh.kube.rest import KubeRest
from harness.mesh.linkerd import changes, objects, probes
from harness.mesh.linkerd.cluster import LinkerdCluster, kind_of, owned
from harness.mesh.policy import ResolvedOutlier, ResolvedPolicy
from harness.metrics.linkerd_telemetry import LinkerdTelemetrySource
from harness.metrics.pod_source import prometheus_url
from harness.metrics.tls import PeerProbe, ServedCert
from harness.model.environment import EdgePolicy, Environment

__all__ = ["CAPABILITIES", "LinkerdMesh", "resolved_policy"]

_PICKED_ANEW = ("Linkerd has no fault filter: the harness's fault is a route split to a fault backend, picked anew by "
                "every attempt (retries too), as a fault at the target: write at: target")
_NO_L4 = ("Linkerd has no fault injection below HTTP: no TCP latency, bandwidth, reset or partition (its only fault "
          "mechanism is a route's weighted split to a fault backend)")
CAPABILITIES = Capabilities(
    mesh="linkerd",
    faults=frozenset({"http-abort", "http-delay", "kill", "traffic-shift"}),
    http_placements=frozenset({"target"}),
    policy_fields=frozenset({"retries", "timeout", "outlier_detection"}),
    evidence=frozenset({"client", "sidecar-counters", "sidecar-latency", "peer-probes"}),
    refused={
        "net-latency": _NO_L4, "net-bandwidth": _NO_L4, "net-reset": _NO_L4, "partition": _NO_L4,
        "pause": "a pod cannot be frozen through Kubernetes or Linkerd (kill deletes a pod instead)",
        "cert-rotation": "Linkerd's trust anchors are read by each proxy only when it starts, so a rotation needs "
                         "every workload restarted in order, and undoing it is a second rotation; not built for "
                         "mesh: linkerd",
        "cert-untrusted": "a peer with an untrusted certificate cannot be played into a Linkerd mesh from outside it",
        "http-abort.at=caller": _PICKED_ANEW, "http-delay.at=caller": _PICKED_ANEW,
        "policy.circuit_breaker": "Linkerd has no connection or request limits; its breaker is failure accrual: write "
                                  "outlier_detection",
    },
)
"""What Linkerd can be made to do: HTTP faults through a route split to a fault backend, shifts between
versions' Services, retries, timeouts and failure accrual as Service annotations, kills as pod deletions."""

UNLIMITED = 2**32 - 1
"""A limit Linkerd does not have (connections, pending, requests, concurrent retries)."""


def resolved_policy(annotations: dict[str, str]) -> ResolvedPolicy:
    """The policy a Service's annotations give every caller, with Linkerd's defaults for the rest: no status
    retried unless ``retry.linkerd.io/http`` names it (then ``limit`` defaults to 1), no timeout, no limits,
    no failure accrual unless its mode is set (then 7 consecutive failures, a 1s first penalty). A value
    Linkerd cannot read is a MeshError naming it."""
    a = annotations
    defaulted: list[str] = []
    codes = [c.strip() for c in (a.get(f"{objects.RETRY}http") or "").split(",") if c.strip()]
    if codes:
        retries = _count(a, f"{objects.RETRY}limit", 0) or 1  # "0" is unset: Linkerd's default, 1
        per_try = a.get(f"{objects.RETRY}timeout")
        per_try_s = objects.parse_linkerd_duration(per_try, f"{objects.RETRY}timeout") if per_try else None
    else:
        defaulted.append("retries")
        retries, per_try_s = 0, None
    timeout = a.get(f"{objects.TIMEOUT}request")
    if not timeout:
        defaulted.append("timeout")
    outlier = None
    if a.get(objects.ACCRUAL) in ("consecutive", "unified"):
        penalty = a.get(f"{objects.ACCRUAL}-consecutive-min-penalty")
        outlier = ResolvedOutlier(
            consecutive_5xx=_count(a, f"{objects.ACCRUAL}-consecutive-max-failures", 7),
            interval_s=0.0,  # counted as each response arrives, not on an interval
            base_ejection_time_s=objects.parse_linkerd_duration(penalty, "min-penalty") if penalty else 1.0,
            max_ejection_percent=100.0, min_health_percent=0.0)
    else:
        defaulted.append("outlier_detection")
    defaulted += [f"circuit_breaker.{n}" for n in ("max_connections", "max_pending", "max_requests", "max_retries")]
    return ResolvedPolicy(retries=retries, retry_on=tuple(codes) or ("5xx",), per_try_timeout_s=per_try_s or None,
                          timeout_s=objects.parse_linkerd_duration(timeout, f"{objects.TIMEOUT}request") if timeout
                          else 0.0,
                          max_connections=UNLIMITED, max_pending=UNLIMITED, max_requests=UNLIMITED,
                          max_retries=UNLIMITED, outlier=outlier, defaulted=tuple(defaulted))


def _count(annotations: dict[str, str], key: str, default: int) -> int:
    text = annotations.get(key)
    if text is None:
        return default
    if not text.strip().isdigit():
        raise MeshError(f"{key}: {text!r} is no count Linkerd reads (a whole number); Linkerd ignores the setting: "
                        "fix the annotation")
    return int(text)


def declared_annotations(policy: EdgePolicy | None) -> dict[str, str]:
    """The annotations the environment's declared policy for an edge stands for (fields Linkerd cannot
    express, such as circuit_breaker, are left out: they describe nothing Linkerd has)."""
    out: dict[str, str] = {}
    if policy is None:
        return out
    for name in ("retries", "timeout", "outlier_detection"):
        value = getattr(policy, name)
        if value is None:
            continue
        with contextlib.suppress(FaultError):
            out |= {k: v for k, v in objects.annotations_for(EdgePolicy.model_construct(**{name: value})).items()
                    if v is not None}
    return out


class LinkerdMesh:
    """The Linkerd driver (:class:`~harness.mesh.base.MeshDriver`) for the cluster of the kube context."""

    name = "linkerd"
    capabilities = CAPABILITIES
    push_settle_s = 2.0
    """How long a change is given, once the API server took it (and the policy controller accepted a route),
    to reach the callers' proxies: the policy controller watches and streams to them at once."""
    ready_timeout_s = 60.0
    """How long a fault backend may take to have an available pod, and a route to be Accepted."""

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        self.env = env
        self.env_path = env_path
        self.state_dir = state_dir
        settings = env.spec.linkerd
        self.namespace = settings.namespace if settings else "default"
        self._cluster: LinkerdCluster | None = None
        self._pods: Pods | None = None
        self._unreachable: str | None = None

    @classmethod
    def for_environment(cls, env: Environment, env_path: Path, state_dir: Path | None = None) -> Self:
        return cls(env, env_path, state_dir or default_state_dir(env_path, env.metadata.name))

    # ----------------------------------------------------------------------------------- the cluster
    @property
    def cluster(self) -> LinkerdCluster:
        """The namespace in the kube context's cluster; MeshError outside ``safety`` or with no context."""
        if self._cluster is None:
            self._check_scope()
            self._cluster = LinkerdCluster(KubeRest.from_kubeconfig(), self.namespace)
        return self._cluster

    def cluster_or_reason(self) -> tuple[LinkerdCluster | None, str]:
        """The cluster when its API server answers; else None and why (``plan`` then plans without it)."""
        if self._unreachable is not None:  # asked once: an unreachable server costs a timeout each time
            return None, self._unreachable
        try:
            cluster = self.cluster
            cluster.route_version()
        except MeshError as exc:
            self._unreachable = str(exc)
            return None, self._unreachable
        return cluster, ""

    def cluster_id(self) -> dict[str, str] | None:
        """Which cluster the changes are made in (the kube context's name and API server), recorded in each
        undo so that ``cleanup`` under another context refuses instead of finding nothing and forgetting
        them; None when no cluster answers (a plan)."""
        cluster, _ = self.cluster_or_reason()
        if cluster is None:
            return None
        from harness.runner.safety import current_kube_context

        context = current_kube_context()
        return {"context": context.name if context else "", "server": str(cluster.rest.server)}

    @property
    def pods(self) -> Pods:
        if self._pods is None:
            self._pods = Pods(self.cluster.rest.api_client, self.namespace)
        return self._pods

    def _check_scope(self) -> None:
        from harness.model.loader import Positions
        from harness.runner.safety import current_kube_context, kube_scope_problems

        problems = kube_scope_problems(self.env, Positions(str(self.env_path)), current_kube_context())
        if problems:
            raise MeshError("; ".join(p.message for p in problems))

    # ----------------------------------------------------------------------------------- lifecycle
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Linkerd runs in its cluster already: check that the API server answers and serves HTTPRoutes,
        and that the cluster's Prometheus scrapes the namespace's proxies; start nothing."""
        version = self.cluster.route_version()
        url = self.gateway_url()
        source = self.metric_source(self.env.spec.metrics.scrape_interval)
        try:
            source.check()
        finally:
            source.close()
        if on_event:
            on_event(f"the cluster's Linkerd mesh runs (namespace {self.namespace}; routes as {version}); nothing "
                     "to start")
        return url

    def gateway_url(self) -> str:
        url = self.env.spec.gateway.url
        if not url:
            raise MeshError("mesh: linkerd sends load to the cluster's ingress as this machine reaches it: write "
                            f"gateway.url (e.g. http://127.0.0.1:8080, a port-forward) in {self.env_path}")
        return url

    def down(self) -> list[str]:
        return []  # the harness started nothing

    def is_up(self) -> bool:
        """True once the API server answers; MeshError when it does not. The objects a change wrote outlive
        every process of the harness, so ``cleanup`` must never take the cluster for gone."""
        self.cluster.route_version()
        return True

    def status(self) -> dict[str, Any]:
        try:
            version = self.cluster.route_version()
        except MeshError as exc:
            return {"running": False, "namespace": self.namespace, "error": str(exc)}
        return {"running": True, "namespace": self.namespace, "routes": version, "gateway": self.env.spec.gateway.url}

    def close(self) -> None:
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.rest.api_client.close()

    # ----------------------------------------------------------------------------------- topology and metrics
    def topology(self) -> Topology:
        services = [s.name for s in self.env.spec.services]
        return Topology(tuple(self.pods.nodes(services)), self.gateway_url())

    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        """What the callee Service's annotations say (for every caller); without a cluster, what the
        environment declares for the edge, as Linkerd would apply it."""
        cluster, _ = self.cluster_or_reason()
        if cluster is None:
            return resolved_policy(declared_annotations(self.env.spec.call(caller, callee)))
        svc = cluster.service(callee) or {}
        return resolved_policy((svc.get("metadata") or {}).get("annotations") or {})

    def policy_after(self, prepared: Prepared, caller: str, callee: str) -> ResolvedPolicy:
        """The policy on an edge once ``prepared`` (a policy change) is in force: what ``plan`` shows."""
        cluster, _ = self.cluster_or_reason()
        if cluster is None:
            have = declared_annotations(self.env.spec.call(caller, callee))
        else:
            have = ((cluster.service(callee) or {}).get("metadata") or {}).get("annotations") or {}
        merged = {**have, **prepared.do.get("set", {})}
        return resolved_policy({k: v for k, v in merged.items() if v is not None})

    def policy_drift(self) -> dict[str, Any]:
        """How the policy ``services:`` declares differs from the Services' annotations in the cluster."""
        cluster, why = self.cluster_or_reason()
        if cluster is None:
            return {"compared": False, "reason": why}
        out = []
        for svc in self.env.spec.services:
            declared: dict[str, str] = {}
            for caller in self.env.spec.callers_of(svc.name):
                declared |= declared_annotations(self.env.spec.call(caller, svc.name))
            found = cluster.service(svc.name)
            have = {k: v for k, v in ((found or {}).get("metadata", {}).get("annotations") or {}).items()
                    if k in objects.POLICY_KEYS}
            if found is None:
                out.append({"object": f"Service/{self.namespace}/{svc.name}", "status": "missing in the cluster",
                            "diff": ""})
            elif have != declared:
                lines = [f"-{k}: {have[k]}" for k in sorted(have) if declared.get(k) != have[k]]
                lines += [f"+{k}: {declared[k]}" for k in sorted(declared) if have.get(k) != declared[k]]
                out.append({"object": f"Service/{self.namespace}/{svc.name}", "status": "differs",
                            "diff": "\n".join(lines)})
        return {"compared": True, "differences": out}

    # ----------------------------------------------------------------------------------- mTLS
    def served_certificates(self) -> dict[str, ServedCert]:
        raise MeshError("the linkerd driver cannot read the certificates its proxies serve (its capabilities do not "
                        "list certificates)")

    def probe_peers(self, service: str) -> list[PeerProbe]:
        """Each pod of ``service`` probed as a plaintext peer through the API server's pod proxy, on the
        port its Service sends to (:mod:`harness.mesh.linkerd.probes`); makes no change to the mesh."""
        cluster = self.cluster
        svc = cluster.service(service) or {}
        ports = (svc.get("spec") or {}).get("ports") or []
        if not ports:
            raise MeshError(f"Service {self.namespace}/{service} is not in the cluster, or has no port")
        named = next((p for p in ports if p.get("name") == "http"), ports[0])
        target = named.get("targetPort", named["port"])
        out: list[PeerProbe] = []
        for pod in self.pods.of(service):
            port = target if isinstance(target, int) else self._container_port(pod["name"], str(target))
            out += probes.probe_pod(cluster.rest, self.namespace, service, pod["name"], port)
        return out

    def _container_port(self, pod: str, name: str) -> int:
        """A named targetPort, as the pod's containers name it."""
        found = self.cluster.rest.get(kind_of("v1", "Pod"), self.namespace, pod) or {}
        for container in (found.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == name:
                    return int(port["containerPort"])
        raise MeshError(f"pod {pod} has no container port named {name}")

    def metric_source(self, interval_s: float) -> LinkerdTelemetrySource:
        """The cluster's Prometheus (``metrics.url``), reading Linkerd's proxy metrics of the namespace."""
        url = prometheus_url(self.env, self.env_path, "linkerd", "linkerd-viz's, or one that scrapes the proxies as "
                                                                  "it does")
        return LinkerdTelemetrySource(url, self.namespace, [s.name for s in self.env.spec.services], interval_s)

    def admission(self, rejects: frozenset[str]) -> list[Intent]:
        """With ``linkerd.authorization: declared``, each service's declared admission (only its declared
        callers, over mTLS; the gateway's service any meshed caller) for a refusal test that plays a plaintext
        peer (the only bad peer that can be played here); else none: the cluster's own policy is tested."""
        spec = self.env.spec
        if not spec.declares_admission or "plaintext" not in rejects:
            return []
        return [Admission(s.name, tuple(spec.callers_of(s.name)), entry=s.name == spec.gateway.service)
                for s in spec.services]

    # ----------------------------------------------------------------------------------- changes
    def prepare(self, intent: Intent) -> Prepared:
        return changes.prepare(self, intent)

    def apply(self, prepared: Prepared) -> float:
        return changes.apply(self, prepared)

    def undo(self, undo: dict[str, Any]) -> None:
        changes.undo(self, undo)

    def fingerprint(self) -> dict[str, Any]:
        """Every Service's policy annotations, and every object the harness made, in the namespace."""
        cluster = self.cluster
        out: dict[str, Any] = {}
        for svc in self.env.spec.services:
            found = cluster.service(svc.name) or {}
            out[f"Service/{svc.name}"] = {k: v for k, v in (found.get("metadata", {}).get("annotations") or {}).items()
                                          if k.startswith(("retry.linkerd.io/", "timeout.linkerd.io/", "balancer."))}
        made = []
        for api_version, kind in (("v1", "Service"), ("v1", "ConfigMap"), ("apps/v1", "Deployment"),
                                  (cluster.route_version(), "HTTPRoute"), (objects.POLICY_V1BETA3, "Server"),
                                  (objects.POLICY_V1ALPHA1, "MeshTLSAuthentication"),
                                  (objects.POLICY_V1ALPHA1, "AuthorizationPolicy")):
            listed = cluster.rest.list(kind_of(api_version, kind), self.namespace)
            made += [f"{kind}/{o['metadata']['name']}" for o in listed if owned(o)]
        out["made by mesh-harness"] = sorted(made)
        return out

    def logs_hint(self, part: str | None = None) -> str:
        if part:
            return f"kubectl -n {self.namespace} logs {part}"
        return "kubectl -n linkerd logs deploy/linkerd-destination -c policy (the policy controller)"
