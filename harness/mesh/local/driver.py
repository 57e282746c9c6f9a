"""The local mesh: demo apps with real Envoy sidecars on 127.0.0.1, configured through file xDS.

``up`` builds everything from an Environment and leaves it running; its state directory (PIDs, ports,
configs, logs, the policy overrides in force) is what later commands and crash cleanup read. Every
mutation goes through the few methods at the bottom, each of which returns what is needed to undo it.

``state.json`` is validated whenever it is read: a damaged one is :class:`StateCorrupt` for every
command except ``down``, which stops what it can still identify and removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import ValidationError

from harness._errors import ConfigRejected, FaultError, MeshError, StateCorrupt
from harness._paths import default_state_dir
from harness._process import Proc, alive, find_processes, frozen, send_signal, spawn, stop_all
from harness.mesh.base import Capabilities, Prepared, Topology
from harness.mesh.intents import Intent
from harness.mesh.local import certs, changes
from harness.mesh.local import envoy_config as ec
from harness.mesh.local import prometheus as prom
from harness.mesh.local.ca import LocalCA
from harness.mesh.local.envoy_binary import envoy_binary
from harness.mesh.local.state import ProcDoc, State, problems
from harness.mesh.local.topology import GATEWAY_ID, Instance, Layout, build_layout
from harness.mesh.policy import ResolvedPolicy, merge_policy, resolve
from harness.metrics.envoy import EnvoySource
from harness.metrics.envoy_names import LOCAL as LOCAL_NAMING
from harness.metrics.prometheus import PrometheusSource, regex_literal
from harness.metrics.snapshot import NodeInfo
from harness.metrics.tls import PeerProbe, ServedCert
from harness.model.environment import EdgePolicy, Environment
from harness.toxiproxy._command import toxiproxy_server_command
from harness.toxiproxy.client import ToxiproxyClient

__all__ = ["EnvoyNode", "LocalMesh", "default_state_dir"]

STATE_FILE = "state.json"


def _write_json(path: Path, data: Any) -> None:
    """Atomic replace: the xDS server (or Envoy, reading files) reacts to the move, and must never read a
    half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@dataclass(frozen=True)
class EnvoyNode:
    """One Envoy of the mesh: a sidecar (with its instance) or the gateway."""

    id: str
    admin_port: int
    instance: Instance | None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


CAPABILITIES = Capabilities(
    mesh="local",
    faults=frozenset({"http-abort", "http-delay", "net-latency", "net-bandwidth", "net-reset", "partition",
                      "kill", "pause", "traffic-shift", "cert-rotation", "cert-untrusted"}),
    http_placements=frozenset({"target", "caller"}),
    policy_fields=frozenset({"retries", "timeout", "circuit_breaker", "outlier_detection"}),
    evidence=frozenset({"client", "sidecar-counters", "sidecar-latency", "attempt-counts", "app-inflight",
                        "ejections", "certificates", "peer-probes"}),
    refused={"partition.via=network": "its processes share the host's loopback, with no network to disconnect "
                                      "an instance from (mesh: compose can)"},
)
"""What the local mesh does (see docs/concepts/local-mesh.md): every field of an edge's policy, HTTP faults
at the target or the callers, network faults and partitions through an interposed Toxiproxy, signals to
its own apps, certificate rotations and untrusted leaves through its own CA, and the richest evidence
(its demo apps count attempts, in-flight requests and call ends; every Envoy shows the certificates it
serves, and the harness probes its listeners as a bad peer)."""


class LocalMesh:
    """The embedded mesh driver. Construct with :meth:`for_environment`; ``up``/``down`` manage it."""

    name = "local"
    capabilities = CAPABILITIES
    xds_over_ads = True
    """Envoys read their xDS over ADS from the harness's xDS server (:mod:`.xds_server`), which watches the
    documents with one inotify instance; False: each Envoy watches its documents itself (7+ instances)."""

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        self.env = env
        self.env_path = env_path
        self.state_dir = state_dir
        self._state: State | None = None
        self._http = httpx.Client(timeout=3.0)

    @classmethod
    def for_environment(cls, env: Environment, env_path: Path, state_dir: Path | None = None) -> Self:
        return cls(env, env_path, state_dir or default_state_dir(env_path, env.metadata.name))

    # ----------------------------------------------------------------------------------- state
    @property
    def state(self) -> State:
        if self._state is None:
            self._state = self._load_state()
            if self._state is None:
                raise MeshError(f"the {self.name} mesh is not running (no state in {self.state_dir}); "
                                "start it with: mesh-harness up --env FILE")
        return self._state

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _corrupt(self, problem: str) -> StateCorrupt:
        return StateCorrupt(self.state_file, problem,
                            f"run `mesh-harness down --env {self.env_path}`: it stops every process of this mesh "
                            "it can still identify and removes the file")

    def _read_state_json(self) -> tuple[object] | None:
        """(the JSON ``state.json`` holds,), None if there is none; StateCorrupt if it cannot be read as JSON.

        A 1-tuple, so that a file holding JSON ``null`` is not mistaken for no file.
        """
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise self._corrupt("is a directory, not a state file") from None
        except OSError as exc:
            raise self._corrupt(f"cannot be read ({exc.strerror or exc})") from None
        try:
            data: object = json.loads(raw.decode())
        except UnicodeDecodeError:
            raise self._corrupt("is not text (not UTF-8)") from None
        except ValueError as exc:
            raise self._corrupt(f"is not JSON ({exc})") from None
        return (data,)

    def _load_state(self) -> State | None:
        """The validated state, None if there is none (no mesh from here); StateCorrupt if it is damaged."""
        read = self._read_state_json()
        if read is None:
            return None
        try:
            state = State.from_json(read[0])
        except ValidationError as exc:
            raise self._corrupt(f"is not a mesh-harness state: {problems(exc)}") from None
        except ValueError as exc:
            raise self._corrupt(f"is not a mesh-harness state: it {exc}") from None
        spec = state.env.get("spec")
        if not isinstance(spec, dict):
            raise self._corrupt("has no environment spec")
        recorded = spec.get("mesh", "local")
        if recorded != self.name:
            # The environment's mesh: changed while that mesh ran: this driver could neither see nor stop it.
            raise MeshError(f"a {recorded} mesh started from {self.env_path} is still recorded in {self.state_dir}, "
                            f"and the environment now says mesh: {self.name}; put mesh: {recorded} back and run "
                            "mesh-harness down, then change it")
        return state

    def saved_state(self) -> State | None:
        """The recorded state if a mesh was started from here (running or not); None if none was."""
        return self._load_state()

    def _save(self) -> None:
        _write_json(self.state_file, self.state.to_json())

    def is_up(self) -> bool:
        """True if a mesh from this state directory is running (every recorded process alive).

        A damaged state vouches for nothing, so this raises StateCorrupt rather than answer: False would
        let ``up``/``run`` start a second mesh beside one it cannot see, and let ``cleanup`` drop the
        pending undos of a mesh that may still run; True would drive processes nobody can identify.
        """
        state = self._load_state()
        return state is not None and bool(state.procs) and all(alive(p) for p in _expected(state))

    @property
    def layout(self) -> Layout:
        return self.state.layout

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.state.layout.gateway_port}"

    def nodes(self) -> list[EnvoyNode]:
        layout = self.state.layout
        return [EnvoyNode(GATEWAY_ID, layout.gateway_admin_port, None)] + [
            EnvoyNode(i.id, i.admin_port, i) for i in layout.instances
        ]

    def node(self, node_id: str) -> EnvoyNode:
        for node in self.nodes():
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    # ----------------------------------------------------------------------------------- up/down
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Start every app and Envoy, wait until a request through the gateway succeeds.

        ``on_event`` hears each step (``up`` is otherwise silent for seconds). Whatever goes wrong on
        the way, an interrupt included, everything started so far is stopped before the error surfaces.
        Refuses (StateCorrupt) to start over a damaged state: ``down`` first stops what it records.
        """
        say = on_event or (lambda message: None)
        if self.is_up():
            return self.gateway_url
        self._cleanup_stale()
        envoy = envoy_binary()  # before anything is written: without an Envoy there is nothing to start
        prometheus = prom.find_prometheus() if self._prometheus_wanted() else None
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = (int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 40000) * 10 + 100000
        layout = build_layout(self.env, seed)
        self._state = State(
            env=self.env.model_dump(by_alias=True, mode="json"), env_path=str(self.env_path),
            layout=layout, started_at=time.time(), envoy=envoy,
        )
        self._save()
        try:
            say(f"writing certificates and configuration for {len(self.nodes())} Envoys ({envoy.source}: "
                f"envoy {envoy.version})")
            ca = LocalCA.create(self.state_dir / "pki")
            for svc in self.env.spec.services:
                ca.issue_leaf(svc.name)
            ca.issue_leaf(GATEWAY_ID)
            self._write_all_configs(ca)
            self._preflight()
            say(("starting the xDS server, " if self.xds_over_ads else "starting ")
                + f"{len(layout.instances)} demo apps, {len(self.nodes())} Envoys and a Toxiproxy server"
                + (" and Prometheus" if prometheus else ""))
            self._spawn_all(envoy.path, prometheus)
            say(f"waiting until every Envoy and app is ready (at most {timeout_s:g}s)")
            self._wait_ready(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.gateway_url

    @property
    def _through_prometheus(self) -> bool:
        """Are the counters read through Prometheus (``metrics.source``)? Its Envoys then export what
        Prometheus reads (finer latency buckets, per-endpoint stats)."""
        return self.env.spec.metrics.source == "prometheus"

    def _prometheus_wanted(self) -> bool:
        """Does this mesh run a Prometheus of its own (``source: prometheus`` and no ``url``)?"""
        return self._through_prometheus and not self.env.spec.metrics.url

    def _record(self, proc: Proc) -> Proc:
        """Add a process just started to the state file at once: an ``up`` killed midway then leaves nothing
        that ``down`` (or the next ``up``) cannot find and stop."""
        self.state.procs.append(proc)
        self._save()
        return proc

    def _served_over_ads(self) -> bool:
        """Do this mesh's Envoys read over ADS? Decided by what runs, not by this code's default: a mesh
        that an earlier mesh-harness started (no xDS server) keeps reading its files."""
        return any(p.name == "xds" for p in self.state.procs)

    @property
    def xds_socket(self) -> Path:
        """Where the xDS server listens: in the state directory, unless that path is too long for a unix
        socket (108 bytes on Linux); then in a private directory of this user under the temporary one."""
        path = self.state_dir.absolute() / "xds.sock"
        if len(str(path)) < 100:
            return path
        short = Path(tempfile.gettempdir()) / f"mesh-harness-{os.getuid()}"
        short.mkdir(mode=0o700, exist_ok=True)
        st = short.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
            raise MeshError(f"{short} is not a private directory of this user (owner only, 0700), so the xDS "
                            "server's socket cannot go there; remove it, or use a shorter state directory "
                            "(MESH_HARNESS_STATE)")
        return short / f"xds-{hashlib.sha1(str(path).encode()).hexdigest()[:12]}.sock"

    def _spawn_xds(self) -> None:
        """The xDS server, before any Envoy: an Envoy that finds no server retries, but only after a back-off."""
        logs = self.state_dir / "logs"
        self.xds_socket.unlink(missing_ok=True)  # a killed server's: its existence must mean this one's
        proc = self._record(spawn("xds", [sys.executable, "-m", "harness.mesh.local.xds_server", "--socket",
                                          str(self.xds_socket), "--nodes", str(self.state_dir / XDS_NODES)],
                                  logs / "xds.log"))
        deadline = time.monotonic() + 15.0
        while not self.xds_socket.exists():
            if not alive(proc) or time.monotonic() > deadline:
                raise MeshError(f"the xDS server did not start; its log ends:\n{_tail(logs / 'xds.log')}")
            time.sleep(0.01)

    def _spawn_all(self, envoy: str, prometheus: str | None = None) -> None:
        layout = self.state.layout
        if self.xds_over_ads:
            self._spawn_xds()
        if layout.toxiproxy_port:
            self._record(spawn("toxiproxy", toxiproxy_argv(layout.toxiproxy_port),
                               self.state_dir / "logs" / "toxiproxy.log"))
        for inst in layout.instances:
            self._record(self._spawn_app(inst))
        for node in self.nodes():
            self._record(spawn(f"envoy:{node.id}", self._envoy_argv(envoy, node),
                               self.state_dir / "logs" / f"envoy-{node.id}.log", keeper=True))
        if prometheus and layout.prometheus_port:
            config = self._write_prometheus_config()
            self._record(spawn("prometheus", prom.argv(prometheus, config, layout.prometheus_port),
                               self.state_dir / "logs" / "prometheus.log"))

    def _spawn_app(self, inst: Instance) -> Proc:
        """Start one demo app (at ``up``, and again after a ``kill`` fault, on the same port)."""
        return spawn(f"app:{inst.id}", [sys.executable, "-m", "harness.mesh.local.demo_service",
                                        "--config", str(self._app_config(inst))],
                     self.state_dir / "logs" / f"app-{inst.id}.log")

    def restart_app(self, instance_id: str, timeout_s: float = 15.0) -> None:
        """Start an instance's app again (after a ``kill`` fault), on its port, and wait until it answers."""
        inst = self.layout.by_id(instance_id)
        fresh = self._spawn_app(inst)
        self.state.procs = [fresh if p.name == fresh.name else p for p in self.state.procs]
        self._save()
        url = f"http://127.0.0.1:{inst.app_port}/__harness/health"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get(url).status_code == 200:
                    return
            if not alive(fresh):
                raise MeshError(f"{fresh.name} exited when started again; its log ends:\n{_tail(Path(fresh.log))}")
            time.sleep(0.02)
        raise MeshError(f"{fresh.name} did not answer within {timeout_s:g}s of being started again")

    def signal_process(self, proc: Proc, sig: int) -> None:
        """Send ``sig`` to one of this mesh's processes (identity checked: never a stranger)."""
        if not send_signal(proc, sig):
            raise FaultError(f"{proc.name} (pid {proc.pid}) is not running: it cannot be signalled")

    def save_state(self) -> None:
        """Write the state file now (changes made through ``state`` are otherwise kept in memory)."""
        self._save()

    def toxiproxy(self) -> ToxiproxyClient:
        """The client of this mesh's Toxiproxy server (network faults are interposed through it)."""
        port = self.state.layout.toxiproxy_port
        if not port:
            raise FaultError("this mesh was started by an older mesh-harness, without a Toxiproxy server; "
                             "restart it (mesh-harness down, then up) to inject network faults")
        return ToxiproxyClient("127.0.0.1", port)

    def _preflight(self) -> None:
        """Refuse to start what the kernel will not let run, with the fix, instead of a crashed Envoy."""
        if self.xds_over_ads:
            return  # the Envoys watch nothing; the xDS server takes one instance, or polls without one
        # One more per route read over RDS: the gateway's, and one per outbound listener of a sidecar.
        needed = sum(INOTIFY_PER_ENVOY + (len(n.instance.outbound_ports) if n.instance else 1) for n in self.nodes())
        limit, used = inotify_budget()
        if limit is not None and used + needed > limit:
            raise MeshError(
                f"this mesh needs about {needed} inotify instances ({len(self.nodes())} Envoys watching their "
                f"config files) but only {limit - used} of the user's {limit} are free; raise the limit with: "
                "sudo sysctl -w fs.inotify.max_user_instances=1024"
            )

    def _envoy_argv(self, envoy: str, node: EnvoyNode) -> list[str]:
        base_id = node.instance.base_id if node.instance else self.state.layout.gateway_base_id
        return [envoy, *ec.envoy_args(self._node_dir(node.id) / "bootstrap.json", base_id, node.id,
                                      node.instance.service if node.instance else GATEWAY_ID)]

    def _node_dir(self, node_id: str) -> Path:
        return self.state_dir / "envoy" / node_id

    def sds_dir(self, node_id: str) -> Path:
        """Where one Envoy's two SDS secret files are (its leaf, the trust bundle): an untrusted-leaf fault
        re-points its leaf secret there, and its undo points it back."""
        return self._node_dir(node_id) / "sds"

    def _app_config(self, inst: Instance) -> Path:
        svc = self.env.spec.service(inst.service)
        behaviour = svc.behaviour_of(inst.version)
        path = self.state_dir / "apps" / f"{inst.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, {
            "service": inst.service, "version": inst.version, "instance": inst.id, "port": inst.app_port,
            "host": self.state.layout.bind,
            "calls": [{"to": c.to, "url": f"http://127.0.0.1:{inst.outbound_ports[c.to]}",
                       "optional": c.optional} for c in svc.calls],
            "behaviour": {"latency_ms": behaviour.latency * 1000, "error_rate": behaviour.error_rate,
                          "error_status": behaviour.error_status},
        })
        return path

    def _unready_detail(self) -> str:
        """More on why the gateway did not answer, for the error (a driver whose control plane can say so)."""
        return ""

    def _wait_ready(self, timeout_s: float) -> None:
        # Every Envoy LIVE and every app answering its health check, then one request end to end: a
        # single 200 through the gateway alone would not show that every version of every callee is up.
        deadline = time.monotonic() + timeout_s
        pending = {n.id: f"{n.admin}/ready" for n in self.nodes()}
        pending |= {f"app:{i.id}": f"http://127.0.0.1:{i.app_port}/__harness/health" for i in self.layout.instances}
        if self.layout.toxiproxy_port:
            pending["toxiproxy"] = f"http://127.0.0.1:{self.layout.toxiproxy_port}/version"
        if self.layout.prometheus_port:
            pending["prometheus"] = f"http://127.0.0.1:{self.layout.prometheus_port}/-/ready"
        while pending and time.monotonic() < deadline:
            self._check_procs()
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    resp = self._http.get(url)
                    if resp.status_code == 200 and (name in ("toxiproxy", "prometheus")
                                                    or resp.text.strip() in ("LIVE", "ok")):
                        del pending[name]
            time.sleep(0.02)
        if pending:
            raise MeshError(f"Envoy(s) not ready after {timeout_s:g}s: {sorted(pending)}; "
                            f"logs: {self.logs_hint()}")
        if self.layout.prometheus_port:
            self._wait_scraped(deadline)
        last = ""
        while time.monotonic() < deadline:
            self._check_procs()
            try:
                resp = self._http.get(self.gateway_url + "/")
                if resp.status_code == 200:
                    return
                last = f"{resp.status_code} {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise MeshError(f"the gateway did not answer 200 within {timeout_s:g}s (last: {last}){self._unready_detail()}; "
                        f"logs: {self.logs_hint()}")

    def _wait_scraped(self, deadline: float) -> None:
        """Until Prometheus has scraped every Envoy once: a window must not start before there are samples."""
        url = f"http://127.0.0.1:{self.layout.prometheus_port}/api/v1/query"
        want, have = len(self.nodes()), -1
        instances = "|".join(regex_literal(address) for _, address in self._prometheus_targets())
        query = f'count(up{{job="mesh-harness",instance=~"{instances}"}} == 1)'
        while time.monotonic() < deadline:
            self._check_procs()
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                result = self._http.get(url, params={"query": query}).json()
                have = int(float(result["data"]["result"][0]["value"][1])) if result["data"]["result"] else 0
                if have >= want:
                    return
            time.sleep(0.1)
        raise MeshError(f"Prometheus scraped {max(have, 0)} of {want} Envoys by the deadline; its targets are at "
                        f"http://127.0.0.1:{self.layout.prometheus_port}/targets, its log in "
                        f"{self.logs_hint('prometheus')}")

    def _scrape_targets(self) -> list[tuple[NodeInfo, int]]:
        """Every Envoy with the port of its admin endpoint on this host's 127.0.0.1."""
        ports = {n.id: n.admin_port for n in self.nodes()}
        return [(info, ports[info.id]) for info in self.topology().nodes]

    def _prometheus_targets(self) -> list[tuple[NodeInfo, str]]:
        """Every Envoy with its admin address as the mesh's Prometheus reaches it (its ``instance`` label)."""
        layout = self.layout
        return [(info, f"{layout.address(info.id)}:{port}") for info, port in self._scrape_targets()]

    def _write_prometheus_config(self) -> Path:
        return prom.write_config(self.state_dir / "prometheus", self._prometheus_targets(),
                                 self.env.spec.metrics.scrape_interval, LOCAL_NAMING)

    def _check_procs(self) -> None:
        dead = [p for p in self.state.procs if not alive(p)]
        if dead:
            tail = _tail(Path(dead[0].log))
            raise MeshError(f"{dead[0].name} exited during start-up; its log ends:\n{tail}")

    def down(self) -> list[str]:
        """Stop every process this mesh started (by PID and start time); return any that resisted.

        With a damaged state it still stops what it can identify (see :meth:`_salvage`), then removes it.
        """
        try:
            state = self._state or self._load_state()
        except StateCorrupt:
            resisted = stop_all(self._salvage())
            self._remove_state()
            return resisted
        if state is None:
            return []
        resisted = stop_all(state.procs)
        self._remove_state()
        return resisted

    def _remove_state(self) -> None:
        self._state = None
        path = self.state_file
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            try:
                path.rmdir()
            except OSError:
                raise StateCorrupt(path, "is a directory that is not empty",
                                   "the mesh's processes were stopped; remove it by hand") from None
        except OSError as exc:
            raise StateCorrupt(path, f"cannot be removed ({exc.strerror or exc})",
                               "the mesh's processes were stopped; remove it by hand") from None

    def _salvage(self) -> list[Proc]:
        """What a damaged state still identifies: its readable process entries, and this mesh's processes.

        The latter are found by command line: the ``-c``/``--config`` argument pairs ``up`` builds point
        into this state directory, which no other program's arguments do. Each is then signalled only
        while its PID and start time match, as always.
        """
        procs = find_processes(self._own_process_name)
        with contextlib.suppress(StateCorrupt):
            data = (self._read_state_json() or (None,))[0]
            entries = data.get("procs") if isinstance(data, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                with contextlib.suppress(ValidationError):
                    procs.append(ProcDoc.model_validate(entry).proc())
        return list({p.key: p for p in procs}.values())

    def _state_roots(self) -> set[str]:
        """The state directory as a command line may name it (as given, absolute, resolved)."""
        return {str(self.state_dir), str(self.state_dir.absolute()), str(self.state_dir.resolve())}

    def _bootstrapped_envoy_argv(self, envoy: str, node: EnvoyNode) -> list[str]:
        """An Envoy whose bootstrap a control plane's tooling wrote (istiod's, ``consul connect envoy``'s): its own
        base id (many Envoys on one host), one worker, and a 1 s immediate drain, so that a listener a change
        replaces leaves the callers' connections within a second."""
        base_id = node.instance.base_id if node.instance else self.layout.gateway_base_id
        return [envoy, "-c", str(self._node_dir(node.id) / "bootstrap.json"), "--base-id", str(base_id),
                "--concurrency", "1", "--drain-strategy", "immediate", "--drain-time-s", "1",
                "--parent-shutdown-time-s", "2", "-l", "warning"]

    def _own_process_name(self, argv: list[str]) -> str | None:
        """``envoy:ID``/``app:ID`` if ``argv`` is one ``up`` built for this state directory, else None."""
        roots = self._state_roots()
        for flag, value in itertools.pairwise(argv):
            path = Path(value)
            if (flag == "-c" and path.name == "bootstrap.json" and path.parent.parent.name == "envoy"
                    and str(path.parent.parent.parent) in roots):
                return f"envoy:{path.parent.name}"
            if flag == "--nodes" and path.name == XDS_NODES and str(path.parent) in roots:
                return "xds"
            if flag == "--config" and path.suffix == ".json" and path.parent.name == "apps" and \
                    str(path.parent.parent) in roots:
                return f"app:{path.stem}"
        for arg in argv:
            config = Path(arg.removeprefix("--config.file="))
            if (arg.startswith("--config.file=") and config.name == prom.CONFIG_NAME
                    and config.parent.name == "prometheus" and str(config.parent.parent) in roots):
                return "prometheus"
        return None

    def _cleanup_stale(self) -> None:
        """A previous mesh from this state dir that is half-dead: stop what is left of it."""
        state = self._load_state()
        if state is not None:
            stop_all(state.procs)
            self._remove_state()

    def status(self) -> dict[str, Any]:
        """Whether the mesh runs, its gateway, processes and Envoy; StateCorrupt if its state is damaged."""
        state = self._load_state()
        envoy = self._envoy_status(state)
        if state is None:
            return {"running": False, "state_dir": str(self.state_dir), "envoy": envoy}
        procs = [{"name": p.name, "pid": p.pid, "alive": alive(p)} for p in state.procs]
        return {
            "running": bool(procs) and all(alive(p) for p in _expected(state)),
            **self._state_status(state),
            "processes": procs,
            "envoy": envoy,
            **({"prometheus": url} if (url := self._prometheus_of(state)) else {}),
        }

    def _state_status(self, state: State) -> dict[str, Any]:
        """What ``status`` reports of a recorded mesh whatever runs it: faults in force, gateway, config."""
        return {
            "stopped_by_faults": state.stopped,
            "interposed": state.interposed,
            "state_dir": str(self.state_dir),
            "environment": state.env_path,
            "gateway": f"http://127.0.0.1:{state.layout.gateway_port}",
            "config_version": state.version,
            "overrides": state.overrides,
            "splits": state.splits,
        }

    def _prometheus_of(self, state: State) -> str | None:
        """The Prometheus the metric source asks: the environment's ``url``, else the mesh's own."""
        if not self._through_prometheus:
            return None
        port = state.layout.prometheus_port
        return self.env.spec.metrics.url or (f"http://127.0.0.1:{port}" if port else None)

    @staticmethod
    def _envoy_status(state: State | None) -> dict[str, str | None]:
        """The Envoy the mesh was started with; else (older state, or none) the one ``up`` would use."""
        if state is not None and state.envoy is not None:
            return asdict(state.envoy)
        try:
            return asdict(envoy_binary())
        except MeshError as exc:
            return {"path": None, "version": None, "source": None, "error": str(exc)}

    # ----------------------------------------------------------------------------------- config
    def policy(self, caller: str, callee: str) -> ResolvedPolicy:
        """The policy in force on an edge: environment, then any override, then mesh defaults."""
        if caller == GATEWAY_ID:
            return resolve(None)
        declared = self.env.spec.call(caller, callee)
        override = self.state.overrides.get(f"{caller}->{callee}")
        return resolve(merge_policy(declared, EdgePolicy.model_validate(override) if override else None))

    def split(self, service: str) -> dict[str, float]:
        return dict(self.state.splits.get(service) or self.env.spec.service(service).effective_split())

    def _render(self, node: EnvoyNode, sds_dir: Path, material: str | None,
                ads: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """One Envoy's CDS, LDS and RDS resources (RDS by route name) from the environment and the state;
        ``ads``: the resources' own config sources (RDS, SDS) read over ADS rather than from files."""
        spec = self.env.spec
        caller = node.instance.service if node.instance else GATEWAY_ID
        callees = list(node.instance.outbound_ports) if node.instance else [spec.gateway.service]
        policies = {c: self.policy(caller, c) for c in callees}
        weights = {c: self.split(c) for c in callees}
        versions = {c: list(spec.service(c).versions) for c in callees}
        endpoints = {c: self.state.interposed.get(f"{caller}->{c}", {}) for c in callees}
        cds = ec.clusters(node.instance, self.state.layout, callees, versions, policies, spec.mtls, sds_dir,
                          "harness.local", endpoints, material, self._through_prometheus)
        lds = ec.listeners(node.instance, self.state.layout, weights, policies, spec.mtls, sds_dir,
                           "harness.local", spec.gateway.service)
        if ads:
            cds, lds = ec.over_ads(cds), ec.over_ads(lds)
        return cds, lds, ec.routes(node.instance, weights, policies, spec.gateway.service)

    def _write_all_configs(self, ca: LocalCA) -> None:
        trust = ca.trust_paths()
        for node in self.nodes():
            directory = self._node_dir(node.id)
            (directory / "xds").mkdir(parents=True, exist_ok=True)
            (directory / "sds").mkdir(parents=True, exist_ok=True)
            leaf = ca.paths(node.instance.service if node.instance else GATEWAY_ID)
            for name, doc in ec.secret_files(leaf.cert, leaf.key, trust.ca_cert).items():
                _write_json(directory / "sds" / name, doc)
            _write_json(directory / "bootstrap.json",
                        ec.bootstrap(node.id, node.instance.service if node.instance else GATEWAY_ID,
                                     node.admin_port, directory / "xds", self._through_prometheus,
                                     self.state.layout.bind, self.xds_socket if self.xds_over_ads else None))
        if self.xds_over_ads:
            _write_json(self.state_dir / XDS_NODES, {n.id: [str(self._node_dir(n.id) / "xds"),
                                                            str(self._node_dir(n.id) / "sds")]
                                                     for n in self.nodes()})
        material = self.tls_material()  # once every node's secrets are written: it digests them all
        for node in self.nodes():
            directory = self._node_dir(node.id)
            cds, lds, rds = self._render(node, directory / "sds", material, self.xds_over_ads)
            version = str(self.state.version)
            for stale in (directory / "xds").glob(ec.rds_file(directory / "xds", "*").name):
                stale.unlink()  # an earlier mesh's route that this one does not have
            _write_json(directory / "xds" / "rtds.json", ec.runtime_file({}, 1))
            _write_json(directory / "xds" / "cds.json", {"version_info": version, "resources": cds})
            for name, route in rds.items():
                _write_json(ec.rds_file(directory / "xds", name), {"version_info": version, "resources": [route]})
            _write_json(directory / "xds" / "lds.json", {"version_info": version, "resources": lds})

    def _affected(self, services: set[str]) -> list[EnvoyNode]:
        """Envoys whose config mentions any of ``services`` as a callee (or that belong to them)."""
        gw = self.env.spec.gateway.service
        out = []
        for node in self.nodes():
            callees = set(node.instance.outbound_ports) if node.instance else {gw}
            if callees & services:
                out.append(node)
        return out

    def reconfigure(self, services: set[str]) -> int:
        """Rewrite CDS, then RDS (then LDS, only if a listener changed) of every Envoy calling ``services``;
        return once every one shows them. Clusters first, so that no route names a cluster not yet there."""
        state = self.state
        state.version += 1
        self._save()
        nodes = self._affected(services)
        version = str(state.version)
        material = self.tls_material()
        ads = self._served_over_ads()
        rendered = {n.id: self._render(n, self._node_dir(n.id) / "sds", material, ads) for n in nodes}
        for n in nodes:
            _write_json(self._node_dir(n.id) / "xds" / "cds.json", {"version_info": version,
                                                                    "resources": rendered[n.id][0]})
        self._await_version(nodes, "cluster_manager.cds", version)
        for n in nodes:
            for name, route in rendered[n.id][2].items():
                _write_json(ec.rds_file(self._node_dir(n.id) / "xds", name), {"version_info": version,
                                                                             "resources": [route]})
        for n in nodes:
            for name in rendered[n.id][2]:
                self._await_version([n], f"http.{name}.rds.{name}", version)
        changed = [n for n in nodes if self._listeners_on_disk(n) != rendered[n.id][1]]
        for n in changed:
            _write_json(self._node_dir(n.id) / "xds" / "lds.json", {"version_info": version,
                                                                    "resources": rendered[n.id][1]})
        if changed:
            self._await_version(changed, "listener_manager.lds", version)
            self._await_drained(changed)
        return state.version

    def _listeners_on_disk(self, node: EnvoyNode) -> Any:
        """The LDS resources last written for ``node`` (None when unreadable: then they are rewritten)."""
        try:
            return json.loads((self._node_dir(node.id) / "xds" / "lds.json").read_text())["resources"]
        except (OSError, ValueError, KeyError):
            return None

    def tls_material(self) -> str | None:
        """A digest of the certificates in force (None under ``mtls: off``): see :func:`certs.material_digest`."""
        return None if self.env.spec.mtls == "off" else certs.material_digest(self)

    def reconnect(self) -> None:
        """Re-create every Envoy's mTLS clusters for the certificates in force now, so that the connections
        they pooled drain and the next requests handshake with the new material (see
        :func:`certs.material_digest`); returns once every Envoy shows its new clusters."""
        self.reconfigure({s.name for s in self.env.spec.services})

    def _await_drained(self, nodes: list[EnvoyNode], timeout_s: float = 5.0) -> None:
        """Wait until no Envoy still drains a replaced filter chain.

        Why: an LDS update replaces a listener's filter chain in place, and connections already open on
        the old chain keep its routes until the drain time (``--drain-time-s 1``) closes them; measured:
        the first request on a kept-alive connection after a split change still took the old route.
        Returning only once they are closed makes "applied" mean "every new request sees it".
        """
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        while pending and time.monotonic() < deadline:
            for node in list(pending):
                stats = self.admin_stats(node, r"^listener_manager\.total_filter_chains_draining$")
                if stats.get("listener_manager.total_filter_chains_draining", "0") == "0":
                    pending.remove(node)
            if pending:
                time.sleep(0.02)
        if pending:
            raise ConfigRejected(f"{', '.join(n.id for n in pending)} still drain the previous configuration "
                                 f"after {timeout_s:g}s; see {self.logs_hint()}")

    def _await_version(self, nodes: list[EnvoyNode], prefix: str, version: str, timeout_s: float = 5.0) -> None:
        """Wait for ``prefix.version_text`` to show ``version`` on every node; rejects are errors."""
        deadline = time.monotonic() + timeout_s
        pending = list(nodes)
        while pending:
            for node in list(pending):
                stats = self.admin_stats(node, f"^{prefix}\\.(version_text|update_rejected)$")
                if stats.get(f"{prefix}.version_text") == version:
                    pending.remove(node)
                elif time.monotonic() > deadline:
                    raise ConfigRejected(
                        f"{node.id} did not take config version {version} ({prefix}); "
                        f"update_rejected={stats.get(f'{prefix}.update_rejected')}; "
                        f"see {self.logs_hint(node.id)}")
            if pending:
                time.sleep(0.003)

    # ----------------------------------------------------------------------------------- admin
    def admin_stats(self, node: EnvoyNode, regex: str) -> dict[str, str]:
        """Text ``/stats`` filtered by ``regex``, as name → raw value."""
        try:
            text = self._http.get(f"{node.admin}/stats", params={"filter": regex}).text
        except httpx.HTTPError as exc:
            raise MeshError(f"cannot reach Envoy admin of {node.id} at {node.admin}: {exc}") from None
        out: dict[str, str] = {}
        for line in text.splitlines():
            name, sep, value = line.partition(": ")
            if sep:
                out[name] = value.strip().strip('"')
        return out

    def set_runtime(self, node: EnvoyNode, updates: dict[str, Any]) -> None:
        """Set runtime keys in this Envoy's RTDS layer (a value of None removes the key); wait for it.

        Read-modify-write of the layer file: faults on the same Envoy keep each other's keys.
        """
        path = self._node_dir(node.id) / "xds" / "rtds.json"
        current = json.loads(path.read_text())
        layer: dict[str, Any] = current["resources"][0]["layer"]
        for key, value in updates.items():
            if value is None:
                layer.pop(key, None)
            else:
                layer[key] = value
        version = int(current["version_info"]) + 1
        _write_json(path, ec.runtime_file(layer, version))
        self._await_runtime(node, {k: v is not None for k, v in updates.items()})

    def _await_runtime(self, node: EnvoyNode, present: dict[str, bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            keys = self.runtime(node)
            if all((k in keys) == want for k, want in present.items()):
                return
            if time.monotonic() > deadline:
                raise ConfigRejected(f"{node.id} did not load runtime change {present} within {timeout_s:g}s; "
                                     f"see {self.logs_hint(node.id)}")
            time.sleep(0.003)

    def runtime(self, node: EnvoyNode) -> dict[str, str]:
        """Runtime keys of the harness currently set on one Envoy (any layer), with their final value."""
        try:
            data = self._http.get(f"{node.admin}/runtime").json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MeshError(f"cannot read runtime of {node.id} at {node.admin}: {exc}") from None
        entries = data.get("entries", {})
        return {k: str(v.get("final_value", "")) for k, v in entries.items() if k.startswith("harness.")}

    def app_stats(self, inst: Instance) -> dict[str, Any]:
        return dict(self._http.get(f"http://127.0.0.1:{inst.app_port}/__harness/stats").json())

    # ----------------------------------------------------------------------------------- mutations
    def set_override(self, caller: str, callee: str, policy: dict[str, Any] | None) -> dict[str, Any] | None:
        """Replace the experiment override on an edge (None removes it); return the previous one."""
        key = f"{caller}->{callee}"
        previous = self.state.overrides.get(key)
        if policy is None:
            self.state.overrides.pop(key, None)
        else:
            self.state.overrides[key] = policy
        self.reconfigure({callee})
        return previous

    def set_interposed(self, edges: Mapping[str, dict[str, int] | None]) -> None:
        """Point each ``caller->callee`` edge's endpoints at proxies (instance id -> port), or back at the
        instances (None); the callers' Envoys are reconfigured (CDS: the old connection pools drain, so
        new requests take the new path) before this returns."""
        for key, endpoints in edges.items():
            if endpoints is None:
                self.state.interposed.pop(key, None)
            else:
                self.state.interposed[key] = endpoints
        self.reconfigure({key.split("->", 1)[1] for key in edges})

    def set_split(self, service: str, split: dict[str, float] | None) -> dict[str, float] | None:
        """Replace the split override of a service (None restores the declared split)."""
        previous = self.state.splits.get(service)
        if split is None:
            self.state.splits.pop(service, None)
        else:
            self.state.splits[service] = split
        self.reconfigure({service})
        return previous

    # ----------------------------------------------------------------------------------- the driver protocol
    def topology(self) -> Topology:
        """Every Envoy of the running mesh as a node (the gateway's service is ``gateway``)."""
        return Topology(
            tuple(NodeInfo(n.id, n.instance.service, n.instance.version) if n.instance
                  else NodeInfo(n.id, GATEWAY_ID, GATEWAY_ID) for n in self.nodes()),
            self.gateway_url)

    def metric_source(self, interval_s: float) -> EnvoySource | PrometheusSource:
        """Admin ``/stats`` of every Envoy, or the same counters through Prometheus (``metrics.source``),
        plus the demo apps' own counters (attempts, in-flight)."""
        apps = [(i.id, i.app_port) for i in self.layout.instances]
        url = self._prometheus_of(self.state)
        if url is not None:
            return PrometheusSource(url, self._prometheus_targets(), apps, interval_s, LOCAL_NAMING)
        return EnvoySource(self._scrape_targets(), apps, interval_s, LOCAL_NAMING)

    def _reread(self) -> None:
        """Read the state file again before acting: another driver object, or ``cleanup`` in another
        process, may have changed the mesh since (an app started again has a new PID)."""
        self._state = None

    changes: Any = changes
    """The module that turns intents into this driver's changes (``prepare``, ``apply``, ``undo``): the local
    mesh's own; a driver built on this one with another control plane names its own."""

    def prepare(self, intent: Intent) -> Prepared:
        self._reread()
        prepared: Prepared = self.changes.prepare(self, intent)
        return prepared

    def apply(self, prepared: Prepared) -> float:
        self._reread()
        ms: float = self.changes.apply(self, prepared)
        return ms

    def undo(self, undo: dict[str, Any]) -> None:
        self._reread()
        self.changes.undo(self, undo)

    def certificate_stages(self) -> list[dict[str, Any]]:
        """Every certificate stage logged (``certs/stages.jsonl``: time, change, stage, started or confirmed),
        which the timeline picture marks."""
        return certs.stage_log(self)

    def served_certificates(self) -> dict[str, ServedCert]:
        """Per Envoy that answers: the serials of the leaf it presents and of the root it trusts (admin
        ``/certs``), for the ``mtls`` expectation's ``rotated``."""
        self._reread()
        return certs.served_all(self)

    def probe_peers(self, service: str) -> list[PeerProbe]:
        """Play each bad peer (plaintext, an untrusted client certificate, a trusted one with a wrong
        identity) against each instance of ``service``'s inbound listener; change nothing."""
        self._reread()
        return certs.probe(self, service)

    def fingerprint(self) -> dict[str, Any]:
        """Per Envoy: active clusters, active listeners, the harness's runtime keys and the serials of the
        leaf and root it serves (what any change of this driver alters), with version stamps left out;
        per app: whether it runs."""
        self._reread()
        out: dict[str, Any] = {}
        for node in self.nodes():
            base = node.admin
            clusters = self._http.get(base + "/config_dump", params={"resource": "dynamic_active_clusters"}).json()
            listeners = self._http.get(base + "/config_dump", params={"resource": "dynamic_listeners"}).json()
            routes = self._http.get(base + "/config_dump", params={"resource": "dynamic_route_configs"}).json()
            active = [c.get("active_state") for c in listeners.get("configs", [])]
            active += [c.get("route_config") for c in routes.get("configs", [])]
            out[node.id] = _unstamped({"clusters": clusters, "listeners": active, "runtime": self.runtime(node),
                                       "certs": certs.served(self, node).to_json()})
        for proc in self.state.procs:
            out[proc.name] = {"alive": alive(proc), "frozen": frozen(proc)}
        if self.layout.toxiproxy_port:
            client = self.toxiproxy()
            out["toxiproxy"] = {name: {**proxy, "toxics": client.toxics(name)}
                                for name, proxy in client.proxies().items()}
        out["state"] = {"interposed": self.state.interposed, "stopped": self.state.stopped}
        return out

    def logs_hint(self, part: str | None = None) -> str:
        """The log directory, or one process's log (an Envoy by node id, ``toxiproxy``, ``prometheus``, ``xds``)."""
        logs = self.state_dir / "logs"
        if part is None:
            return str(logs)
        return str(logs / (f"{part}.log" if part in ("toxiproxy", "prometheus", "xds") else f"envoy-{part}.log"))

    def iter_envoys_of(self, service: str, version: str | None = None) -> Iterator[EnvoyNode]:
        for node in self.nodes():
            if node.instance and node.instance.service == service and version in (None, node.instance.version):
                yield node

    def close(self) -> None:
        self._http.close()


def _expected(state: State) -> list[Proc]:
    """The processes that should be alive: all but the apps a fault stopped on purpose."""
    return [p for p in state.procs if p.name.removeprefix("app:") not in state.stopped]


def toxiproxy_argv(port: int) -> list[str]:
    """A real ``toxiproxy-server`` where one is found (see ``harness.toxiproxy``), else the embedded one."""
    return toxiproxy_server_command("127.0.0.1", port) or [
        sys.executable, "-m", "harness.toxiproxy", "--host", "127.0.0.1", "--port", str(port)]


def _unstamped(value: Any) -> Any:
    """``value`` without Envoy's version and update stamps, which change on every push of the same config."""
    if isinstance(value, dict):
        return {k: _unstamped(v) for k, v in value.items() if k not in ("version_info", "last_updated")}
    if isinstance(value, list):
        return [_unstamped(v) for v in value]
    return value


XDS_NODES = "xds-nodes.json"
"""The xDS server's map of node id → the directories of that Envoy's documents."""

INOTIFY_PER_ENVOY = 7
"""Measured on envoy 1.40: CDS, LDS and RTDS subscriptions, two SDS subscriptions, two certificate watches
(and one per RDS subscription, counted per Envoy by ``_preflight``)."""


def inotify_budget(proc_root: Path = Path("/proc")) -> tuple[int | None, int]:
    """(the per-user inotify instance limit, instances this user's processes hold now); (None, 0) unknown.

    This reads ``/proc/*/fd`` itself: an inotify instance is an anonymous inode, which psutil does not
    list among open files. Without ``/proc`` (macOS, a restricted container) the budget is unknown and
    the preflight check is skipped.
    """
    try:
        limit = int((proc_root / "sys/fs/inotify/max_user_instances").read_text())
        entries = list(proc_root.iterdir())
    except (OSError, ValueError):
        return None, 0
    uid, used = os.getuid(), 0
    for proc in entries:
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == "anon_inode:inotify":
                        used += 1
        except OSError:
            continue
    return limit, used


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
