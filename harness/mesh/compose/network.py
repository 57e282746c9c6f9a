"""``partition`` with ``via: network`` on the compose mesh: instances taken off the mesh network.

What a pulled cable, a lost node or a cloud's broken network attachment does: the ``from`` instances'
sidecar containers (the owners of their network namespaces, so their apps too) are disconnected from the
mesh network; their addresses vanish from it, so every connection to or from them hangs, and new ones
time out (the callers' Envoys: connect timeout, 503 ``UF``). Unlike ``via: proxy``, every peer is cut,
which validation requires the suite to say (``to`` names every service they talk with). The harness still
reaches them, and Prometheus still scrapes them, over the control network (:mod:`.project`).

The undo connects each container again with its own address and alias, so the callers' endpoints hold;
connecting one that is connected already is skipped, so the undo is idempotent and ``cleanup`` can
replay it after a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness._errors import FaultError
from harness.mesh.base import Prepared
from harness.mesh.compose.engine import docker_errors
from harness.mesh.compose.project import MESH_NETWORK, sidecar_of
from harness.mesh.intents import Partition
from harness.mesh.local.changes import instance_ids

if TYPE_CHECKING:
    from harness.mesh.compose.driver import ComposeMesh

__all__ = ["apply", "prepare", "undo"]


def prepare(mesh: ComposeMesh, intent: Partition) -> Prepared:
    if intent.mode != "blackhole":
        raise FaultError("partition via: network cannot refuse connections (mode: reject); use via: proxy")
    ids = [i for service in intent.sides[0] for i in instance_ids(mesh, service)]
    return Prepared(
        intent, f"partition: disconnect {', '.join(sidecar_of(i) for i in ids)} from the mesh network (their apps "
                f"share the namespace): every connection to or from {', '.join(intent.sides[0])} hangs",
        {"op": "network-disconnect", "instances": ids},
        {"op": "network-reconnect", "instances": ids},
    )


class Gone(FaultError):
    """The mesh network does not exist (the mesh was taken down since): nothing to restore."""


def _network(mesh: ComposeMesh) -> Any:
    import docker.errors

    name = f"{mesh.project}_{MESH_NETWORK}"
    with docker_errors(f"finding network {name}", FaultError):
        try:
            return mesh.client.networks.get(name)
        except docker.errors.NotFound:
            raise Gone(f"the mesh network {name} is gone (is the mesh up?)") from None


def _connected(container: Any) -> bool:
    with docker_errors("inspecting a container", FaultError):
        container.reload()
    networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
    return any(name.endswith(f"_{MESH_NETWORK}") for name in networks)


def apply(mesh: ComposeMesh, do: dict[str, Any]) -> None:
    network = _network(mesh)
    found = mesh.containers()
    for instance in do["instances"]:
        container = found.get(sidecar_of(instance))
        if container is None:
            raise FaultError(f"no sidecar container of {instance} in compose project {mesh.project}")
        if _connected(container):
            with docker_errors(f"disconnecting {sidecar_of(instance)} from the mesh network", FaultError):
                network.disconnect(container, force=True)


def undo(mesh: ComposeMesh, data: dict[str, Any]) -> None:
    """Connect each container again, with its address and alias; a gone mesh has nothing to restore."""
    try:
        network = _network(mesh)
    except Gone:
        return
    found = mesh.containers()
    for instance in data["instances"]:
        container = found.get(sidecar_of(instance))
        if container is not None and not _connected(container):
            with docker_errors(f"connecting {sidecar_of(instance)} to the mesh network again", FaultError):
                network.connect(container, ipv4_address=mesh.layout.address(instance), aliases=[instance])
