"""The compose mesh driver: the local mesh's configuration and changes, its processes as containers.

``ComposeMesh`` is the local driver with another process manager. Everything the harness writes (Envoy
bootstraps, CDS/LDS/RDS/RTDS files, SDS secrets and their ``..data`` renames, app configs, Prometheus
targets) is written exactly as on the local mesh, into a directory every container mounts at the same
path; HTTP faults, shifts, policy overrides and certificate changes therefore work unchanged. What
differs is what runs it: ``docker compose up -d --wait`` instead of spawned processes, addresses on a
bridge network instead of 127.0.0.1 (:mod:`.project`), the Toxiproxy server in a container, and
``kill``/``pause`` through the docker SDK (:mod:`.containers`) instead of signals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness._errors import MeshError, StateCorrupt
from harness.mesh.base import Capabilities, Prepared
from harness.mesh.compose import containers, images, network, project
from harness.mesh.compose.engine import compose_command, docker_errors, engine
from harness.mesh.intents import Intent, Partition, ProcessSignal
from harness.mesh.local.ca import LocalCA
from harness.mesh.local.driver import CAPABILITIES as LOCAL_CAPABILITIES
from harness.mesh.local.driver import LocalMesh, _write_json
from harness.mesh.local.state import State
from harness.mesh.local.topology import GATEWAY_ID, Layout, build_layout
from harness.metrics.snapshot import NodeInfo
from harness.model.environment import Environment

__all__ = ["CAPABILITIES", "ComposeMesh"]

COMPOSE_FILE = "compose.yaml"

CAPABILITIES = Capabilities(
    mesh="compose",
    faults=LOCAL_CAPABILITIES.faults,
    http_placements=LOCAL_CAPABILITIES.http_placements,
    policy_fields=LOCAL_CAPABILITIES.policy_fields,
    evidence=LOCAL_CAPABILITIES.evidence,
    fault_options=frozenset({"partition.via=network"}),
)
"""Everything the local mesh does: the same Envoy configuration, the same demo apps, a real Toxiproxy
server for network faults and partitions, ``kill`` and ``pause`` on the apps' containers."""


def project_name(env: Environment, state_dir: Path) -> str:
    """The compose project: the environment's ``compose.project``, else one per state directory."""
    if env.spec.compose is not None and env.spec.compose.project:
        return env.spec.compose.project
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    name = re.sub(r"[^a-z0-9_-]", "-", env.metadata.name.lower()).strip("-_") or "mesh"
    return f"mh-{name}-{digest}"


class ComposeMesh(LocalMesh):
    """The compose mesh driver. Construct with :meth:`for_environment`; ``up``/``down`` manage it."""

    name = "compose"
    capabilities = CAPABILITIES
    xds_over_ads = False  # the Envoys in containers read the bind-mounted documents themselves

    def __init__(self, env: Environment, env_path: Path, state_dir: Path) -> None:
        # Absolute: it is mounted at the same path inside, and it labels the containers.
        super().__init__(env, env_path, state_dir.resolve())
        self._client: Any = None
        self._checked = 0.0

    # ----------------------------------------------------------------------------------- docker
    @property
    def client(self) -> Any:
        """The docker SDK client (MeshError naming what is missing when no engine answers)."""
        if self._client is None:
            self._client = engine()
        return self._client

    @property
    def project(self) -> str:
        return project_name(self.env, self.state_dir)

    @property
    def compose_file(self) -> Path:
        return self.state_dir / COMPOSE_FILE

    def compose(self, *args: str, timeout_s: float = 120.0) -> str:
        """Run ``docker compose -p PROJECT -f FILE ARGS``; MeshError with compose's own words on failure."""
        argv = [*compose_command(), "-p", self.project, "-f", str(self.compose_file), *args]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise MeshError(f"docker compose {' '.join(args)} did not finish within {timeout_s:g}s") from None
        if out.returncode != 0:
            tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-12:])
            raise MeshError(f"docker compose {' '.join(args)} failed (exit {out.returncode}):\n{tail}")
        return out.stdout

    def containers(self) -> dict[str, Any]:
        """This mesh's containers by compose service name (found by the state-directory label)."""
        with docker_errors("listing the mesh's containers"):
            found = self.client.containers.list(all=True, ignore_removed=True,
                                                filters={"label": f"{project.STATE_LABEL}={self.state_dir}"})
        return {c.labels.get("com.docker.compose.service", c.name): c for c in found}

    def logs_hint(self, part: str | None = None) -> str:
        """The ``docker compose logs`` command for the mesh, or for one node's container."""
        try:
            compose = " ".join(compose_command())
        except MeshError:
            compose = "docker compose"
        if part is None:
            return f"{compose} -p {self.project} logs"
        service = part if part in (GATEWAY_ID, project.TOXIPROXY, project.PROMETHEUS) else project.sidecar_of(part)
        return f"{compose} -p {self.project} logs {service}"

    def _expected_services(self, state: State) -> set[str]:
        """Every compose service of the mesh as ``up`` wrote it."""
        out = {project.TOXIPROXY, GATEWAY_ID}
        out |= {project.sidecar_of(i.id) for i in state.layout.instances}
        out |= {project.container_of(i.id) for i in state.layout.instances}
        if state.layout.prometheus_port and self._prometheus_wanted():
            out.add(project.PROMETHEUS)
        return out

    # ----------------------------------------------------------------------------------- up/down
    def up(self, timeout_s: float = 30.0, on_event: Callable[[str], None] | None = None) -> str:
        """Write the mesh's configuration and compose project, ``docker compose up -d --wait``, then wait
        until every Envoy, app and the gateway answer, as the local mesh does."""
        say = on_event or (lambda message: None)
        client = self.client
        compose_command()
        if self.is_up():
            return self.gateway_url
        self._refuse_foreign_project()
        wanted = images.wanted_images()
        prometheus = self._prometheus_wanted()
        with docker_errors("checking the images"):
            missing = images.missing_images(client, wanted, prometheus)
        if missing:
            # As `docker compose up` builds what it lacks: the first up on a machine builds the images.
            say(f"building the images this engine does not have: {', '.join(missing)}")
            try:
                images.build_images(client, prometheus, on_event=say)
            except MeshError as exc:
                raise MeshError(f"mesh: compose runs images this engine does not have ({', '.join(missing)}), and "
                                f"building them failed: {exc}\nbuild them with: "
                                "sudo $(command -v mesh-harness) compose-images") from None
        self._cleanup_stale()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        seed = (int(hashlib.sha1(str(self.state_dir).encode()).hexdigest(), 16) % 40000) * 10 + 100000
        layout = build_layout(self.env, seed)
        self._place(layout, *self._free_subnets())
        self._state = State(env=self.env.model_dump(by_alias=True, mode="json"), env_path=str(self.env_path),
                            layout=layout, started_at=time.time())
        self._save()
        try:
            say(f"writing certificates and configuration for {len(self.nodes())} Envoys")
            self._write_everything()
            say(f"docker compose up: {len(layout.instances)} apps, {len(self.nodes())} Envoys, a Toxiproxy server"
                + (" and Prometheus" if prometheus else "") + f" (project {self.project})")
            self.compose("up", "-d", "--wait", "--no-build", "--pull", "never", timeout_s=max(timeout_s, 60.0))
            say(f"waiting until every Envoy and app is ready (at most {timeout_s:g}s)")
            self._wait_ready(timeout_s)
        except BaseException:
            self.down()
            raise
        return self.gateway_url

    def _refuse_foreign_project(self) -> None:
        """Another mesh (another state directory) already runs under this compose project name: starting
        here would replace its containers, and `down` would remove them."""
        with docker_errors("listing containers"):
            found = self.client.containers.list(all=True, ignore_removed=True,
                                                filters={"label": f"com.docker.compose.project={self.project}"})
        others = sorted({c.labels.get(project.STATE_LABEL, "?") for c in found} - {str(self.state_dir)})
        if others:
            raise MeshError(f"compose project {self.project} already runs another mesh (state {others[0]}); give this "
                            "environment another compose.project, or take that mesh down first")

    def _place(self, layout: Layout, subnet: str, control_subnet: str) -> None:
        """Containers listen on every address of their own namespace; peers reach them on the mesh network."""
        layout.bind = "0.0.0.0"
        layout.addresses = project.addresses(layout, subnet, control_subnet)

    def _write_everything(self) -> None:
        config = self.write_configs()
        self._preflight()
        self.write_project(images.wanted_images(), config)

    def write_configs(self) -> Path | None:
        """Certificates, every Envoy's files and every app's config, as the local mesh writes them, and the
        Prometheus config when the mesh runs one (its path is returned)."""
        ca = LocalCA.create(self.state_dir / "pki")
        for svc in self.env.spec.services:
            ca.issue_leaf(svc.name)
        ca.issue_leaf(GATEWAY_ID)
        self._write_all_configs(ca)
        for inst in self.layout.instances:
            self._app_config(inst)
        for depth in range(1, len(project.UNTRUSTED_DIR) + 1):  # each 0700, as the local CA makes its own
            self.state_dir.joinpath(*project.UNTRUSTED_DIR[:depth]).mkdir(exist_ok=True, mode=0o700)
        return self._write_prometheus_config() if self._prometheus_wanted() else None

    def write_project(self, image_set: images.ImageSet, prometheus_config: Path | None) -> None:
        doc = project.render(self.env, self.layout, self.state_dir, project.Images.local(image_set),
                             prometheus_config, f"{os.getuid()}:{os.getgid()}", healthchecks=False)
        _write_json(self.compose_file, doc)  # JSON is YAML; replaced whole, never half-written

    def _prometheus_targets(self) -> list[tuple[NodeInfo, str]]:
        """Prometheus scrapes over the control network: an instance partitioned off the mesh is still seen."""
        layout = self.layout
        return [(info, f"{layout.address(project.CONTROL_PREFIX + info.id)}:{port}")
                for info, port in self._scrape_targets()]

    def _free_subnets(self) -> tuple[str, str]:
        """Two /24s under 10.0.0.0/8 (mesh, control), chosen from the state directory and moved on past any
        network the engine or this host already has (two meshes, or a host route, must never share one)."""
        taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        with docker_errors("listing networks"):
            networks = self.client.networks.list()
        for net in networks:
            for config in (net.attrs.get("IPAM") or {}).get("Config") or []:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    taken.append(ipaddress.ip_network(config["Subnet"], strict=False))
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for addr in addresses:
                with contextlib.suppress(ValueError, TypeError):
                    if addr.netmask:
                        taken.append(ipaddress.ip_network(f"{addr.address}/{addr.netmask}", strict=False))
        start = int(hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest(), 16)
        found: list[str] = []
        for step in range(4096):
            n = (start + step) % (200 * 256)
            candidate = ipaddress.ip_network(f"10.{40 + n // 256}.{n % 256}.0/24")
            if not any(candidate.overlaps(t) for t in taken if t.version == 4):
                found.append(str(candidate))
                taken.append(candidate)
                if len(found) == 2:
                    return found[0], found[1]
        raise MeshError("no free /24 under 10.40.0.0-10.239.255.0 for the mesh network; remove unused docker "
                        "networks (docker network prune)")

    def _check_procs(self) -> None:
        """A container that exited during start-up is an error with its log, as a dead process is (looked
        at twice a second: the wait polls every 20 ms)."""
        if time.monotonic() - self._checked < 0.5:
            return
        self._checked = time.monotonic()
        for service, container in self.containers().items():
            if container.status in ("exited", "dead"):
                with docker_errors(f"reading the log of {service}"):
                    log = container.logs(tail=15).decode(errors="replace")
                raise MeshError(f"container {service} exited during start-up; its log ends:\n{log}")

    def is_up(self) -> bool:
        """Every container of the mesh exists and runs, but the apps a fault stopped on purpose."""
        state = self._load_state()
        if state is None:
            return False
        stopped = {project.container_of(i) for i in state.stopped}
        found = self.containers()
        if not self._expected_services(state) <= set(found):
            return False
        return all(c.status == "running" or (name in stopped) for name, c in found.items())

    def down(self) -> list[str]:
        """``docker compose down``; containers of this mesh left without a compose file are removed by label."""
        try:
            state = self._state or self._load_state()
        except StateCorrupt:
            state = None
        resisted: list[str] = []
        if self.compose_file.exists():
            try:
                self.compose("down", "--volumes", "--timeout", "2", "--remove-orphans")
            except MeshError as exc:
                resisted.append(str(exc).splitlines()[0])
        with contextlib.suppress(MeshError):
            for name, container in self.containers().items():
                try:
                    with docker_errors(f"removing container {name}"):
                        container.remove(force=True)
                except MeshError as exc:
                    resisted.append(str(exc))
            with docker_errors("listing networks"):
                networks = self.client.networks.list(filters={"label": f"{project.STATE_LABEL}={self.state_dir}"})
            for net in networks:
                try:
                    with docker_errors(f"removing network {net.name}"):
                        net.remove()
                except MeshError as exc:
                    resisted.append(str(exc))
        if state is not None or self.state_file.exists():
            self._remove_state()
        return resisted

    def _cleanup_stale(self) -> None:
        if self._load_state() is not None or self.compose_file.exists():
            self.down()

    def status(self) -> dict[str, Any]:
        state = self._load_state()
        if state is None:
            return {"running": False, "state_dir": str(self.state_dir), "project": self.project}
        found = {name: {"status": c.status, "image": (c.attrs.get("Config") or {}).get("Image") or c.attrs.get("Image")}
                 for name, c in self.containers().items()}
        return {
            "running": self.is_up(),
            "project": self.project,
            "compose_file": str(self.compose_file),
            **self._state_status(state),
            "containers": found,
            **({"prometheus": url} if (url := self._prometheus_of(state)) else {}),
        }

    # ----------------------------------------------------------------------------------- instances
    def restart_app(self, instance_id: str, timeout_s: float = 15.0) -> None:
        """Start an instance's app container again (after ``kill``) and wait until it answers."""
        containers.start(self, instance_id, timeout_s)

    def prepare(self, intent: Intent) -> Prepared:
        if isinstance(intent, Partition) and intent.via == "network":
            self._reread()
            return network.prepare(self, intent)
        prepared = super().prepare(intent)
        if isinstance(intent, ProcessSignal):
            # Same instances and journal records as the local mesh; the plan names what is done here.
            ids = ", ".join(prepared.do["instances"])
            what = (f"docker kill of the app container of {ids} (SIGKILL), docker start when the fault ends"
                    if intent.action == "kill" else
                    f"docker pause of the app container of {ids} (cgroup freezer), docker unpause when the fault ends")
            prepared = dataclasses.replace(prepared, description=what)
        return prepared

    def apply(self, prepared: Prepared) -> float:
        """Container changes through the docker SDK; everything else as on the local mesh."""
        op = prepared.do.get("op")
        if op not in ("signal", "network-disconnect"):
            return super().apply(prepared)
        self._reread()
        start = time.perf_counter()
        (containers.apply if op == "signal" else network.apply)(self, prepared.do)
        return (time.perf_counter() - start) * 1000

    def undo(self, undo: dict[str, Any]) -> None:
        op = undo.get("op")
        if op not in ("signal-clear", "network-reconnect"):
            super().undo(undo)
            return
        self._reread()
        (containers.undo if op == "signal-clear" else network.undo)(self, undo)

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        for name, container in self.containers().items():
            networks = sorted((container.attrs.get("NetworkSettings") or {}).get("Networks") or {})
            out[f"container:{name}"] = {"status": container.status, "networks": networks}
        return out

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        super().close()
