"""``mesh: istio``: the harness's changes as Istio objects, rehearsed with the real istiod locally.

With ``istio.control_plane: local`` the harness runs the real Istio control plane (``pilot-discovery``)
for local workloads: the demo apps, an Envoy sidecar for each, and an Istio ingress gateway, every Envoy
configured by istiod over ADS from the Istio objects in a config directory (see
:mod:`harness.mesh.istio.objects` for what describes the workloads, :mod:`harness.mesh.istio.changes`
for what each fault becomes). The processes, ports, state, logs, signals and metrics are the local
mesh's (this driver is :class:`~harness.mesh.local.driver.LocalMesh` with another control plane);
nothing of the local mesh's own Envoy configuration is used.

``control_plane: cluster`` (an existing cluster through the kubernetes client) shares the objects and
their patches; this version plans against it but does not yet apply.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from harness._errors import ConfigRejected, InputError, MeshError
from harness._process import Proc, alive, spawn
from harness.mesh.base import Capabilities, Prepared, Topology
from harness.mesh.istio import changes, istiod
from harness.mesh.istio.bootstrap import bootstrap
from harness.mesh.istio.config import ConfigDir, dump, load_user_config
from harness.mesh.istio.kube import KubeStore, canonical
from harness.mesh.istio.naming import IstioNaming
from harness.mesh.istio.objects import (
    GATEWAY_LABELS,
    INSTANCE_LABEL,
    TRUST_DOMAIN,
    Placement,
    Workload,
    base_objects,
    fqdn,
    identity,
    key_of,
    policy_conflicts,
    policy_objects,
    service_ports,
)
from harness.mesh.istio.routing import destination_rule, normalize_host, resolved_policy, routes_to, sends_to
from harness.mesh.kube.pods import Pods
from harness.mesh.local import prometheus as prom
from harness.mesh.local.ca import LocalCA
from harness.mesh.local.driver import LocalMesh, _write_json
from harness.mesh.local.envoy_binary import envoy_binary
from harness.mesh.local.state import State
from harness.mesh.local.topology import GATEWAY_ID, Instance, allocate_ports, build_layout
from harness.mesh.policy import ResolvedPolicy
from harness.metrics.envoy import EnvoySource
from harness.metrics.istio_telemetry import IstioTelemetrySource
from harness.metrics.pod_source import prometheus_url
from harness.metrics.prometheus import PrometheusSource
from harness.model.environment import Environment

__all__ = ["CAPABILITIES", "IstioMesh"]

_NO_L4 = ("Istio injects faults only at L7 (a VirtualService's fault: abort or delay of HTTP requests); it has no "
          "TCP-level latency, bandwidth, reset or partition")
CAPABILITIES = Capabilities(
    mesh="istio",
    faults=frozenset({"http-abort", "http-delay", "kill", "traffic-shift"}),
    http_placements=frozenset({"caller"}),
    policy_fields=frozenset({"retries", "timeout", "circuit_breaker", "outlier_detection"}),
    evidence=frozenset({"client", "sidecar-counters", "sidecar-latency", "attempt-counts", "app-inflight",
                        "ejections"}),
    refused={
        "net-latency": _NO_L4, "net-bandwidth": _NO_L4, "net-reset": _NO_L4, "partition": _NO_L4,
        "pause": "a pod cannot be frozen through Kubernetes or Istio (kill deletes a pod instead)",
        "cert-rotation": "istiod's CA issues the workloads' certificates in a cluster; rotating them from the harness "
                         "is not built yet for mesh: istio",
        "cert-untrusted": "not built yet for mesh: istio",
        "http-abort.at=target": "Istio's VirtualService faults act in the callers' sidecars: write at: caller",
        "http-delay.at=target": "Istio's VirtualService faults act in the callers' sidecars: write at: caller",
    },
)
"""What Istio can be made to do: L7 faults at the callers (VirtualService ``fault``), shifts (route
weights), every policy field (VirtualService retries/timeout, DestinationRule connectionPool and
outlierDetection), and kills; see docs/concepts/istio.md for what it cannot and why."""

PLACEMENT = "placement.json"
CLUSTER_ONLY_KINDS = frozenset({"Gateway", "Sidecar", "ServiceEntry", "WorkloadEntry"})
"""Kinds of a user's ``istio.config`` that describe a cluster's workloads and ingress, not its policy: the local
control plane writes its own for the local workloads, and leaves the user's out (a cluster's gateway would
bind 0.0.0.0, its Sidecars would capture nothing here)."""
PUSH_SETTLE_S = 5.0
"""How long a change to a cluster's objects is given to reach its sidecars before ``apply`` returns: the
harness sees no sidecar there (locally it waits for each Envoy's new xDS versions; measured: 384 ms median
to every Envoy, docs/performance.md), and istiod debounces pushes for 100 ms up to 10 s
(``PILOT_DEBOUNCE_AFTER``, ``PILOT_DEBOUNCE_MAX``)."""
GATEWAY_NODE = "istio-ingressgateway"
"""The gateway proxy's name in its node id (what istiod and the SDS server know it by)."""


@dataclass
class _Local:
    """What ``up`` decided for the local control plane, kept beside the state (``istio/placement.json``)."""

    namespace: str
    ports: dict[str, int]
    workloads: list[dict[str, Any]]
    gateway_port: int
    istiod: dict[str, int]

    def placement(self) -> Placement:
        return Placement(self.namespace, self.ports, tuple(Workload(**w) for w in self.workloads), "127.0.0.1",
                         self.gateway_port)


class IstioMesh(LocalMesh):
    """The Istio driver; ``up`` runs the local control plane (``istio.control_plane: local``)."""

    name = "istio"
    capabilities = CAPABILITIES
    push_settle_s = PUSH_SETTLE_S
    """How long a change written to a cluster is given to reach its sidecars (:data:`PUSH_SETTLE_S`)."""

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        super().__init__(env, env_path, state_dir)
        settings = env.spec.istio
        self.namespace = settings.namespace if settings else "default"
        self.control_plane = settings.control_plane if settings else "cluster"
        self.ports = service_ports(env)
        self.config = ConfigDir(state_dir / "istio" / "config")
        self._local: _Local | None = None
        self._kube: KubeStore | None = None
        self._pods: Pods | None = None

    # ----------------------------------------------------------------------------------- objects
    def user_objects(self) -> list[dict[str, Any]]:
        settings = self.env.spec.istio
        if settings is None or not settings.config:
            return []
        return load_user_config(settings.config, self.env_path.parent, self.namespace)

    def policy_objects(self) -> list[dict[str, Any]]:
        """The policy the mesh starts with: the user's ``istio.config`` objects when given (the harness then
        adds only a DestinationRule with version subsets for a service that has none), else the policy of
        ``services:`` as Istio objects."""
        user = [o for o in self.user_objects()
                if self.control_plane != "local" or o["kind"] not in CLUSTER_ONLY_KINDS]
        if not user:
            conflicts = policy_conflicts(self.env)
            if conflicts:
                raise InputError.at(self.env_path, f"the callers of {', '.join(conflicts)} declare different "
                                                   "circuit_breaker or outlier_detection settings, and Istio has one "
                                                   "DestinationRule per host for every caller: declare them alike",
                                    path="spec.services")
            return policy_objects(self.env, self.namespace)
        out = list(user)
        for obj in policy_objects(self.env, self.namespace):
            if obj["kind"] == "DestinationRule" and destination_rule(user, obj["spec"]["host"]) is None:
                obj["spec"].pop("trafficPolicy", None)
                out.append(obj)
            elif obj["kind"] == "PeerAuthentication" and not any(o["kind"] == "PeerAuthentication" for o in user):
                out.append(obj)  # the environment's mtls, where the user's files say nothing of it
        return out

    @property
    def store(self) -> ConfigDir | KubeStore:
        """Where the objects in force live: istiod's config directory, or the cluster's API server."""
        if self.control_plane == "local":
            return self.config
        if self._kube is None:
            self._check_scope()
            self._kube = KubeStore.from_kubeconfig(self.namespace)
        return self._kube

    @property
    def pods(self) -> Pods:
        """The namespace's pods in the cluster (the topology's nodes, what ``kill`` deletes)."""
        if self._pods is None:
            store = self.store
            assert isinstance(store, KubeStore), "pods are a cluster's"
            self._pods = Pods(store.api_client, self.namespace)
        return self._pods

    def _check_scope(self) -> None:
        """Refuse a kube context or namespace outside ``safety`` before the cluster is read or written (the
        commands check it too; ``plan`` relies on this to plan without comparing instead)."""
        from harness.model.loader import Positions
        from harness.runner.safety import current_kube_context, kube_scope_problems

        problems = kube_scope_problems(self.env, Positions(str(self.env_path)), current_kube_context())
        if problems:
            raise MeshError("; ".join(p.message for p in problems))

    def objects(self) -> list[dict[str, Any]]:
        """The Istio objects in force: the config directory of a running local mesh, the cluster's objects,
        else (nothing running, no cluster to reach) what ``up`` would write: the environment's policy."""
        if self.control_plane == "local":
            if self.config.path.is_dir() and self._load_state() is not None:
                return list(self.config.objects())
            return self.policy_objects()
        try:
            return list(self.store.objects())
        except MeshError:
            return self.policy_objects()

    def policy_drift(self) -> dict[str, Any]:
        """How the environment's policy (``istio.config``, else ``services:``) differs from the cluster's
        objects, per object, for ``plan``; ``compared: False`` with the reason when no cluster answers."""
        if self.control_plane == "local":
            return {"compared": False, "reason": "control_plane: local: the environment's policy is what runs"}
        declared = {key_of(o): o for o in self.policy_objects() if o["kind"] in ("VirtualService", "DestinationRule",
                                                                                  "PeerAuthentication")}
        try:
            actual = {key_of(o): o for o in self.store.objects()}
        except MeshError as exc:
            return {"compared": False, "reason": str(exc)}
        out = []
        for key in sorted(set(declared) | set(actual)):
            want = dump(canonical(declared[key])) if key in declared else None
            have = dump(canonical(actual[key])) if key in actual else None
            if want == have:
                continue
            status = "missing in the cluster" if have is None else "only in the cluster" if want is None else "differs"
            diff = "".join(difflib.unified_diff((have or "").splitlines(True), (want or "").splitlines(True),
                                                f"cluster:{key}", f"declared:{key}"))
            out.append({"object": key, "status": status, "diff": diff})
        return {"compared": True, "differences": out}

    def swap_objects(self, data: dict[str, Any]) -> None:
        """Swap each object from its expected text to its new one, then wait until every Envoy that routes
        to the services concerned has received istiod's push (all its RDS versions, and CDS, changed).

        istiod refuses a whole config directory while one file in it is invalid (it logs "Failed to parse"
        and keeps the previous configuration); the harness then takes its write back at once, so the mesh
        keeps working, and says what istiod said."""
        if self.control_plane != "local":
            # The cluster's istiod pushes on its own, unseen from here: the API server has accepted each object,
            # then the push is given PUSH_SETTLE_S.
            changed = 0
            try:
                for item in data["objects"]:
                    changed += self.store.swap(item["key"], item.get("expect"), item.get("text"))
            finally:  # a conflict on a later object: the ones written before it are pushed all the same
                if changed:
                    time.sleep(self.push_settle_s)
            return
        try:
            nodes = self._concerned(set(data.get("services", [])))
        except MeshError:
            nodes = []  # the mesh is down (cleanup after down): the files are put back; the next up reads them
        before = {n.id: self._xds_versions(n) for n in nodes}
        log = Path(self.logs_hint("istiod"))
        offset = log.stat().st_size if log.exists() else 0
        written = [item for item in data["objects"]
                   if self.config.swap(item["key"], item.get("expect"), item.get("text"))]
        if written and nodes:
            self._await_push(nodes, before, log, offset, written)

    def _refusal(self, log: Path, offset: int) -> str | None:
        """What istiod logged against the config directory since ``offset``, if it refused a file."""
        try:
            with log.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if "Failed to parse" in line:
                return line.split("Failed to parse", 1)[1].strip()
        return None

    def _concerned(self, services: set[str]) -> list[Any]:
        spec = self.env.spec
        callers = {c for s in services for c in spec.callers_of(s)}
        out = [n for n in self.nodes() if n.instance is not None and n.instance.service in callers]
        if spec.gateway.service in services:
            out.append(self.node(GATEWAY_ID))
        return out

    def _xds_versions(self, node: Any) -> dict[str, str]:
        return self.admin_stats(node, r"^(cluster_manager\.cds|http\..*\.rds\..*)\.version_text$")

    def _await_push(self, nodes: list[Any], before: dict[str, dict[str, str]], log: Path, offset: int,
                    written: list[dict[str, Any]], timeout_s: float = 10.0) -> None:
        """Until istiod's push after the write reached every node (each one's CDS and RDS versions moved
        on; istiod pushes CDS, then LDS, then RDS, so the last is in force when they have); a file istiod
        refused is written back as it was and reported."""
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        looked = 0.0
        while True:
            for node in list(pending):
                now = self._xds_versions(node)
                if now and all(now.get(k) != v for k, v in before[node.id].items()):
                    pending.remove(node)
            if not pending:
                return
            if time.monotonic() - looked > 0.05:
                looked = time.monotonic()
                refused = self._refusal(log, offset)
                if refused is not None:
                    for item in reversed(written):
                        self.config.swap(item["key"], item.get("text"), item.get("expect"))
                    raise ConfigRejected(f"istiod refused the change and kept its previous configuration; it "
                                         f"said: {refused}. The change was taken back.")
            if time.monotonic() > deadline:
                raise ConfigRejected(f"istiod's push did not reach {', '.join(n.id for n in pending)} within "
                                     f"{timeout_s:g}s; see {self.logs_hint('istiod')} and {self.logs_hint()}")
            time.sleep(0.005)

    # ----------------------------------------------------------------------------------- a cluster's life
    def is_up(self) -> bool:
        """Local: every process of the mesh runs. Cluster: always, once its API server answers; MeshError when
        it does not (or its context is outside safety). The objects a change wrote there outlive every process
        of the harness, so ``cleanup`` must never take a cluster for gone and drop their undos."""
        if self.control_plane == "local":
            return super().is_up()
        next(iter(self.store.objects()), None)
        return True

    def status(self) -> dict[str, Any]:
        if self.control_plane == "local":
            return super().status()
        try:
            count = len(list(self.store.objects()))
        except MeshError as exc:
            return {"running": False, "control_plane": "cluster", "namespace": self.namespace, "error": str(exc)}
        return {"running": True, "control_plane": "cluster", "namespace": self.namespace,
                "gateway": self.env.spec.gateway.url, "istio_objects": count}

    def down(self) -> list[str]:
        """Local: stop every process. Cluster: nothing to stop (the harness started nothing there)."""
        return super().down() if self.control_plane == "local" else []

    # ----------------------------------------------------------------------------------- placement
    @property
    def local(self) -> _Local:
        if self._local is None:
            try:
                data = json.loads((self.state_dir / "istio" / PLACEMENT).read_text())
                self._local = _Local(**data)
            except (OSError, ValueError, TypeError) as exc:
                raise MeshError(f"the istio mesh's placement in {self.state_dir / 'istio'} cannot be read ({exc}); "
                                f"run mesh-harness down --env {self.env_path}, then up") from None
        return self._local

    def _place(self, instances: list[Instance], gateway_port: int, taken: set[int]) -> _Local:
        """Two loopback addresses per instance (its inbound listener's, its outbound listeners'), in a /16
        of 127.0.0.0/8 chosen from the state directory, so that two meshes on one machine do not meet."""
        if len(instances) > 250:
            raise MeshError(f"{len(instances)} instances: the local istio mesh places at most 250")
        second = 100 + int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 100
        workloads = [asdict(Workload(i.id, i.service, i.version, f"127.{second}.0.{n + 2}", f"127.{second}.1.{n + 2}",
                                     i.app_port)) for n, i in enumerate(instances)]
        grpc, http, monitoring = allocate_ports(3, avoid=taken)  # the layout's are chosen, not yet bound
        return _Local(self.namespace, dict(self.ports), workloads, gateway_port,
                      {"grpc": grpc, "http": http, "monitoring": monitoring})

    # ----------------------------------------------------------------------------------- up
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Start istiod, the apps, their Envoys and the gateway; wait until a request passes end to end."""
        say = on_event or (lambda message: None)
        if self.control_plane != "local":
            return self._cluster_up(say)
        if self.is_up():
            return self.gateway_url
        self._cleanup_stale()
        binary = istiod.find_istiod()
        envoy = envoy_binary()
        prometheus = prom.find_prometheus() if self._prometheus_wanted() else None
        self.policy_objects()  # a bad istio.config file or conflicting policies: refused before anything starts
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = (int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 40000) * 10 + 100000
        layout = build_layout(self.env, seed)
        layout.toxiproxy_port = 0  # no L4 faults on istio
        self._local = self._place(layout.instances, layout.gateway_port, layout.ports())
        self._state = State(env=self.env.model_dump(by_alias=True, mode="json"), env_path=str(self.env_path),
                            layout=layout, started_at=time.time(), envoy=envoy)
        self._save()
        try:
            self._write_local(binary)
            self._write_identities()
            self._preflight_addresses()
            say(f"starting istiod, {len(layout.instances)} demo apps and {len(self.nodes())} Envoys ({envoy.source}: "
                f"envoy {envoy.version})" + (" and Prometheus" if prometheus else ""))
            self._spawn_istio(binary, envoy.path, prometheus)
            say(f"waiting until istiod has configured every Envoy (at most {timeout_s:g}s)")
            self._wait_ready(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.gateway_url

    def _write_local(self, binary: str) -> None:
        root = self.state_dir / "istio"
        self.config.path.mkdir(parents=True, exist_ok=True)
        for stale in self.config.path.glob("*.yaml"):  # what an earlier mesh (or a change it died with) left
            stale.unlink()
        _write_json(root / PLACEMENT, asdict(self.local))
        placement = self.local.placement()
        for obj in base_objects(self.env, placement) + self.policy_objects():
            self.config.write(key_of(obj), dump(obj))
        (root / "mesh.yaml").write_text(yaml.safe_dump(istiod.mesh_config(self.local.istiod["grpc"])))
        (root / "networks.yaml").write_text("networks: {}\n")
        by_id = {w.id: w for w in placement.workloads}
        for node in self.nodes():
            directory = self._node_dir(node.id)
            directory.mkdir(parents=True, exist_ok=True)
            if node.instance is None:
                doc = bootstrap(kind="router", ip="127.0.0.1", name=GATEWAY_NODE, namespace=self.namespace,
                                labels={**GATEWAY_LABELS, "app": "istio-ingressgateway"},
                                service_account="istio-ingressgateway", admin_port=node.admin_port,
                                istiod_port=self.local.istiod["grpc"], sds_socket=root / "sds.sock",
                                prometheus=self._through_prometheus)
            else:
                w = by_id[node.id]
                doc = bootstrap(kind="sidecar", ip=w.inbound, name=w.id, namespace=self.namespace,
                                labels={"app": w.service, "version": w.version, INSTANCE_LABEL: w.id,
                                        "security.istio.io/tlsMode": "istio"},
                                service_account=w.service, admin_port=node.admin_port,
                                istiod_port=self.local.istiod["grpc"], sds_socket=root / "sds.sock",
                                prometheus=self._through_prometheus)
            _write_json(directory / "bootstrap.json", doc)

    def _write_identities(self) -> None:
        """Certificates from the harness's CA for each service's identity (and the gateway's), and the map
        the SDS server answers from."""
        ca = LocalCA.create(self.state_dir / "pki", TRUST_DOMAIN)
        nodes: dict[str, dict[str, str]] = {}
        for svc in self.env.spec.services:
            ca.issue_leaf(svc.name, identity=identity(svc.name, self.namespace))
        ca.issue_leaf(GATEWAY_ID, identity=identity("istio-ingressgateway", self.namespace))
        for node in self.nodes():
            leaf = ca.paths(node.instance.service if node.instance else GATEWAY_ID)
            nodes[node.instance.id if node.instance else GATEWAY_NODE] = {"cert": str(leaf.cert), "key": str(leaf.key)}
        _write_json(self.state_dir / "istio" / "identities.json",
                    {"trust": str(ca.trust_paths().ca_cert), "nodes": nodes})

    def _preflight_addresses(self) -> None:
        """Every listener address istiod will have the Envoys bind must be free: an Envoy whose listener
        cannot bind only logs it, and the mesh would come up with a hole."""
        wanted = [(self.local.placement().gateway_address, self.local.gateway_port)]
        for w in self.local.placement().workloads:
            wanted.append((w.inbound, self.ports[w.service]))
            wanted += [(w.outbound, self.ports[c.to]) for c in self.env.spec.service(w.service).calls]
        for address, port in wanted:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy binds (TIME_WAIT is no owner)
                try:
                    sock.bind((address, port))
                except OSError as exc:
                    raise MeshError(f"{address}:{port} cannot be bound ({exc.strerror}); another program holds it "
                                    f"(or 0.0.0.0:{port}): stop it, or start this mesh from another state "
                                    "directory") from None

    def _app_config(self, inst: Instance) -> Path:
        """The demo app calls each callee through its sidecar's outbound listener for that callee's port,
        with the callee's host name, as an app in a pod calls ``http://reviews:9082``."""
        svc = self.env.spec.service(inst.service)
        behaviour = svc.behaviour_of(inst.version)
        workload = next(w for w in self.local.workloads if w["id"] == inst.id)
        path = self.state_dir / "apps" / f"{inst.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, {
            "service": inst.service, "version": inst.version, "instance": inst.id, "port": inst.app_port,
            "host": "127.0.0.1",
            "calls": [{"to": c.to, "url": f"http://{workload['outbound']}:{self.ports[c.to]}",
                       "host": fqdn(c.to, self.namespace), "optional": c.optional} for c in svc.calls],
            "behaviour": {"latency_ms": behaviour.latency * 1000, "error_rate": behaviour.error_rate,
                          "error_status": behaviour.error_status},
        })
        return path

    def _spawn_istio(self, binary: str, envoy: str, prometheus: str | None) -> None:
        """Start istiod, the SDS server and the apps, then (istiod serving) the Envoys; each is in the state
        from the moment it runs (:meth:`_record`)."""
        root = self.state_dir / "istio"
        logs = self.state_dir / "logs"
        ports = self.local.istiod
        istiod_proc = self._record(spawn("istiod", istiod.argv(binary, self.config.path, root / "mesh.yaml",
                                                               root / "networks.yaml", ports["grpc"], ports["http"],
                                                               ports["monitoring"]),
                                         logs / "istiod.log", env={**os.environ, **istiod.ISTIOD_ENV}))
        sds = self._record(spawn("sds", [sys.executable, "-m", "harness.mesh.istio.sds", "--socket",
                                         str(root / "sds.sock"), "--identities", str(root / "identities.json")],
                                 logs / "sds.log"))
        for inst in self.layout.instances:
            self._record(self._spawn_app(inst))
        self._wait_istiod(istiod_proc, 30.0)
        self._wait_socket(sds, root / "sds.sock", 15.0)
        for node in self.nodes():
            self._record(spawn(f"envoy:{node.id}", self._envoy_argv(envoy, node), logs / f"envoy-{node.id}.log",
                               keeper=True))
        if prometheus and self.layout.prometheus_port:
            config = self._write_prometheus_config()
            self._record(spawn("prometheus", prom.argv(prometheus, config, self.layout.prometheus_port),
                               logs / "prometheus.log"))

    def _unready_detail(self) -> str:
        """What the gateway's Envoy holds for the entry service (each endpoint and its health flags) and what
        istiod's registry holds: "no healthy upstream" is one of the two (seen once in CI, not reproduced)."""
        entry = fqdn(self.env.spec.gateway.service, self.namespace)
        parts = []
        with contextlib.suppress(Exception):
            gateway = next(n for n in self.nodes() if n.instance is None)
            lines = [line for line in self._http.get(f"{gateway.admin}/clusters").text.splitlines()
                     if entry in line and ("health_flags" in line or "::added_via_api" in line)]
            parts.append("the gateway's endpoints of " + entry + ": " + ("; ".join(lines[:6]) or "none"))
        with contextlib.suppress(Exception):
            url = f"http://127.0.0.1:{self.local.istiod['http']}/debug/endpointShardz"
            shards = self._http.get(url).json()
            parts.append(f"istiod's endpoint shards of {entry}: {json.dumps(shards.get(entry, {}))[:400]}")
        return ("; " + "; ".join(parts)) if parts else ""

    def _wait_istiod(self, proc: Proc, timeout_s: float) -> None:
        """Until istiod's service registry holds every service's ServiceEntry (its config store is then
        loaded). Its ``/ready`` cannot tell: without Kubernetes the sidecar-injector readiness flag is never
        set (pilot/pkg/bootstrap/server.go sets it only with a kube client), so it answers 503 forever."""
        url = f"http://127.0.0.1:{self.local.istiod['http']}/debug/registryz"
        hosts = {fqdn(s.name, self.namespace) for s in self.env.spec.services}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(proc):
                log = Path(proc.log).read_text(errors="replace") if Path(proc.log).exists() else ""
                reason = istiod.crash_reason(log)
                raise MeshError(reason or f"istiod exited during start-up; see {self.logs_hint('istiod')}")
            with contextlib.suppress(Exception):
                listed = {s.get("hostname") for s in self._http.get(url).json()}
                if hosts <= listed:
                    return
            time.sleep(0.05)
        raise MeshError(f"istiod was not ready within {timeout_s:g}s; see {self.logs_hint('istiod')}")

    def _wait_socket(self, proc: Proc, path: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if not alive(proc) or time.monotonic() > deadline:
                raise MeshError(f"the SDS server did not start; see {self.state_dir / 'logs' / 'sds.log'}")
            time.sleep(0.02)

    def _envoy_argv(self, envoy: str, node: Any) -> list[str]:
        """Envoy as pilot-agent runs it, minus the agent."""
        return self._bootstrapped_envoy_argv(envoy, node)

    def _check_procs(self) -> None:
        for proc in self.state.procs:
            if proc.name == "istiod" and not alive(proc):
                log = Path(proc.log).read_text(errors="replace") if Path(proc.log).exists() else ""
                raise MeshError(istiod.crash_reason(log) or f"istiod exited; see {self.logs_hint('istiod')}")
        super()._check_procs()

    def _own_process_name(self, argv: list[str]) -> str | None:
        roots = self._state_roots()
        for flag, value in itertools.pairwise(argv):
            if flag == "--configDir" and str(Path(value).parent.parent) in roots:
                return "istiod"
            if flag == "--identities" and str(Path(value).parent.parent) in roots:
                return "sds"
        return super()._own_process_name(argv)

    def _preflight(self) -> None:
        """No file-watched xDS here: istiod serves every Envoy over one gRPC stream (no inotify budget)."""

    def logs_hint(self, part: str | None = None) -> str:
        if part == "istiod":
            return str(self.state_dir / "logs" / "istiod.log")
        return super().logs_hint(part)

    def _state_status(self, state: State) -> dict[str, Any]:
        out = super()._state_status(state)
        with contextlib.suppress(MeshError):
            out["istiod"] = f"http://127.0.0.1:{self.local.istiod['http']}"
            out["istio_config"] = str(self.config.path)
        return out

    def _cluster_up(self, say: Callable[[str], None]) -> str:
        """A cluster's mesh runs already: check that its API server answers (within ``safety``) and that
        its Prometheus scrapes the namespace; start nothing."""
        self.is_up()
        source = self._cluster_source(self.env.spec.metrics.scrape_interval)
        try:
            source.check()
        finally:
            source.close()
        say(f"the cluster's mesh runs (namespace {self.namespace}); nothing to start")
        return self._cluster_gateway()

    def _cluster_gateway(self) -> str:
        url = self.env.spec.gateway.url
        if not url:
            raise MeshError("istio.control_plane: cluster sends load to the cluster's ingress as this machine reaches "
                            f"it: write gateway.url (e.g. http://127.0.0.1:8080, a port-forward) in {self.env_path}")
        return url

    def _cluster_source(self, interval_s: float) -> IstioTelemetrySource:
        url = prometheus_url(self.env, self.env_path, "istio", "istio.control_plane: cluster")
        return IstioTelemetrySource(url, self.namespace, [s.name for s in self.env.spec.services],
                                    self.env.spec.gateway.service, interval_s, gateway=GATEWAY_ID,
                                    subsets=self.subsets())

    def topology(self) -> Topology:
        """Local: every Envoy. Cluster: every pod of the environment's services (labelled ``app``), and the
        environment's gateway URL (the cluster's ingress as this machine reaches it)."""
        if self.control_plane != "local":
            services = [s.name for s in self.env.spec.services]
            return Topology(tuple(self.pods.nodes(services)), self._cluster_gateway())
        return super().topology()

    # ----------------------------------------------------------------------------------- policy and metrics
    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        """What the Istio objects in force say for the edge, with Istio's defaults for the rest."""
        objects = self.objects()
        host = fqdn(callee, self.namespace)
        if caller == GATEWAY_ID:
            route = next((r for vs in routes_to(objects, host) for r in vs["spec"].get("http", [])
                          if sends_to(r, host, vs["metadata"].get("namespace", "default"))), None)
            return resolved_policy(objects, None, host, route)
        return resolved_policy(objects, {"app": caller}, host)

    def policy_after(self, prepared: Prepared, caller: str, callee: str) -> ResolvedPolicy:
        """The policy on an edge once ``prepared`` is in force (what ``plan`` shows of a policy change)."""
        changed = {item["key"]: item.get("text") for item in prepared.do.get("objects", [])}
        objects = [o for o in self.objects() if key_of(o) not in changed]
        objects += [yaml.safe_load(text) for text in changed.values() if text]
        return resolved_policy(objects, {"app": caller}, fqdn(callee, self.namespace))

    def split(self, service: str) -> dict[str, float]:
        return dict(self.env.spec.service(service).effective_split())

    def naming(self) -> IstioNaming:
        """Stat names of this mesh: callee by port, and each DestinationRule subset's version label."""
        return IstioNaming({port: svc for svc, port in self.ports.items()}, self.layout.gateway_port, self.subsets())

    def subsets(self) -> dict[tuple[str, str], str]:
        """Per (service, DestinationRule subset name), the version its labels select (``stable`` → ``v1``)."""
        subsets: dict[tuple[str, str], str] = {}
        for obj in self.objects():
            if obj.get("kind") != "DestinationRule":
                continue
            service = normalize_host(obj["spec"].get("host", ""), obj["metadata"].get("namespace", "default"))
            for subset in obj["spec"].get("subsets") or []:
                version = (subset.get("labels") or {}).get("version")
                if version:
                    subsets[(service.split(".", 1)[0], str(subset["name"]))] = str(version)
        return subsets

    def metric_source(self, interval_s: float) -> EnvoySource | PrometheusSource:
        """Local: the Envoys' admin endpoints, or a Prometheus scraping them. Cluster: the cluster's
        Prometheus (``metrics.url``), Istio's standard metrics and its sidecars' stats where exported."""
        if self.control_plane != "local":
            return self._cluster_source(interval_s)
        apps = [(i.id, i.app_port) for i in self.layout.instances]
        url = self._prometheus_of(self.state)
        if url is not None:
            return PrometheusSource(url, self._prometheus_targets(), apps, interval_s, self.naming())
        return EnvoySource(self._scrape_targets(), apps, interval_s, self.naming())

    def _write_prometheus_config(self) -> Path:
        return prom.write_config(self.state_dir / "prometheus", self._prometheus_targets(),
                                 self.env.spec.metrics.scrape_interval, self.naming())

    # ----------------------------------------------------------------------------------- changes
    changes: Any = changes
    """Intents as swaps of Istio objects (:mod:`harness.mesh.istio.changes`)."""

    def fingerprint(self) -> dict[str, Any]:
        """The local mesh's fingerprint (every Envoy's clusters, listeners and routes as istiod pushed them),
        plus the text of every Istio object in force."""
        out = super().fingerprint()
        out["istio-objects"] = {p.name: p.read_text() for p in sorted(self.config.path.glob("*.yaml"))}
        return out
