"""``mesh: consul``: Consul Connect, with a real Consul agent configuring the local Envoys.

With ``consul.control_plane: local`` the harness runs ``consul agent -dev`` on 127.0.0.1, registers each
instance of the environment with a Connect sidecar whose explicit upstreams are the instance's callees (the
demo apps reach them at those upstreams' local ports, as Consul users' apps do), and starts each sidecar
Envoy with the bootstrap ``consul connect envoy -bootstrap`` generates: from then on Consul alone
configures the Envoys, over its xDS. Load enters through a Consul ingress gateway of the harness's own
(``mesh-harness-gateway``: an ``ingress-gateway`` config entry with one HTTP listener, on the gateway port,
for the environment's gateway service), as traffic from outside enters a Consul mesh. The processes, ports, state, logs,
signals and metrics are the local mesh's (this driver is :class:`~harness.mesh.local.driver.LocalMesh`
with another control plane); nothing of the local mesh's own Envoy configuration is used.

The environment's topology and declared policy become config entries (:mod:`.entries`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from harness._errors import FaultError, InputError, MeshError
from harness._process import Proc, alive, spawn
from harness.mesh.base import GATEWAY, Capabilities, Prepared, Topology
from harness.mesh.consul import ca, changes, cluster, entries
from harness.mesh.consul.agent import AgentPorts, ConsulAPI, agent_argv, find_consul, without_consul_variables
from harness.mesh.consul.naming import ConsulNaming
from harness.mesh.local import certs as local_certs
from harness.mesh.local import changes as local_changes
from harness.mesh.local.driver import EnvoyNode, LocalMesh, _tail, _write_json
from harness.mesh.local.envoy_binary import envoy_binary
from harness.mesh.local.state import State
from harness.mesh.local.topology import GATEWAY_ID, allocate_ports, build_layout
from harness.mesh.policy import MeshDefaults, ResolvedPolicy, resolve
from harness.metrics.consul_prometheus import ConsulPrometheusSource
from harness.metrics.envoy import EnvoySource
from harness.metrics.snapshot import NodeInfo
from harness.metrics.tls import PeerProbe, ServedCert
from harness.model.environment import EdgePolicy, Environment
from harness.model.loader import Positions, load_environment
from harness.model.suite import PolicyChange

__all__ = ["CAPABILITIES", "CLUSTER_CAPABILITIES", "CONSUL_DEFAULTS", "GATEWAY_SERVICE", "ConsulMesh"]

CONSUL_DEFAULTS = MeshDefaults(max_retries=3, connect_timeout_s=5.0)
"""What a Consul-configured Envoy does where no config entry says otherwise: no retries (no router, no retry
policy), Envoy's 15 s route timeout, Envoy's breaker thresholds (1024, and 3 concurrent retries: Consul's
``Limits`` has no field for them), and the resolver's 5 s connect timeout."""

_NO_CALLER_FAULT = ("Consul 1.16 has no fault injection of its own; the harness puts Envoy's fault filter on the "
                    "target's sidecars (its public listener): write at: target")
CAPABILITIES = Capabilities(
    mesh="consul",
    faults=frozenset({"cert-rotation", "http-abort", "http-delay", "kill", "pause", "partition", "traffic-shift"}),
    http_placements=frozenset({"target"}),
    policy_fields=frozenset({"retries", "timeout", "circuit_breaker", "outlier_detection"}),
    evidence=frozenset({"client", "sidecar-counters", "sidecar-latency", "attempt-counts", "app-inflight",
                        "ejections", "certificates"}),
    refused={
        "net-latency": "Consul configures no L4 fault, and its sidecars' upstreams are not interposed",
        "net-bandwidth": "Consul configures no L4 fault, and its sidecars' upstreams are not interposed",
        "net-reset": "Consul configures no L4 fault, and its sidecars' upstreams are not interposed",
        "http-abort.at=caller": _NO_CALLER_FAULT, "http-delay.at=caller": _NO_CALLER_FAULT,
        "partition.mode=blackhole": "a Consul intention denies a call (the callee's sidecar answers 403 to HTTP); "
                                    "nothing in Consul makes a connection hang: write mode: reject",
        "partition.via=network": "its processes share the host's loopback, with no network to disconnect an instance "
                                 "from: write via: proxy (Consul's intentions)",
        "cert-rotation.what=leaf": "Consul issues and renews every leaf itself; the harness rotates its Connect CA "
                                   "(what: ca), after which Consul re-issues every leaf",
        "cert-untrusted": "Consul's CA issues every leaf; an untrusted one cannot be given to a sidecar through "
                          "Consul",
        "cert-rotation.hold": "Consul cross-signs the new root and re-issues every leaf by itself, with no pause "
                              "between the two that the harness could hold: remove hold:",
    },
)
"""What the Consul driver does with ``control_plane: local``; see docs/concepts/consul.md."""

_NOT_OURS = ("in a datacenter ({what}); the harness changes only what Consul's HTTP API can restore exactly. "
             "Rehearse it with consul.control_plane: local")
CLUSTER_CAPABILITIES = dataclasses.replace(
    CAPABILITIES,
    faults=frozenset({"partition", "traffic-shift"}),
    http_placements=frozenset(),
    evidence=frozenset({"client", "sidecar-counters", "sidecar-latency", "ejections"}),
    refused={
        **CAPABILITIES.refused,
        "http-abort": _NOT_OURS.format(what="the fault filter goes into a sidecar's registration through Consul's "
                                            "escape hatch, which only the agent that registered the sidecar holds"),
        "http-delay": _NOT_OURS.format(what="the fault filter goes into a sidecar's registration through Consul's "
                                            "escape hatch, which only the agent that registered the sidecar holds"),
        "kill": _NOT_OURS.format(what="its workloads are not the harness's processes"),
        "pause": _NOT_OURS.format(what="its workloads are not the harness's processes"),
        "cert-rotation": _NOT_OURS.format(what="the Connect CA's root is the datacenter's own: the private key of a "
                                               "root Consul generated (or Vault's) is not in the CA configuration "
                                               "its API returns, so no undo could make that root active again, and "
                                               "a rotation re-issues the leaves of every service, not only the "
                                               "environment's"),
    },
)
"""What the Consul driver does with ``control_plane: cluster`` (an existing datacenter, through its HTTP API):
config entries and intentions only; the signals come from the datacenter's Prometheus, so the demo apps' own
counters (attempts seen, requests in flight) and the sidecars' certificates are not evidence there."""

GATEWAY_SERVICE = "mesh-harness-gateway"
"""The Consul ingress gateway where load enters: one HTTP listener on the gateway port, for the environment's
gateway service."""
PLACEMENT = "placement.json"
SIDECAR_CHECK_INTERVAL = "1s"
"""Consul's default sidecar check is a TCP check every 10 s, and a sidecar is critical (no endpoint of any
caller) until it first passes: 1 s keeps ``up`` short."""


@dataclass
class _Local:
    """What ``up`` chose for the local agent, kept beside the state (``consul/placement.json``)."""

    agent: dict[str, int]
    gateway_ready_port: int
    """The readiness listener ``consul connect envoy`` gives a gateway (8443 unless told otherwise)."""
    metrics: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per node id, the port of the Prometheus endpoint its registration asks for (``envoy_prometheus_bind_addr``
    on 127.0.0.1): a Prometheus can scrape the local agent's sidecars as it scrapes a datacenter's."""

    @property
    def ports(self) -> AgentPorts:
        return AgentPorts(**self.agent)


def control_plane(env: Environment) -> str:
    """``consul.control_plane`` of an environment (``cluster`` when it has no ``consul:``)."""
    return env.spec.consul.control_plane if env.spec.consul else "cluster"


class ConsulMesh(LocalMesh):
    """The Consul Connect driver; ``up`` runs the local agent (``consul.control_plane: local``)."""

    name = "consul"
    capabilities = CAPABILITIES
    xds_over_ads = False  # Consul serves the Envoys' xDS
    reissues_leaves = True
    """Consul issues every leaf itself: a CA rotation's undo restores the original root, under which Consul
    issues new leaves (the driver contract then compares the root, not the leaves' serials)."""

    push_settle_s = cluster.PUSH_SETTLE_S
    """How long a change written to a datacenter is given to reach its sidecars when none it concerns is scraped
    by the datacenter's Prometheus (otherwise they are watched: :class:`.cluster.PushWatch`)."""

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        super().__init__(env, env_path, state_dir)
        self.control_plane = control_plane(env)
        self.capabilities = self.capabilities_for(env)
        self._local: _Local | None = None
        self._api: ConsulAPI | None = None
        self._sidecars: list[cluster.Sidecar] | None = None
        self._push: cluster.PushWatch | None = None
        self.unreachable: str | None = None
        """Why the datacenter did not answer (``control_plane: cluster``): ``plan`` then plans against the
        entries the environment declares."""

    @classmethod
    def capabilities_for(cls, env: Environment) -> Capabilities:
        """A datacenter's capabilities are fewer than the local agent's: see :data:`CLUSTER_CAPABILITIES`."""
        return CAPABILITIES if control_plane(env) == "local" else CLUSTER_CAPABILITIES

    @property
    def address(self) -> str:
        """The HTTP API the driver talks to: the local agent's, or the datacenter's ``consul.address``."""
        if self.control_plane == "local":
            return f"http://{self.local.ports.http_addr}"
        settings = self.env.spec.consul
        return (settings.address if settings else "http://127.0.0.1:8500").rstrip("/")

    # ----------------------------------------------------------------------------------- placement
    @property
    def local(self) -> _Local:
        if self._local is None:
            try:
                self._local = _Local(**json.loads((self.state_dir / "consul" / PLACEMENT).read_text()))
            except (OSError, ValueError, TypeError) as exc:
                raise MeshError(f"the consul mesh's placement in {self.state_dir / 'consul'} cannot be read ({exc}); "
                                f"run mesh-harness down --env {self.env_path}, then up") from None
        return self._local

    @property
    def api(self) -> ConsulAPI:
        """The agent's HTTP API; for a mesh that is not running (``plan``), the entries ``up`` would write, so a
        plan shows every change against them and the policy with Consul's defaults."""
        if self._api is None:
            if self.control_plane == "cluster":
                self._api = self._datacenter()
            elif self.saved_state() is None:
                return self._offline("the consul mesh is not running (no state in its state directory), and {what} "
                                     "needs its agent: start it with mesh-harness up --env FILE")
            else:
                self._api = ConsulAPI(self.address)
        return self._api

    def _offline(self, why: str) -> OfflineAPI:
        return OfflineAPI(self.declared_entries(), why)

    def declared_entries(self) -> list[dict[str, Any]]:
        """The config entries the environment declares: what ``up`` writes to the local agent, and what ``plan``
        compares a datacenter's with."""
        return entries.base_entries(self.env, self.declared_policies(), GATEWAY_SERVICE, self.env.spec.gateway.port)

    def _datacenter(self) -> ConsulAPI:
        """The datacenter's API with the ACL token; when it does not answer (or the token is not set), the entries
        the environment declares, so that ``plan`` still plans: anything that would write is then a MeshError
        saying why, and ``is_up`` fails with it."""
        try:
            api = ConsulAPI(self.address, token=cluster.token(self.env.spec.consul))
        except MeshError as exc:
            self.unreachable = str(exc)
            return self._offline(f"{exc}; {{what}} needs the datacenter")
        try:
            if not api.leader():
                raise MeshError(f"the Consul datacenter at {self.address} has no leader")
        except MeshError as exc:
            api.close()
            self.unreachable = str(exc)
            return self._offline(f"{exc}; {{what}} needs the datacenter")
        return api

    def instance_ids(self, service: str, version: str | None = None) -> list[str]:
        """The instances of ``service`` (of one version): named as ``up`` names them, running or not; in a
        datacenter, the catalog's (for a datacenter that does not answer, none)."""
        if self.control_plane == "cluster":
            if isinstance(self.api, OfflineAPI):  # a datacenter that does not answer: a plan names none
                return []
            return [s.id for s in self.sidecars() if s.service == service and version in (None, s.version)]
        return local_changes.instance_ids(self, service, version)

    def sidecars(self) -> list[cluster.Sidecar]:
        """The datacenter's sidecars of the environment's services, and its ingress gateways for the gateway
        service (read from the catalog once per driver)."""
        if self._sidecars is None:
            self._sidecars = cluster.sidecars(self.api, self.env)
        return self._sidecars

    def push_marks(self, node_ids: list[str]) -> dict[str, float]:
        """In a datacenter, before a change is written: per watched sidecar the datacenter's Prometheus scrapes,
        how many xDS updates its Envoy has accepted ({} when there is none to watch, or Prometheus does not
        answer: the change is then given :attr:`push_settle_s`)."""
        if self._push is None:
            self._push = cluster.PushWatch(self.env.spec.metrics.url or "",
                                           {s.id: s.metrics for s in self.sidecars() if s.metrics},
                                           self.env.spec.metrics.scrape_interval)
        try:
            return self._push.marks(node_ids)
        except FaultError:
            return {}

    def await_push_marks(self, before: dict[str, float]) -> None:
        """Until every sidecar of ``before`` has taken the change written since (:class:`.cluster.PushWatch`);
        with nothing to watch, :attr:`push_settle_s`."""
        if not before or self._push is None:
            time.sleep(self.push_settle_s)
            return
        self._push.wait(before)

    def service_of(self, node_id: str) -> str:
        """The service of a node id (the gateway's is ``gateway``)."""
        if self.control_plane == "cluster":
            return next((s.service for s in self.sidecars() if s.id == node_id), GATEWAY)
        for svc in self.env.spec.services:
            if node_id in self.instance_ids(svc.name):
                return svc.name
        return GATEWAY

    def close(self) -> None:
        if self._push is not None:
            self._push.close()
            self._push = None
        if self._api is not None:
            self._api.close()
            self._api = None
        super().close()

    def down(self) -> list[str]:
        """Stop every process (the agent with them); forget the agent's placement and its client. In a
        datacenter the harness started nothing: nothing to stop."""
        if self.control_plane == "cluster":
            return []
        resisted = super().down()
        if self._api is not None:
            self._api.close()
        self._api, self._local = None, None
        return resisted

    # ----------------------------------------------------------------------------------- policy
    def declared_policies(self) -> dict[tuple[str, str], ResolvedPolicy]:
        """Every edge's policy as the environment declares it, with Consul's defaults for the rest."""
        return {(svc.name, c.to): resolve(c, CONSUL_DEFAULTS) for svc in self.env.spec.services for c in svc.calls}

    def _check_expressible(self) -> None:
        """What the environment declares and the consul mesh cannot hold is refused at its line before anything
        starts or is written (exit 2), as ``validate``, ``plan`` and ``run`` refuse it."""
        found: list[tuple[tuple[str | int, ...], str]] = list(self.refused_environment(self.env))
        for si, svc in enumerate(self.env.spec.services):
            for ci, call in enumerate(svc.calls):
                found += [(("services", si, "calls", ci, *where), why) for where, why in entries.inexpressible_at(call)]
        if found:
            try:
                positions = load_environment(self.env_path).positions
            except InputError:
                positions = Positions(str(self.env_path))
            raise InputError(sorted((positions.problem(("spec", *where), f"the consul mesh cannot hold this: {why}")
                                     for where, why in found), key=lambda p: (p.line, p.col)))

    @staticmethod
    def refused_environment(env: Environment) -> list[tuple[tuple[str | int, ...], str]]:
        """What of an environment as a whole the consul mesh cannot do, by its path under ``spec``: two callers
        of one service declaring different retries or timeouts (one service-router holds them for every
        caller), and metrics it cannot read."""
        spec = env.spec
        out = entries.router_conflicts(env, CONSUL_DEFAULTS)
        if spec.mtls != "strict":
            out.append((("mtls",), "Connect's sidecars always speak mTLS to each other (intentions decide who may "
                                   "call); this driver does not write Consul 1.16's permissive MutualTLSMode: write "
                                   "mtls: strict"))
        if control_plane(env) == "local":
            if spec.metrics.source != "envoy":
                out.append((("metrics", "source"), "the local consul mesh reads its sidecars' admin /stats; write "
                                                   "source: envoy"))
            return out
        if spec.metrics.source != "prometheus" or not spec.metrics.url:
            out.append((("metrics",), "consul.control_plane: cluster reads the sidecars' Envoy stats through the "
                                      "datacenter's Prometheus: write metrics: {source: prometheus, url: "
                                      "http://PROMETHEUS:9090}"))
        if not spec.gateway.url:
            out.append((("gateway",), "consul.control_plane: cluster sends load where the datacenter's ingress is "
                                      "reached from this machine: write gateway.url (e.g. http://127.0.0.1:8080)"))
        return out

    defaults = CONSUL_DEFAULTS

    @staticmethod
    def refused_overrides(overrides: list[PolicyChange]) -> list[tuple[int, tuple[str, ...], str]]:
        """Two overrides of one experiment that set retries, or a timeout, towards one callee to different values:
        Consul holds both in that callee's one service-router, for every caller, so the later would replace the
        earlier. Each as (its index, its field, why). Overrides of different fields merge in the router."""
        out: list[tuple[int, tuple[str, ...], str]] = []
        first: dict[tuple[str, str], tuple[str, Any]] = {}
        for j, change in enumerate(overrides):
            for name in ("retries", "timeout"):
                value = getattr(change, name)
                if value is None:
                    continue
                seen = first.setdefault((change.to, name), (change.from_, value))
                if seen[1] != value:
                    out.append((j, (name,), f"{seen[0]}->{change.to} sets another {name} towards {change.to}, and "
                                            f"Consul holds it in one service-router for every caller of {change.to}: "
                                            f"write one {name} for {change.to}"))
        return out

    @staticmethod
    def refused_policy(policy: EdgePolicy) -> list[tuple[tuple[str, ...], str]]:
        """What of an edge's policy (the environment's, or an experiment's override) Consul cannot hold, by
        field: ``validate``, ``plan`` and ``run`` refuse it at its line before anything starts."""
        return entries.inexpressible_at(policy)

    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        """The policy in force on an edge, as Consul holds it: retries and timeout from the callee's
        service-router (its catch-all route), limits and passive health checks from the caller's
        service-defaults (the override for the callee, else the upstream defaults); Consul's defaults for the
        rest (:data:`CONSUL_DEFAULTS`)."""
        return self._policy_from(self.api, caller, callee)

    def policy_after(self, prepared: Prepared, caller: str, callee: str) -> ResolvedPolicy:
        """The policy on an edge once ``prepared`` is in force (what ``plan`` shows of a policy change)."""
        held = {(str(e["Kind"]), str(e["Name"])): e for kind in _POLICY_KINDS
                for e in self.api.config_entries(kind)}
        for item in prepared.do.get("entries", []):
            if item["to"] is None:
                held.pop((item["kind"], item["name"]), None)
            else:
                held[(item["kind"], item["name"])] = item["to"]
        return self._policy_from(OfflineAPI(list(held.values()), "{what}: a plan reads entries only"), caller, callee)

    def _policy_from(self, api: ConsulAPI, caller: str, callee: str) -> ResolvedPolicy:
        data: dict[str, Any] = {}
        router = api.config_entry("service-router", callee)
        destination = _catch_all(router)
        conditions = [*(destination.get("RetryOn") or []),
                      *(str(c) for c in destination.get("RetryOnStatusCodes") or [])]
        if destination.get("RetryOnConnectFailure") and "connect-failure" not in conditions:
            conditions.append("connect-failure")
        if conditions:  # Envoy retries only on a condition; NumRetries absent is Envoy's 1
            data["retries"] = {"attempts": int(destination.get("NumRetries") or 1), "on": conditions}
        timeout = destination.get("RequestTimeout") or (api.config_entry("service-resolver", callee) or {}).get(
            "RequestTimeout")  # the resolver's, where no route sets one
        if timeout:
            data["timeout"] = entries.duration(entries.go_duration(timeout))
        check: dict[str, Any] = {}
        # Consul always configures outlier detection (Envoy's defaults where no passive health check says
        # otherwise) and turns panic routing off: an all-ejected cluster answers 503 (healthy_panic_threshold 0).
        outlier: dict[str, Any] = {"min_health_percent": 0}
        chosen = (_gateway_upstream(api, callee) if caller in (GATEWAY, GATEWAY_ID)
                  else _upstream(api.config_entry("service-defaults", caller) or {}, callee))
        limits = chosen.get("Limits") or {}
        breaker = {name: limits[key] for name, key in (("max_connections", "MaxConnections"),
                                                       ("max_pending", "MaxPendingRequests"),
                                                       ("max_requests", "MaxConcurrentRequests"))
                   if limits.get(key) is not None}
        if breaker:
            data["circuit_breaker"] = breaker
        check = chosen.get("PassiveHealthCheck") or {}
        if check:
            outlier["consecutive_5xx"] = int(check.get("MaxFailures") or 5)
            if check.get("Interval"):
                outlier["interval"] = entries.duration(entries.go_duration(check["Interval"]))
            if check.get("BaseEjectionTime"):
                outlier["base_ejection_time"] = entries.duration(entries.go_duration(check["BaseEjectionTime"]))
            if check.get("MaxEjectionPercent") is not None:
                outlier["max_ejection_percent"] = int(check["MaxEjectionPercent"])
        data["outlier_detection"] = outlier
        resolved = resolve(EdgePolicy.model_validate(data), CONSUL_DEFAULTS)
        if check and check.get("EnforcingConsecutive5xx") == 0:  # Envoy then detects but never ejects
            return dataclasses.replace(resolved, outlier=None)
        if not check:
            resolved = dataclasses.replace(resolved, defaulted=(*resolved.defaulted, "outlier_detection"))
        return resolved

    def split(self, service: str) -> dict[str, float]:
        """The service-splitter's weights by subset (a version), else the environment's split."""
        splitter = self.api.config_entry("service-splitter", service)
        if splitter:
            return {str(s.get("ServiceSubset")): float(s.get("Weight") or 0) for s in splitter.get("Splits") or []}
        return dict(self.env.spec.service(service).effective_split())

    def draining(self, node: EnvoyNode) -> bool:
        """Is a listener or filter chain of this Envoy still draining (old connections on an old chain)?"""
        stats = self.admin_stats(node, r"^listener_manager\.total_(filter_chains|listeners)_draining$")
        return any(float(v or 0) > 0 for v in stats.values())

    def config_digest(self, node: EnvoyNode) -> str:
        """A digest of what Consul has pushed to one Envoy (its routes, clusters and listeners): a change is in
        force there once it moves."""
        docs = [self._http.get(node.admin + "/config_dump", params={"resource": resource}).json()
                for resource in ("dynamic_route_configs", "dynamic_active_clusters", "dynamic_listeners")]
        return changes.digest(docs)

    # ----------------------------------------------------------------------------------- up
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Start the agent, write the environment's config entries, register every instance and start the
        apps and their sidecars; wait until a request passes end to end."""
        say = on_event or (lambda message: None)
        if self.control_plane == "cluster":
            return self._cluster_up(say)
        if self.is_up():
            return self.gateway_url
        self._check_expressible()
        self._cleanup_stale()
        binary = find_consul()
        envoy = envoy_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = (int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 40000) * 10 + 100000
        layout = build_layout(self.env, seed)
        layout.toxiproxy_port = 0  # Consul has no L4 faults
        layout.prometheus_port = 0  # the sidecars' admin /stats are read (metrics.source: envoy)
        node_ids = [GATEWAY_ID, *(i.id for i in layout.instances)]
        agent = ("http", "grpc", "server", "serf_lan", "serf_wan")
        ports = allocate_ports(len(agent) + 1 + len(node_ids), avoid=layout.ports())
        self._local = _Local(dict(zip(agent, ports[:len(agent)], strict=True)), ports[len(agent)],
                             dict(zip(node_ids, ports[len(agent) + 1:], strict=True)))
        self._state = State(env=self.env.model_dump(by_alias=True, mode="json"), env_path=str(self.env_path),
                            layout=layout, started_at=time.time(), envoy=envoy)
        self._save()
        (self.state_dir / "consul").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.ca_dir, ignore_errors=True)  # a root kept from an earlier agent names its trust domain
        _write_json(self.state_dir / "consul" / PLACEMENT, asdict(self._local))
        try:
            say(f"starting the Consul agent ({binary})")
            argv = agent_argv(binary, self.local.ports, self.state_dir / "consul" / "agent.pid")
            agent_proc = self._record(spawn("consul", argv, self.state_dir / "logs" / "consul.log",
                                            env=without_consul_variables()))
            self._wait_leader(agent_proc, 30.0)
            for entry in entries.base_entries(self.env, self.declared_policies(), GATEWAY_SERVICE,
                                              layout.gateway_port):  # the port up chose
                if not self.api.put_config_entry(entry):
                    raise MeshError(f"Consul did not take the {entry['Kind']} {entry['Name']}")
            # The harness's own root before any leaf is issued: a rotation's undo can then make it active again.
            self.set_root(ca.make_root(self.ca_dir, ca.ORIGINAL, self.trust_domain()))
            for registration in self._registrations():
                self.api.register(registration)
            say(f"starting {len(layout.instances)} demo apps and {len(self.nodes())} Envoys ({envoy.source}: envoy "
                f"{envoy.version}) configured by Consul")
            for inst in layout.instances:
                self._record(self._spawn_app(inst))
            self._write_bootstraps(binary)
            for node in self.nodes():
                self._record(spawn(f"envoy:{node.id}", self._envoy_argv(envoy.path, node),
                                   self.state_dir / "logs" / f"envoy-{node.id}.log", keeper=True))
            say(f"waiting until Consul has configured every Envoy (at most {timeout_s:g}s)")
            self._wait_ready(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.gateway_url

    def _cluster_up(self, say: Callable[[str], None]) -> str:
        """A datacenter runs already: check that it answers, holds the environment's topology (a sidecar of
        every version, a resolver subset per version) and that its Prometheus scrapes every sidecar; start and
        write nothing."""
        self._check_expressible()
        self.is_up()
        sidecars = self.sidecars()
        source = self._datacenter_source(self.env.spec.metrics.scrape_interval)
        try:
            source.check()
        finally:
            source.close()
        say(f"the Consul datacenter at {self.address} runs ({len(sidecars)} sidecars of the environment); nothing to "
            "start")
        return self.env.spec.gateway.url or ""

    def _check_versions(self) -> None:
        """A datacenter's resolver has a subset named after each version of a service of several (each version is
        then a cluster of its own in every caller: its counters); MeshError naming what is missing, at ``up`` and
        at ``run`` alike, rather than every per-version verdict inconclusive."""
        problems = []
        for svc in self.env.spec.services:
            if len(svc.versions) < 2:
                continue
            resolver = self.api.config_entry("service-resolver", svc.name) or {}
            missing = sorted(set(svc.versions) - set(resolver.get("Subsets") or {}))
            if missing:
                problems.append(f"{svc.name} has no service-resolver subset named {', '.join(missing)} (the harness "
                                "names each version's subset after it, e.g. v1: {Filter: 'Service.Meta.version == "
                                "v1'})")
        if problems:
            raise MeshError(f"the Consul datacenter at {self.address} cannot be told apart by version: "
                            + "; ".join(problems))

    def _wait_ready(self, timeout_s: float) -> None:
        """The local mesh's readiness (every Envoy live, every app answering, a request through the gateway),
        then every caller's Envoy holding every instance of each callee version as a healthy endpoint: a
        sidecar is no endpoint until Consul's check of it first passes, and the first experiment's baseline
        must not meet a version with no endpoint yet."""
        deadline = time.monotonic() + timeout_s
        super()._wait_ready(timeout_s)
        naming = self.naming()
        missing: list[str] = []
        while True:
            missing = []
            for node in self.nodes():
                callees = ([c.to for c in self.env.spec.service(node.instance.service).calls] if node.instance
                           else [self.env.spec.gateway.service])
                stats = self.admin_stats(node, r"membership_healthy")
                healthy: dict[tuple[str, str], float] = {}
                for name, value in stats.items():
                    cut = naming.split_cluster_stat(name)
                    up = naming.upstream(cut[0]) if cut else None
                    if up is not None:
                        healthy[(up.callee, up.version)] = healthy.get((up.callee, up.version), 0.0) + float(value)
                for callee in callees:
                    for version, spec in self.env.spec.service(callee).versions.items():
                        if healthy.get((callee, version), 0.0) < spec.replicas:
                            missing.append(f"{node.id}: {callee} {version}")
            if not missing:
                return
            if time.monotonic() >= deadline:
                break
            self._check_procs()
            time.sleep(0.1)
        raise MeshError(f"Consul did not give every caller all its callees' endpoints within {timeout_s:g}s "
                        f"(missing {', '.join(missing[:6])}); see {self.logs_hint('consul')}")

    def _wait_leader(self, proc: Proc, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(proc):
                raise MeshError(f"the Consul agent exited during start-up; its log ends:\n{_tail(Path(proc.log))}")
            with contextlib.suppress(httpx.HTTPError, MeshError, ValueError, KeyError):
                # The Connect CA comes up after the leader (asynchronously): up gives it a root of its own next.
                if self.api.leader() and self.active_root() and self.api.ca_roots().get("TrustDomain"):
                    return
            time.sleep(0.05)
        raise MeshError(f"the Consul agent elected no leader (or its CA did not start) within {timeout_s:g}s; see "
                        f"{self.logs_hint('consul')}")

    def _registrations(self) -> list[dict[str, Any]]:
        """Each instance as a Consul service with a Connect sidecar (inbound on the instance's inbound port,
        an upstream per callee on the port its app calls), and the ingress gateway."""
        out = [self._registration(i.id, i.service, i.app_port, i.inbound_port, {"version": i.version},
                                  {c.to: i.outbound_ports[c.to] for c in self.env.spec.service(i.service).calls},
                                  self._proxy_config(i.id))
               for i in self.layout.instances]
        # Its listeners come from the ingress-gateway entry; the address is where they bind.
        out.append({"Kind": "ingress-gateway", "ID": GATEWAY_SERVICE, "Name": GATEWAY_SERVICE,
                    "Address": "127.0.0.1", "Port": self.layout.gateway_port,
                    "Proxy": {"Config": self._proxy_config(GATEWAY_ID)}})
        return out

    def _proxy_config(self, node_id: str) -> dict[str, Any]:
        """The proxy ``Config`` a node is registered with: its Prometheus endpoint."""
        port = self.local.metrics.get(node_id)
        return {cluster.PROMETHEUS_BIND: f"127.0.0.1:{port}"} if port else {}

    def metrics_addresses(self) -> dict[str, str]:
        """Per node id, where a Prometheus scrapes its Envoy (``host:port``, path ``/metrics``)."""
        return {node_id: f"127.0.0.1:{port}" for node_id, port in self.local.metrics.items()}

    # ----------------------------------------------------------------------------------- the Connect CA
    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "consul" / "ca"

    def trust_domain(self) -> str:
        return str(self.api.ca_roots()["TrustDomain"])

    def active_root(self) -> str:
        """The PEM of the Connect CA's active root."""
        roots = self.api.ca_roots().get("Roots") or []
        return next((str(r["RootCert"]) for r in roots if r.get("Active")), "")

    def set_root(self, root: ca.Root) -> None:
        """Make ``root`` the active root of Consul's built-in CA (its TTLs kept); Consul cross-signs it with the
        root before and re-issues every leaf. Nothing when it is the active root already."""
        key, cert = root.pem()
        if self.active_root().strip() == cert.strip():
            return
        config = dict(self.api.ca_configuration().get("Config") or {})
        config.update({"PrivateKey": key, "RootCert": cert})
        self.api.set_ca_configuration({"Provider": "consul", "Config": config})

    gateway_service = GATEWAY_SERVICE

    def served_certificate(self, node: EnvoyNode) -> ServedCert:
        """The serials of the leaf one Envoy serves and of the roots it trusts (admin ``/certs``)."""
        return local_certs.served(self, node)

    def probe_peers(self, service: str) -> list[PeerProbe]:
        raise MeshError("the consul mesh does not probe its sidecars as a bad peer (no peer-probes evidence)")

    def register_instance(self, instance_id: str, proxy_config: dict[str, Any]) -> None:
        """Register one instance again as ``up`` did, with ``proxy_config`` as its sidecar's proxy ``Config``
        (Consul's escape hatches live there)."""
        registration = next(r for r in self._registrations() if r["ID"] == instance_id)
        proxy = registration["Connect"]["SidecarService"]["Proxy"]
        proxy["Config"] = {**proxy.get("Config", {}), **proxy_config}
        self.api.register(registration)

    def sidecar_config(self, instance_id: str) -> dict[str, Any]:
        """The proxy ``Config`` the agent holds for an instance's sidecar ({} when none)."""
        service = self.api.services().get(f"{instance_id}-sidecar-proxy") or {}
        config: dict[str, Any] = (service.get("Proxy") or {}).get("Config") or {}
        return config

    @staticmethod
    def _registration(service_id: str, name: str, port: int, public_port: int, meta: dict[str, str],
                      upstreams: dict[str, int], config: dict[str, Any]) -> dict[str, Any]:
        return {
            "ID": service_id, "Name": name, "Address": "127.0.0.1", "Port": port, "Meta": meta,
            "Connect": {"SidecarService": {
                "Port": public_port,
                "Proxy": {"LocalServiceAddress": "127.0.0.1", "LocalServicePort": port, "Config": config,
                          "Upstreams": [{"DestinationName": callee, "LocalBindAddress": "127.0.0.1",
                                         "LocalBindPort": bind} for callee, bind in upstreams.items()]},
                "Checks": [{"Name": "Connect Sidecar Listening", "TCP": f"127.0.0.1:{public_port}",
                            "Interval": SIDECAR_CHECK_INTERVAL},
                           {"Name": f"Connect Sidecar Aliasing {service_id}", "AliasService": service_id}],
            }},
        }

    @staticmethod
    def _bootstrap_flags(node: EnvoyNode, ready_port: int) -> list[str]:
        if node.instance is None:
            return ["-gateway", "ingress", "-proxy-id", GATEWAY_SERVICE, "-envoy-ready-bind-address", "127.0.0.1",
                    "-envoy-ready-bind-port", str(ready_port)]
        return ["-proxy-id", f"{node.instance.id}-sidecar-proxy"]

    def _write_bootstraps(self, binary: str) -> None:
        """``consul connect envoy -bootstrap`` for every sidecar, as Consul users start theirs."""
        ports = self.local.ports
        for node in self.nodes():
            directory = self._node_dir(node.id)
            directory.mkdir(parents=True, exist_ok=True)
            argv = [binary, "connect", "envoy", *self._bootstrap_flags(node, self.local.gateway_ready_port),
                    "-bootstrap",
                    "-admin-bind", f"127.0.0.1:{node.admin_port}", "-http-addr", ports.http_addr,
                    "-grpc-addr", ports.grpc_addr]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                                      env=without_consul_variables())
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise MeshError(f"consul connect envoy -bootstrap for {node.id} could not run: {exc}") from None
            if done.returncode != 0:
                raise MeshError(f"consul connect envoy -bootstrap for {node.id} failed: "
                                f"{(done.stderr or done.stdout).strip()[-500:]}")
            path = directory / "bootstrap.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:  # it may name the agent's token: this user's only
                out.write(done.stdout)

    def _envoy_argv(self, envoy: str, node: EnvoyNode) -> list[str]:
        """Envoy as ``consul connect envoy`` would run it, with the bootstrap it wrote."""
        return self._bootstrapped_envoy_argv(envoy, node)

    def _check_procs(self) -> None:
        for proc in self.state.procs:
            if proc.name == "consul" and not alive(proc):
                raise MeshError(f"the Consul agent exited; its log ends:\n{_tail(Path(proc.log))}")
        super()._check_procs()

    def _own_process_name(self, argv: list[str]) -> str | None:
        roots = self._state_roots()
        for flag, value in itertools.pairwise(argv):
            if flag == "-pid-file" and Path(value).name == "agent.pid" and str(Path(value).parent.parent) in roots:
                return "consul"
        return super()._own_process_name(argv)

    def _preflight(self) -> None:
        """Nothing to check: Consul's Envoys watch no files."""

    def logs_hint(self, part: str | None = None) -> str:
        if self.control_plane == "cluster":
            return f"the datacenter's own logs (consul monitor -http-addr {self.address})"
        if part == "consul":
            return str(self.state_dir / "logs" / "consul.log")
        return super().logs_hint(part)

    # ----------------------------------------------------------------------------------- a datacenter's life
    def is_up(self) -> bool:
        """Local: every process of the mesh runs. Cluster: always, once the datacenter answers with a leader;
        MeshError when it does not. What a change wrote there outlives every process of the harness, so
        ``cleanup`` must never take a datacenter for gone and drop its undos."""
        if self.control_plane == "local":
            return super().is_up()
        if not self.api.leader():
            raise MeshError(f"the Consul datacenter at {self.address} has no leader")
        return True

    def status(self) -> dict[str, Any]:
        if self.control_plane == "local":
            return super().status()
        try:
            self.is_up()
            count = len(self.sidecars())
        except MeshError as exc:
            return {"running": False, "control_plane": "cluster", "consul": self.address, "error": str(exc)}
        return {"running": True, "control_plane": "cluster", "consul": self.address,
                "gateway": self.env.spec.gateway.url, "sidecars": count}

    def topology(self) -> Topology:
        """Local: every Envoy. Cluster: every sidecar of the environment's services in the catalog, the ingress
        gateways routing to its gateway service, and the gateway URL the environment gives."""
        if self.control_plane == "local":
            return super().topology()
        return Topology(tuple(NodeInfo(s.id, s.service, s.version) for s in self.sidecars()),
                        self.env.spec.gateway.url or "")

    def policy_drift(self) -> dict[str, Any]:
        """How the entries the environment declares differ from the datacenter's, per entry, for ``plan``;
        ``compared: False`` with the reason when the mesh is the harness's own or the datacenter does not answer."""
        if self.control_plane == "local":
            return {"compared": False, "reason": "control_plane: local: the environment's policy is what runs"}
        api = self.api
        if self.unreachable is not None:
            return {"compared": False, "reason": self.unreachable}
        out = []
        for entry in self.declared_entries():
            kind, name = str(entry["Kind"]), str(entry["Name"])
            if kind in ("proxy-defaults", "ingress-gateway"):
                continue  # the harness's local agent's own: a datacenter has its own protocol and ingress
            try:
                have = changes.normalized(api.config_entry(kind, name))
            except MeshError as exc:
                return {"compared": False, "reason": str(exc)}
            want = changes.normalized(entry)
            if have == want:
                continue
            key = f"{kind}/{name}"
            diff = "".join(difflib.unified_diff(_lines(have), _lines(want), f"datacenter:{key}", f"declared:{key}"))
            out.append({"object": key, "status": "missing in the datacenter" if have is None else "differs",
                        "diff": diff})
        return {"compared": True, "differences": out}

    def _state_status(self, state: State) -> dict[str, Any]:
        out = super()._state_status(state)
        with contextlib.suppress(MeshError):
            out["consul"] = f"http://{self.local.ports.http_addr}"
        return out

    # ----------------------------------------------------------------------------------- metrics
    def naming(self) -> ConsulNaming:
        """Consul's stat names; in a datacenter, only the ingress listeners that route to the gateway service
        count as the gateway's (one gateway may serve other services too)."""
        versions = {s.name: list(s.versions) for s in self.env.spec.services}
        if self.control_plane == "cluster":
            return ConsulNaming(versions, [s.public_port for s in self.sidecars() if s.service != GATEWAY],
                                {p for s in self.sidecars() if s.service == GATEWAY for p in s.listener_ports})
        return ConsulNaming(versions, [i.inbound_port for i in self.layout.instances])

    def metric_source(self, interval_s: float) -> EnvoySource | ConsulPrometheusSource:
        """Local: the sidecars' admin ``/stats`` (Consul's names, :class:`.naming.ConsulNaming`) and the apps'
        counters. Cluster: the same stats through the datacenter's Prometheus (``metrics.url``), which must scrape
        every sidecar at its ``envoy_prometheus_bind_addr``."""
        if self.control_plane == "cluster":
            return self._datacenter_source(interval_s)
        apps = [(i.id, i.app_port) for i in self.layout.instances]
        return EnvoySource(self._scrape_targets(), apps, interval_s, self.naming())

    def _datacenter_source(self, interval_s: float) -> ConsulPrometheusSource:
        """The datacenter's sidecars through its Prometheus; MeshError for a datacenter whose versions cannot be
        told apart, or with a sidecar Prometheus cannot scrape."""
        self._check_versions()
        blind = [s.id for s in self.sidecars() if s.metrics is None]
        if blind:
            raise MeshError(f"{len(blind)} sidecar(s) of the datacenter open no Prometheus endpoint for their Envoy "
                            f"({', '.join(blind[:6])}): set {cluster.PROMETHEUS_BIND} (e.g. \"0.0.0.0:20200\") in "
                            "their proxy Config or in the global proxy-defaults' Config, and have Prometheus scrape it")
        nodes = [(NodeInfo(s.id, s.service, s.version), str(s.metrics)) for s in self.sidecars()]
        return ConsulPrometheusSource(self.env.spec.metrics.url or "", nodes, [], interval_s, self.naming())

    # ----------------------------------------------------------------------------------- changes
    changes: Any = changes
    """Intents as check-and-set swaps of config entries (:mod:`harness.mesh.consul.changes`)."""

    def fingerprint(self) -> dict[str, Any]:
        """The local mesh's fingerprint (every Envoy's clusters, listeners and routes as Consul pushed them), plus
        every config entry and sidecar registration Consul holds and the Connect CA's active root.

        Certificate material is the one part left out of the Envoys' configuration: Consul issues every leaf
        (a CA rotation's undo gets new ones, under the original root) and keeps a rotated root in its trust
        bundle, inactive, until it prunes it. What the undo restores of the CA, the active root, is compared.

        In a datacenter: the config entries alone (the sidecars and the CA are not the harness's to change)."""
        kinds = ("proxy-defaults", "service-defaults", "service-resolver", "service-splitter", "service-router",
                 "service-intentions")
        entries_now = {kind: sorted((changes.unindexed(e) or {} for e in self.api.config_entries(kind)),
                                    key=lambda e: str(e.get("Name")))
                       for kind in kinds}
        if self.control_plane == "cluster":
            return {"consul-entries": entries_now}
        out = super().fingerprint()
        for node in self.nodes():
            if isinstance(out.get(node.id), dict):
                out[node.id] = _without_certificates({k: v for k, v in out[node.id].items() if k != "certs"})
        active = self.active_root()
        out["consul-ca"] = {"active_root": x509.load_pem_x509_certificate(active.encode()).serial_number
                            if active else None}
        out["consul-sidecars"] = {i.id: self.sidecar_config(i.id) for i in self.layout.instances}
        out["consul-entries"] = entries_now
        return out


_POLICY_KINDS = ("service-router", "service-defaults", "service-resolver")
_CERTIFICATE_KEYS = frozenset({"certificate_chain", "private_key", "trusted_ca"})


def _without_certificates(value: Any) -> Any:
    """An Envoy config dump with the inline certificates, keys and trust bundles Consul put in it replaced."""
    if isinstance(value, dict):
        return {k: "(issued by Consul's CA)" if k in _CERTIFICATE_KEYS else _without_certificates(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_without_certificates(v) for v in value]
    return value


class OfflineAPI(ConsulAPI):
    """Config entries held in memory: what a mesh that is not running would have, for ``plan``. It answers the
    reads ``prepare`` and ``policy`` make; anything that would reach a running agent is a MeshError."""

    def __init__(self, held: list[dict[str, Any]], why: str) -> None:
        self.address = "(not running)"
        self._held = {(str(e["Kind"]), str(e["Name"])): e for e in held}
        self._why = why
        """Why there is no agent to ask, with ``{what}`` where the request goes."""

    def close(self) -> None:
        pass

    def config_entry(self, kind: str, name: str) -> dict[str, Any] | None:
        entry = self._held.get((kind, name))
        return json.loads(json.dumps(entry)) if entry is not None else None

    def config_entries(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(e)) for (k, _), e in sorted(self._held.items()) if k == kind]

    def _request(self, method: str, path: str, what: str, *, ok_404: bool = False, **kwargs: Any) -> httpx.Response:
        raise MeshError(self._why.replace("{what}", what))


_LIMITS = ("MaxConnections", "MaxPendingRequests", "MaxConcurrentRequests")


def _upstream(defaults: dict[str, Any], callee: str) -> dict[str, Any]:
    """A caller's upstream settings towards ``callee`` (``Limits``, ``PassiveHealthCheck``), as Consul merges
    its service-defaults' upstream ``Defaults`` and the callee's override, block by block."""
    upstream = defaults.get("UpstreamConfig") or {}
    override: dict[str, Any] = next((o for o in upstream.get("Overrides") or [] if o.get("Name") == callee), {})
    return {**(upstream.get("Defaults") or {}), **{k: v for k, v in override.items() if v is not None}}


def _gateway_upstream(api: ConsulAPI, callee: str) -> dict[str, Any]:
    """An ingress gateway's upstream settings towards ``callee``, in :func:`_upstream`'s shape: its entry's
    ``Defaults``, and the listener service's own limits and passive health check over them (the first gateway
    with a listener for ``callee``; the local mesh's sets none)."""
    for entry in api.config_entries("ingress-gateway"):
        for listener in entry.get("Listeners") or []:
            for service in listener.get("Services") or []:
                if service.get("Name") != callee:
                    continue
                defaults = entry.get("Defaults") or {}
                merged = {**{k: defaults.get(k) for k in (*_LIMITS, "PassiveHealthCheck")},
                          **{k: service[k] for k in (*_LIMITS, "PassiveHealthCheck") if service.get(k) is not None}}
                return {"Limits": {k: merged[k] for k in _LIMITS if merged.get(k)},
                        "PassiveHealthCheck": merged.get("PassiveHealthCheck") or {}}
    return {}


def _catch_all(router: dict[str, Any] | None) -> dict[str, Any]:
    """The destination of a router's route that every request matches ({} when none does)."""
    index = entries.catch_all(router)
    return {} if router is None or index is None else dict(router["Routes"][index].get("Destination") or {})


def _lines(entry: Any) -> list[str]:
    return [] if entry is None else json.dumps(entry, indent=2, sort_keys=True).splitlines(True)


