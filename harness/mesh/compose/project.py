"""The compose project of a mesh: one service per container, as docker compose reads it.

Each instance is two containers: its Envoy sidecar, which owns the instance's network namespace (its
address on the mesh network, the ports published to the host), and the demo app, which joins it
(``network_mode: service:<instance>-envoy``), so the app reaches its sidecar's outbound listeners and
the sidecar its app on 127.0.0.1 as on the local mesh. The sidecar owns the namespace, as a pod's pause
container does, so that killing or pausing the app leaves the sidecar and its address in place: callers
then see what they see in a cluster (connection refused behind a live sidecar, or a frozen app).

Every Envoy, app, the Toxiproxy server and Prometheus mount the mesh's directory at the same path
inside as outside, so the configuration the local renderer writes is read unchanged in the containers
(file xDS and SDS watch the mounted directories; a rename on the host is an event inside). Addresses on
the mesh network are fixed (``ipv4_address``), so STATIC clusters name them exactly as the local mesh
names 127.0.0.1; the ports inside are the ports published on the host's 127.0.0.1, so the harness
addresses every admin endpoint, app and listener as it does on the local mesh.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness._errors import MeshError
from harness.mesh.compose.images import OFFICIAL, ImageSet
from harness.mesh.local.envoy_config import envoy_args
from harness.mesh.local.topology import GATEWAY_ID, Instance, Layout
from harness.model.environment import Environment

__all__ = ["STATE_LABEL", "Images", "addresses", "container_of", "render", "sidecar_of"]

STATE_LABEL = "io.mesh-harness.state-dir"
"""Every container carries the mesh's directory: what ``down`` and ``cleanup`` find them by."""

TOXIPROXY = "toxiproxy"
PROMETHEUS = "prometheus"
FIRST_INSTANCE_HOST = 10
MESH_NETWORK = "mesh"
CONTROL_NETWORK = "control"
CONTROL_PREFIX = "control:"


@dataclass(frozen=True)
class Images:
    """What the compose file names: local tags, or ``${VAR:-official}`` for a project users run."""

    envoy: str
    demo: str
    prometheus: str
    toxiproxy: str

    @classmethod
    def local(cls, images: ImageSet) -> Images:
        return cls(images.envoy, images.demo, images.prometheus, images.toxiproxy)

    @classmethod
    def official(cls, demo: str) -> Images:
        """The official images, each overridable by an environment variable (the local tags, say)."""
        return cls(f"${{MESH_HARNESS_ENVOY_IMAGE:-{OFFICIAL['envoy']}}}", f"${{MESH_HARNESS_DEMO_IMAGE:-{demo}}}",
                   f"${{MESH_HARNESS_PROMETHEUS_IMAGE:-{OFFICIAL['prometheus']}}}",
                   f"${{MESH_HARNESS_TOXIPROXY_IMAGE:-{OFFICIAL['toxiproxy']}}}")


def sidecar_of(instance_id: str) -> str:
    """The compose service of an instance's Envoy (the owner of its network namespace)."""
    return f"{instance_id}-envoy"


def container_of(instance_id: str) -> str:
    """The compose service of an instance's app (what ``kill`` and ``pause`` act on)."""
    return instance_id


def addresses(layout: Layout, subnet: str, control_subnet: str) -> dict[str, str]:
    """Fixed addresses for the Toxiproxy server, the gateway, Prometheus and each instance: on the mesh
    network by id, on the control network as ``control:<id>`` (each network's gateway takes the first)."""
    out: dict[str, str] = {}
    for prefix, net in (("", subnet), (CONTROL_PREFIX, control_subnet)):
        hosts = list(ipaddress.ip_network(net).hosts())
        needed = FIRST_INSTANCE_HOST + len(layout.instances)
        if needed > len(hosts):
            raise MeshError(f"the compose mesh gives each container an address in one /24 network: {net} has "
                            f"{len(hosts)}, and {len(layout.instances)} instances need {needed}; split the "
                            "environment, or run it as mesh: local")
        out |= {prefix + TOXIPROXY: str(hosts[1]), prefix + GATEWAY_ID: str(hosts[2]),
                prefix + PROMETHEUS: str(hosts[3])}
        out |= {prefix + inst.id: str(hosts[FIRST_INSTANCE_HOST + n]) for n, inst in enumerate(layout.instances)}
    return out


def subnets(layout: Layout) -> tuple[str, str]:
    """The mesh and control subnets of a layout made by :func:`addresses`."""
    return tuple(str(ipaddress.ip_network(f"{layout.address(prefix + GATEWAY_ID)}/24", strict=False))  # type: ignore[return-value]
                 for prefix in ("", CONTROL_PREFIX))


def _publish(*ports: int) -> list[str]:
    return [f"127.0.0.1:{p}:{p}" for p in ports if p]


def render(env: Environment, layout: Layout, root: Path, images: Images,
           prometheus_config: Path | None = None, user: str | None = None,
           healthchecks: bool = True) -> dict[str, Any]:
    """The compose project (as a dict to dump as YAML) of ``env`` laid out as ``layout``.

    ``root`` is the mesh's directory (configs, certificates, app configs); each container mounts the parts
    of it that it reads, at the same paths (:func:`mounts_of`): never the CA's keys.
    Every image's entrypoint is its program (the official Envoy image's script runs Envoy for arguments
    that start with ``-``, as uid 101 unless ``ENVOY_UID=0``: the keys are 0600), so only arguments are
    given. ``user`` (``UID:GID``) runs every container as the harness's own user, so that what they write
    in the mounted directory (access logs, Prometheus's data) stays the user's to remove; without it they
    run as the images' users (root, or for Prometheus root too: the mount is the user's).

    ``healthchecks`` gives each app a health check (and the gateway waits for them), so that a user's
    ``docker compose up --wait`` returns with the mesh serving. The harness's own mesh has none: it waits
    for every app, Envoy and the gateway itself, and a check is a Python started in every app container
    every second (measured: enough load on two cores to lift a one-second window's median latency from
    ~25 ms to ~107 ms at random moments, which a latency verdict then sees).
    """
    common: dict[str, Any] = {"init": True, "labels": {STATE_LABEL: str(root)}, **({"user": user} if user else {})}
    envoy_common: dict[str, Any] = {**common, "image": images.envoy, "environment": {"ENVOY_UID": "0"}}
    services: dict[str, Any] = {}

    def network(node: str, *aliases: str) -> dict[str, Any]:
        # Two networks: the data plane (what a partition via: network disconnects), and the control network,
        # first in priority so the published ports (admin, app, listeners) and Prometheus's scrapes go
        # through it and still reach an instance cut off from the mesh.
        entry: dict[str, Any] = {"ipv4_address": layout.address(node)}
        if aliases:
            entry["aliases"] = list(aliases)
        return {CONTROL_NETWORK: {"ipv4_address": layout.address(CONTROL_PREFIX + node), "priority": 100},
                MESH_NETWORK: entry}

    toxiproxy_port = layout.toxiproxy_port
    toxiproxy_cmd = ["-host", "0.0.0.0", "-port", str(toxiproxy_port)]  # the real server's; the embedded takes them
    services[TOXIPROXY] = {**common, "image": images.toxiproxy, "command": toxiproxy_cmd,
                           "networks": network(TOXIPROXY), "ports": _publish(toxiproxy_port)}
    for inst in layout.instances:
        node_dir = root / "envoy" / inst.id
        services[sidecar_of(inst.id)] = {
            **envoy_common,
            "command": envoy_args(node_dir / "bootstrap.json", inst.base_id, inst.id, inst.service),
            "volumes": mounts_of(root, inst.id, inst.service),
            "networks": network(inst.id, inst.id),
            "ports": _publish(inst.admin_port, inst.app_port, inst.inbound_port),
        }
        services[container_of(inst.id)] = _app(inst, root, images.demo, common, healthchecks)
    gateway_dir = root / "envoy" / GATEWAY_ID
    services[GATEWAY_ID] = {
        **envoy_common,
        "command": envoy_args(gateway_dir / "bootstrap.json", layout.gateway_base_id, GATEWAY_ID, GATEWAY_ID),
        "volumes": mounts_of(root, GATEWAY_ID, GATEWAY_ID),
        "networks": network(GATEWAY_ID, GATEWAY_ID),
        "ports": _publish(layout.gateway_port, layout.gateway_admin_port),
    }
    if healthchecks:
        # Load enters here: it starts once the instances it calls answer, so `up --wait` means serving.
        services[GATEWAY_ID]["depends_on"] = {container_of(i.id): {"condition": "service_healthy"}
                                              for i in layout.of(env.spec.gateway.service)}
    if prometheus_config is not None and layout.prometheus_port:
        from harness.mesh.local import prometheus as prom

        services[PROMETHEUS] = {
            "user": "0:0", **common, "image": images.prometheus,  # the official image runs as nobody
            "command": prom.argv("prometheus", prometheus_config, layout.prometheus_port, "0.0.0.0")[1:],
            "volumes": [_bind(prometheus_config.parent, writable=True)], "networks": network(PROMETHEUS),
            "ports": _publish(layout.prometheus_port),
        }
    mesh_subnet, control_subnet = subnets(layout)
    labels = {STATE_LABEL: str(root)}  # what `down` finds them by when the compose file is gone
    doc = {"services": services,
           "networks": {MESH_NETWORK: {"driver": "bridge", "labels": labels,
                                       "ipam": {"config": [{"subnet": mesh_subnet}]}},
                        CONTROL_NETWORK: {"driver": "bridge", "labels": labels,
                                          "ipam": {"config": [{"subnet": control_subnet}]}}}}
    # Through JSON: no two services share a dict (YAML would write anchors; an edit would touch both).
    rendered: dict[str, Any] = json.loads(json.dumps(doc))
    return rendered


def _bind(path: Path, writable: bool = False) -> dict[str, Any]:
    return {"type": "bind", "source": str(path), "target": str(path), "read_only": not writable}


UNTRUSTED_DIR = ("certs", "untrusted")
"""Where a ``cert-untrusted`` fault issues its leaves (:mod:`harness.mesh.local.certs`), made at ``up`` so
that it can be mounted."""


def mounts_of(root: Path, node_id: str, leaf: str) -> list[dict[str, Any]]:
    """What one Envoy reads: its own directory (bootstrap, xDS, SDS; writable for its access log), its
    service's leaf and the trust bundle as the local CA publishes them, and the untrusted leaves a fault may
    point it at. Not the CA's own directory: no container holds a key that could issue certificates."""
    return [_bind(root / "envoy" / node_id, writable=True), _bind(root / "pki" / "leaf" / leaf),
            _bind(root / "pki" / "trust"), _bind(root.joinpath(*UNTRUSTED_DIR))]


def _app(inst: Instance, root: Path, image: str, common: dict[str, Any], healthcheck: bool) -> dict[str, Any]:
    """An instance's demo app, in its sidecar's network namespace; healthy once it answers."""
    config = root / "apps" / f"{inst.id}.json"
    probe = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{inst.app_port}/__harness/health', "
             "timeout=1)")
    app: dict[str, Any] = {
        **common,
        "image": image,
        "command": ["-m", "harness.mesh.local.demo_service", "--config", str(config)],
        "network_mode": f"service:{sidecar_of(inst.id)}",
        "depends_on": {sidecar_of(inst.id): {"condition": "service_started"}},
        "volumes": [_bind(root / "apps")],
    }
    if healthcheck:
        app["healthcheck"] = {"test": ["CMD", "python3", "-c", probe], "interval": "1s", "timeout": "2s",
                              "retries": 30, "start_period": "1s"}
    return app

