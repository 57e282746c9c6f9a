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

A change's push is watched through that Prometheus (:class:`PushWatch`): the sidecars' admin endpoints are
not reachable from outside a datacenter, and their Envoys' own counters of accepted xDS updates and of
draining listeners are.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from harness._errors import FaultError, MeshError
from harness.mesh.base import GATEWAY
from harness.mesh.consul.agent import ConsulAPI
from harness.mesh.local.topology import GATEWAY_ID
from harness.metrics.prometheus import prometheus_client, regex_literal
from harness.model.environment import ConsulSettings, Environment

__all__ = ["PROMETHEUS_BIND", "PUSH_SETTLE_S", "PUSH_TIMEOUT_S", "PushWatch", "Sidecar", "gateways_of",
           "metrics_address", "sidecars", "token"]

PUSH_SETTLE_S = 2.0
"""How long a config entry written to a datacenter is given to reach its sidecars when none of them it concerns
is scraped by the datacenter's Prometheus (a change with nothing to watch)."""
PUSH_TIMEOUT_S = 10.0
"""How long a change may take to show in every watched sidecar (at least three scrape intervals)."""
PROMETHEUS_BIND = "envoy_prometheus_bind_addr"
"""Consul's proxy ``Config`` key that makes ``consul connect envoy`` open Envoy's Prometheus endpoint."""
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
_TOKEN = re.compile(r"[\x21-\x7e]+")


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
    listener_ports: frozenset[int] = frozenset()
    """A gateway's: the ports of its listeners that route to the environment's gateway service."""


def token(settings: ConsulSettings | None) -> str | None:
    """The ACL token from the variable ``token_env`` names (never from the file); MeshError when it is named
    and not set, rather than acting anonymously."""
    if settings is None or not settings.token_env:
        return None
    value = os.environ.get(settings.token_env, "").strip()
    if not value:
        raise MeshError(f"consul.token_env names {settings.token_env}, which is not set: export the ACL token the "
                        f"harness acts with as {settings.token_env}, or remove token_env for a datacenter without "
                        "ACLs")
    if not _TOKEN.fullmatch(value):  # never echoed: an HTTP library's complaint about a header would quote it
        raise MeshError(f"the ACL token in {settings.token_env} holds characters no HTTP header can carry (a token "
                        "is printable ASCII without spaces); set it again")
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
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address, as Prometheus writes it in instance=
    return f"{host}:{port}" if host and port.isdigit() else None


def _default_bind(api: ConsulAPI) -> str | None:
    defaults = api.config_entry("proxy-defaults", "global") or {}
    bind = (defaults.get("Config") or {}).get(PROMETHEUS_BIND)
    return str(bind) if bind else None


def gateways_of(api: ConsulAPI, service: str) -> dict[str, set[int]]:
    """The ingress gateways with a listener for ``service``, by name, with the ports of those listeners (a
    gateway shared with other services has listeners whose traffic is not the environment's)."""
    out: dict[str, set[int]] = {}
    for entry in api.config_entries("ingress-gateway"):
        for listener in entry.get("Listeners") or []:
            if any(s.get("Name") == service for s in listener.get("Services") or []):
                out.setdefault(str(entry["Name"]), set()).add(int(listener.get("Port") or 0))
    return dict(sorted(out.items()))


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
    gateways = [(e, ports) for name, ports in gateways_of(api, env.spec.gateway.service).items()
                for e in api.catalog_service(name)]
    taken = {s.id for s in out}
    for n, (entry, ports) in enumerate(gateways):
        node_id = GATEWAY_ID if n == 0 else f"{GATEWAY_ID}-{n + 1}"
        out.append(Sidecar(node_id if node_id not in taken else f"{node_id}@{entry.get('Node')}", GATEWAY, GATEWAY,
                           metrics_address(entry, default_bind), int(entry.get("ServicePort") or 0),
                           frozenset(ports)))
    shared = [m for m, count in Counter(s.metrics for s in out if s.metrics).items() if count > 1]
    if shared:
        raise MeshError(f"several sidecars of the datacenter name one Prometheus endpoint ({', '.join(shared)}): "
                        "their counters could not be told apart; give each its own envoy_prometheus_bind_addr "
                        "address or port")
    return sorted(out, key=lambda s: (s.service != GATEWAY, s.id))


_MARKS = ('{{__name__=~"envoy_cluster_manager_cds_update_success|envoy_listener_manager_lds_update_success'
          '|envoy_http_rds(_.+)?_update_success",{targets}}}')
"""Every xDS update a sidecar's Envoy accepted (clusters, listeners, routes): a change is there once it moved."""
_DRAINING = '{{__name__=~"envoy_listener_manager_total_(filter_chains|listeners)_draining",{targets}}}'
"""Listeners and filter chains an update replaced that still hold connections."""


class PushWatch:
    """Whether a change written to a datacenter has reached its sidecars, seen through its Prometheus: every
    watched sidecar's Envoy has accepted an xDS update since (the local agent's are watched the same way, on
    their admin endpoints), and nothing it replaced is still draining. An intention replaces the callee's public
    listener, and connections opened before it stay on the old one until they have drained (for the Envoys'
    ``--drain-time-s``): until then the change is not in force for them, and a window would judge a mixture."""

    def __init__(self, url: str, instances: dict[str, str], interval_s: float) -> None:
        self.instances = instances
        """Per node id, the ``instance`` label Prometheus gives its sidecar."""
        self.timeout_s = max(PUSH_TIMEOUT_S, 3 * interval_s + 2.0)
        self._prom = prometheus_client(url)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._prom.close()

    def _per_node(self, selector: str, nodes: list[str]) -> dict[str, float]:
        by_instance = {self.instances[n]: n for n in nodes if n in self.instances}
        if not by_instance:
            return {}
        targets = f'instance=~"{"|".join(regex_literal(i) for i in by_instance)}"'
        try:
            answer = self._prom.custom_query(f"sum by (instance) ({selector.format(targets=targets)})")
        except Exception as exc:  # whatever the client raises: the change's activation cannot be confirmed
            raise FaultError(f"the datacenter's Prometheus did not answer ({type(exc).__name__}: {exc}): whether "
                             "the change reached the sidecars cannot be seen") from None
        out: dict[str, float] = {}
        for item in answer or []:
            node = by_instance.get(str(item.get("metric", {}).get("instance", "")))
            if node is not None:
                out[node] = float(item["value"][1])
        return out

    def marks(self, nodes: list[str]) -> dict[str, float]:
        """Per watched node Prometheus scrapes, its count of accepted updates now."""
        return self._per_node(_MARKS, nodes)

    def wait(self, before: dict[str, float]) -> None:
        """Until every node of ``before`` has accepted an update since and drains nothing; FaultError naming
        those that have not within :attr:`timeout_s`. A query Prometheus fails is asked again until then (an
        undo is not reported undone for a moment's outage of its Prometheus)."""
        deadline = time.monotonic() + self.timeout_s
        pending = dict(before)
        moved: set[str] = set()
        failed: FaultError | None = None
        while True:
            try:
                now = self.marks(list(pending))
                draining = self._per_node(_DRAINING, list(pending))
            except FaultError as exc:
                failed = exc
            else:
                failed = None
                moved |= {node for node, mark in pending.items() if now.get(node, mark) > mark}
                for node in moved & set(pending):
                    if draining.get(node, 0.0) == 0.0:
                        del pending[node]
            if not pending:
                return
            if time.monotonic() > deadline:
                stuck = sorted(set(pending) - moved)
                if failed is not None:
                    raise failed
                if stuck:
                    raise FaultError(f"the change did not reach {', '.join(stuck)} within {self.timeout_s:g}s "
                                     "(no xDS update accepted, as the datacenter's Prometheus sees them)")
                raise FaultError(f"{', '.join(sorted(pending))} still drain the connections the change's listeners "
                                 f"replaced after {self.timeout_s:g}s: requests on them would not meet the change "
                                 "(the Envoys' --drain-time-s; Envoy's default is 600s)")
            time.sleep(0.2)


def _instance_id(entry: dict[str, Any]) -> str:
    return str((entry.get("ServiceProxy") or {}).get("DestinationServiceID") or entry.get("ServiceID"))
