"""``consul.control_plane: cluster``: an existing Consul datacenter, through its HTTP API alone.

The harness starts nothing in a datacenter and runs none of its workloads. What it changes there is config
entries (splitters, routers, service-defaults, intentions), written with check-and-set and restored exactly,
as with the local agent; everything else it reads:

* the **topology** from the catalog: each service's Connect sidecars (``/v1/catalog/connect/<service>``), the
  instance each fronts, its version from the instance's ``version`` metadata (which the sidecar inherits, and
  which resolver subsets filter on), and the ingress gateways whose listeners route to the environment's
  gateway service;
* the **signals** from the datacenter's Prometheus (``metrics.url``), which must scrape each sidecar's Envoy
  at the address Consul's ``envoy_prometheus_bind_addr`` opens (in the sidecar's proxy ``Config`` or in the
  global ``proxy-defaults``), with ``instance="<address>:<port>"``: a wildcard bind address stands for the
  sidecar's own address.

A change's push cannot be watched without the sidecars' admin endpoints (not reachable from outside a
datacenter), so a written entry is given :data:`PUSH_SETTLE_S` to reach them, as ``istio.control_plane:
cluster`` gives istiod's.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from harness._errors import MeshError
from harness.mesh.base import GATEWAY
from harness.mesh.consul.agent import ConsulAPI
from harness.mesh.local.topology import GATEWAY_ID
from harness.model.environment import ConsulSettings, Environment

__all__ = ["PROMETHEUS_BIND", "PUSH_SETTLE_S", "Sidecar", "gateways_of", "metrics_address", "sidecars", "token"]

PUSH_SETTLE_S = 2.0
"""How long a config entry written to a datacenter is given to reach its sidecars (Consul's servers push it
over xDS; see docs/concepts/consul.md for what was measured on the local agent)."""
PROMETHEUS_BIND = "envoy_prometheus_bind_addr"
"""Consul's proxy ``Config`` key that makes ``consul connect envoy`` open Envoy's Prometheus endpoint."""
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True)
class Sidecar:
    """One Envoy of the datacenter the harness reads: an instance's sidecar, or an ingress gateway."""

    id: str
    """The node id: the instance's service ID (``<node>/<ID>`` where two agents use one ID); the gateway's is
    ``gateway`` (``gateway-2``... for further instances)."""
    service: str
    version: str
    metrics: str | None
    """The ``instance`` label Prometheus gives its scrape target (None: it opens no Prometheus endpoint)."""
    public_port: int
    """Its public listener's port (where mTLS from its callers ends)."""


def token(settings: ConsulSettings | None) -> str | None:
    """The ACL token from the variable ``token_env`` names (never from the file); MeshError when it is named
    and not set, rather than acting anonymously."""
    if settings is None or not settings.token_env:
        return None
    value = os.environ.get(settings.token_env, "")
    if not value:
        raise MeshError(f"consul.token_env names {settings.token_env}, which is not set: export the ACL token the "
                        f"harness acts with as {settings.token_env}, or remove token_env for a datacenter without "
                        "ACLs")
    return value


def metrics_address(entry: dict[str, Any], default_bind: str | None) -> str | None:
    """Where Prometheus scrapes one catalog entry's Envoy: its ``envoy_prometheus_bind_addr`` (the entry's own,
    else the global proxy-defaults'), a wildcard host replaced by the entry's address."""
    config = (entry.get("ServiceProxy") or {}).get("Config") or {}
    bind = config.get(PROMETHEUS_BIND) or default_bind
    if not bind:
        return None
    host, _, port = str(bind).rpartition(":")
    if host in _WILDCARDS:
        host = str(entry.get("ServiceAddress") or entry.get("Address") or "")
    return f"{host}:{port}" if host and port.isdigit() else None


def _default_bind(api: ConsulAPI) -> str | None:
    defaults = api.config_entry("proxy-defaults", "global") or {}
    bind = (defaults.get("Config") or {}).get(PROMETHEUS_BIND)
    return str(bind) if bind else None


def gateways_of(api: ConsulAPI, service: str) -> list[str]:
    """The ingress gateways with a listener for ``service``, by name."""
    out = []
    for entry in api.config_entries("ingress-gateway"):
        listeners = entry.get("Listeners") or []
        if any(s.get("Name") == service for listener in listeners for s in listener.get("Services") or []):
            out.append(str(entry["Name"]))
    return sorted(out)


def sidecars(api: ConsulAPI, env: Environment) -> list[Sidecar]:
    """Every sidecar of the environment's services in the catalog, and every ingress gateway routing to its
    gateway service. MeshError naming what is missing: a version with no instance, an instance whose version
    is not the environment's."""
    default_bind = _default_bind(api)
    found: list[tuple[dict[str, Any], str, str]] = []
    problems: list[str] = []
    for svc in env.spec.services:
        seen: set[str] = set()
        for entry in api.catalog_connect(svc.name):
            if entry.get("ServiceKind") != "connect-proxy":
                continue  # a natively integrated app: no Envoy of its own to read
            meta = entry.get("ServiceMeta") or {}
            version = meta.get("version") or (next(iter(svc.versions)) if len(svc.versions) == 1 else "")
            if version not in svc.versions:
                problems.append(f"the sidecar {entry.get('ServiceID')} of {svc.name} has "
                                + (f"version {version!r}" if version else "no version metadata")
                                + f" (the environment declares {', '.join(svc.versions)}); register its instance "
                                  "with Meta {version: ...}")
                continue
            seen.add(version)
            found.append((entry, svc.name, version))
        problems += [f"no sidecar of {svc.name} {v} in the catalog" for v in svc.versions if v not in seen]
    if problems:
        raise MeshError("the datacenter's catalog does not hold the environment's topology: " + "; ".join(problems))
    ids = Counter(_instance_id(e) for e, _, _ in found)
    out = [Sidecar(_instance_id(e) if ids[_instance_id(e)] == 1 else f"{e.get('Node')}/{_instance_id(e)}", service,
                   version, metrics_address(e, default_bind), int(e.get("ServicePort") or 0))
           for e, service, version in found]
    gateways = [e for name in gateways_of(api, env.spec.gateway.service) for e in api.catalog_service(name)]
    for n, entry in enumerate(gateways):
        out.append(Sidecar(GATEWAY_ID if n == 0 else f"{GATEWAY_ID}-{n + 1}", GATEWAY, GATEWAY,
                           metrics_address(entry, default_bind), int(entry.get("ServicePort") or 0)))
    return sorted(out, key=lambda s: (s.service != GATEWAY, s.id))


def _instance_id(entry: dict[str, Any]) -> str:
    return str((entry.get("ServiceProxy") or {}).get("DestinationServiceID") or entry.get("ServiceID"))
