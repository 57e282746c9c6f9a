"""``kill`` and ``pause`` on the compose mesh: the apps' containers, through the docker SDK.

The same instances as on the local mesh (:func:`harness.mesh.local.signals.chosen`), the same journal
records (``signal`` / ``signal-clear``), other means: ``kill`` is ``docker kill`` (SIGKILL to the
container), its undo ``docker start`` (same container, same namespace: the sidecar, which owns the
namespace, keeps its address, so callers' endpoints hold); ``pause`` is ``docker pause`` (the cgroup
freezer, what SIGSTOP is to a process), its undo ``docker unpause``. The containers have no restart
policy, so a killed app stays down until the undo, exactly as long as the fault says. While a fault
holds, the state records the instance as stopped on purpose, so the mesh still counts as running and
``cleanup`` after a crash starts or thaws what the journal names.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import httpx

from harness._errors import FaultError, MeshError
from harness.mesh.compose.engine import docker_errors
from harness.mesh.compose.project import container_of

if TYPE_CHECKING:
    from harness.mesh.compose.driver import ComposeMesh

__all__ = ["apply", "start", "undo"]

_WAIT_S = 15.0


class Gone(FaultError):
    """The instance's container does not exist (the mesh was taken down since): nothing to restore."""


def _container(mesh: ComposeMesh, instance: str) -> Any:
    found = mesh.containers().get(container_of(instance))
    if found is None:
        raise Gone(f"no container of {instance} in compose project {mesh.project}")
    return found


def _await(container: Any, instance: str, want: tuple[str, ...], what: str) -> None:
    """Until the container's status is one of ``want`` (one container inspected, not the whole project)."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        with docker_errors(f"inspecting {instance}'s container", FaultError):
            container.reload()
        if container.status in want:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"{instance}'s container did not {what} within {_WAIT_S:g}s (it is {container.status})")
        time.sleep(0.01)


def apply(mesh: ComposeMesh, do: dict[str, Any]) -> None:
    """Record the instances as stopped on purpose, then kill or pause their containers."""
    action = do["action"]
    for instance in do["instances"]:
        mesh.state.stopped[instance] = "killed" if action == "kill" else "paused"
    mesh.save_state()
    for instance in do["instances"]:
        container = _container(mesh, instance)
        if action == "kill":
            with docker_errors(f"docker kill of {instance}", FaultError):
                container.kill()
            _await(container, instance, ("exited", "dead"), "stop after docker kill")
        else:
            with docker_errors(f"docker pause of {instance}", FaultError):
                container.pause()
            _await(container, instance, ("paused",), "pause")


def undo(mesh: ComposeMesh, data: dict[str, Any]) -> None:
    """Unpause paused containers; start killed ones again and wait until the app answers. A paused app
    that died since is left as it is, as on the local mesh (a kill's undo is what starts apps)."""
    for instance in data["instances"]:
        try:
            container = _container(mesh, instance)
        except Gone:
            if mesh.saved_state() is None:
                continue  # the mesh was taken down since (its state with it): nothing is left to restore
            container = None
        if container is not None and container.status == "paused":
            with docker_errors(f"docker unpause of {instance}", FaultError):
                container.unpause()
            _await(container, instance, ("running",), "resume after docker unpause")
        elif container is not None and data["action"] == "kill" and container.status != "running":
            start(mesh, instance)
        mesh.state.stopped.pop(instance, None)
        mesh.save_state()


def start(mesh: ComposeMesh, instance: str, timeout_s: float = _WAIT_S) -> None:
    """``docker start`` an instance's app container and wait until the app answers its health check."""
    container = _container(mesh, instance)
    if container.status != "running":
        with docker_errors(f"docker start of {instance}", FaultError):
            container.start()
    port = mesh.layout.by_id(instance).app_port
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"http://127.0.0.1:{port}/__harness/health").status_code == 200:
                    return
            with docker_errors(f"inspecting {instance}'s container", FaultError):
                container.reload()
                if container.status in ("exited", "dead"):
                    log = container.logs(tail=15).decode(errors="replace")
                    raise MeshError(f"{instance}'s container exited when started again; its log ends:\n{log}")
            time.sleep(0.05)
    raise MeshError(f"{instance}'s app did not answer within {timeout_s:g}s of being started again")
