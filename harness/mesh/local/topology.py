"""The concrete local mesh an Environment describes: instances, their ports, and the policy in force.

This is pure data, computed once at ``up`` and saved in the state directory, so that every later command
(``status``, ``run``, ``cleanup``) addresses exactly the processes and ports that were started.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.model.environment import Environment

__all__ = ["GATEWAY_ID", "Instance", "Layout", "allocate_ports", "build_layout"]

GATEWAY_ID = "gateway"


@dataclass
class Instance:
    """One replica of one version of a service: a demo app process plus its Envoy sidecar."""

    id: str
    service: str
    version: str
    replica: int
    app_port: int = 0
    inbound_port: int = 0
    admin_port: int = 0
    outbound_ports: dict[str, int] = field(default_factory=dict)
    base_id: int = 0


@dataclass
class Layout:
    """Every instance and port of a running local mesh."""

    instances: list[Instance]
    gateway_port: int
    gateway_admin_port: int
    gateway_base_id: int
    toxiproxy_port: int = 0
    """The API port of the mesh's Toxiproxy server (network faults are interposed through it)."""
    prometheus_port: int = 0
    """The port of the Prometheus the mesh started (``metrics: {source: prometheus}`` without a url); 0: none."""
    bind: str = "127.0.0.1"
    """Where the Envoys' admin, inbound and gateway listeners bind: 127.0.0.1 on the local mesh, where every
    process shares the host's loopback; 0.0.0.0 in containers, each its own network namespace, reached by
    its peers on the mesh network and by the harness through ports published on the host's 127.0.0.1."""
    addresses: dict[str, str] = field(default_factory=dict)
    """Where the Envoys reach an instance's inbound listener, the gateway or the Toxiproxy server (by id:
    an instance id, ``gateway``, ``toxiproxy``); absent: 127.0.0.1 (the local mesh)."""

    def address(self, node_id: str) -> str:
        """The address peers use for ``node_id`` (an instance, ``gateway`` or ``toxiproxy``)."""
        return self.addresses.get(node_id, "127.0.0.1")

    def of(self, service: str, version: str | None = None) -> list[Instance]:
        return [i for i in self.instances if i.service == service and version in (None, i.version)]

    def by_id(self, instance_id: str) -> Instance:
        for inst in self.instances:
            if inst.id == instance_id:
                return inst
        raise KeyError(instance_id)

    def ports(self) -> set[int]:
        """Every port of the layout (instances', gateway's, Toxiproxy's, Prometheus's), 0 left out."""
        out = {self.gateway_port, self.gateway_admin_port, self.toxiproxy_port, self.prometheus_port}
        for i in self.instances:
            out |= {i.app_port, i.inbound_port, i.admin_port, *i.outbound_ports.values()}
        return out - {0}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        return cls(
            instances=[Instance(**i) for i in data["instances"]],
            gateway_port=data["gateway_port"],
            gateway_admin_port=data["gateway_admin_port"],
            gateway_base_id=data["gateway_base_id"],
            toxiproxy_port=data.get("toxiproxy_port", 0),
            prometheus_port=data.get("prometheus_port", 0),
            bind=data.get("bind", "127.0.0.1"),
            addresses=dict(data.get("addresses", {})),
        )


def allocate_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, below the kernel's ephemeral range where it has room.

    Between choosing a port and the process binding it lie up to a few seconds (istiod starts first), and
    a port of the ephemeral range can meanwhile become the source port of any process's outbound
    connection (seen in CI: a demo app's bind failed with "Address already in use"). The kernel never hands
    out a port below that range on its own, so one chosen there stays free unless something binds it on
    purpose. Each is test-bound, and all are held until every one is chosen (no duplicates); where the
    range leaves no room, the kernel picks as before. ``avoid``: ports chosen by an earlier call for the
    same mesh and not bound yet (a test bind cannot see them: seen in CI, istiod's port given to an Envoy).
    """
    low = _ephemeral_low()
    ports: list[int] = []
    with ExitStack() as stack:
        if low - 1 - _LOWEST >= 4 * count:
            for port in random.sample(range(_LOWEST, low), min(low - _LOWEST, 8 * count + 64)):
                if port in avoid:
                    continue
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                ports.append(port)
                if len(ports) == count:
                    return ports
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] not in avoid:
                ports.append(sock.getsockname()[1])
    return ports


_LOWEST = 20000
"""The lowest port chosen: above the registered ports most services listen on."""


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (``net.ipv4.ip_local_port_range``; 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def build_layout(env: Environment, base_id_seed: int, ports_from: int | None = None) -> Layout:
    """Expand services × versions × replicas into instances and give each its ports.

    Ports are free ones the kernel picks, or, with ``ports_from``, consecutive numbers from there: a
    compose project written for users to run must be the same file every time it is generated.
    """
    spec = env.spec
    instances: list[Instance] = []
    for svc in spec.services:
        for version, vspec in svc.versions.items():
            for replica in range(vspec.replicas):
                instances.append(Instance(f"{svc.name}-{version}-{replica}", svc.name, version, replica))
    prometheus = spec.metrics.source == "prometheus" and not spec.metrics.url
    needed = sum(3 + len(spec.service(i.service).calls) for i in instances) + 3 + prometheus
    ports = iter(allocate_ports(needed) if ports_from is None else range(ports_from, ports_from + needed))
    gateway_port = spec.gateway.port or next(ports)
    gateway_admin = next(ports)
    toxiproxy = next(ports)
    for n, inst in enumerate(instances):
        inst.app_port, inst.inbound_port, inst.admin_port = next(ports), next(ports), next(ports)
        inst.outbound_ports = {c.to: next(ports) for c in spec.service(inst.service).calls}
        inst.base_id = base_id_seed + n + 1
    return Layout(instances, gateway_port, gateway_admin, base_id_seed, toxiproxy,
                  next(ports) if prometheus else 0)
