"""Running and talking to a real Consul agent: the binary, the ``-dev`` agent the local mesh runs, and the
few HTTP API calls the driver makes (services, config entries with check-and-set, the Connect CA).

Consul is found as Istio's control plane is (:func:`find_consul`): ``$MESH_HARNESS_CONSUL``, a ``consul`` on
PATH, or the build ``mesh-harness install consul`` left in the cache (Consul v1.16.1, the last release
under an open-source licence; see docs/concepts/consul.md). Every address the local agent binds is
127.0.0.1 and every port is one the layout chose; DNS, HTTPS and gRPC-TLS are switched off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness._errors import MeshError

__all__ = ["AGENT_PORTS", "AgentPorts", "ConsulAPI", "ConsulMissing", "agent_argv", "find_consul",
           "without_consul_variables"]

AGENT_PORTS = ("http", "grpc", "server", "serf_lan", "serf_wan")
"""The agent's ports the layout chooses (in this order); every other listener of the agent is off."""
NODE_NAME = "mesh-harness"
"""The agent's node name: every local workload is registered on it."""


class ConsulMissing(MeshError):
    """No ``consul`` binary was found; the message says how to get one."""


def find_consul() -> str:
    """``$MESH_HARNESS_CONSUL``, else ``consul`` on PATH, else the build ``mesh-harness install consul`` left
    in the cache; ConsulMissing (with how to get one) when there is none."""
    from harness.install import locate  # the install module's Go tooling helpers: only when asked

    return locate("MESH_HARNESS_CONSUL", "consul", "consul", ConsulMissing,
                  "mesh: consul with control_plane: local runs a real Consul agent, and none was found. Build it once "
                  "with: mesh-harness install consul (Go 1.26 and the Go module proxy; a few minutes), or put a consul "
                  "(1.16) on PATH, or set MESH_HARNESS_CONSUL to its path")


def without_consul_variables() -> dict[str, str]:
    """This process's environment without the user's ``CONSUL_*`` variables: the local agent and ``consul connect
    envoy`` must not take a token (it would be written into a bootstrap file), TLS or a namespace meant for
    another datacenter."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}


@dataclass(frozen=True)
class AgentPorts:
    """The local agent's ports, all on 127.0.0.1."""

    http: int
    grpc: int
    server: int
    serf_lan: int
    serf_wan: int

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc}"


def agent_argv(binary: str, ports: AgentPorts, pid_file: Path) -> list[str]:
    """``consul agent -dev`` on 127.0.0.1 only: an in-memory server and client in one, Connect on, its
    built-in CA, ACLs off (default allow; intentions still decide what Envoy's RBAC lets through). The PID
    file, in the mesh's state directory, is also how ``down`` knows the agent as this mesh's own."""
    return [binary, "agent", "-dev", "-node", NODE_NAME, "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-advertise", "127.0.0.1", "-http-port", str(ports.http), "-grpc-port", str(ports.grpc),
            "-grpc-tls-port", "-1", "-https-port", "-1", "-dns-port", "-1", "-server-port", str(ports.server),
            "-serf-lan-port", str(ports.serf_lan), "-serf-wan-port", str(ports.serf_wan), "-log-level", "warn",
            "-disable-host-node-id", "-pid-file", str(pid_file)]


class ConsulAPI:
    """The agent's HTTP API, as the driver uses it. ``token`` is sent as ``X-Consul-Token`` and never logged."""

    def __init__(self, address: str, token: str | None = None, timeout_s: float = 5.0) -> None:
        headers = {"X-Consul-Token": token} if token else {}
        self.address = address.rstrip("/")
        self._http = httpx.Client(base_url=self.address, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _check(self, resp: httpx.Response, what: str) -> httpx.Response:
        if resp.status_code >= 400:
            raise MeshError(f"Consul refused {what} ({resp.status_code}): {resp.text.strip()[:300]}")
        return resp

    def _request(self, method: str, path: str, what: str, *, ok_404: bool = False, **kwargs: Any) -> httpx.Response:
        """One call to the agent; an agent that does not answer (or answers what is not JSON) is a MeshError
        naming it, never a traceback."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MeshError(f"the Consul agent at {self.address} did not answer {what}: {exc}") from None
        if ok_404 and resp.status_code == 404:
            return resp
        return self._check(resp, what)

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, what, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise MeshError(f"the Consul agent at {self.address} answered {what} with no JSON: "
                            f"{resp.text.strip()[:200]}") from None

    def leader(self) -> str:
        """The raft leader's address, "" while there is none."""
        value = self._json("GET", "/v1/status/leader", "the leader query")
        return value if isinstance(value, str) else ""

    def register(self, service: Mapping[str, Any]) -> None:
        """Register a service (with its sidecar) on the agent (``PUT /v1/agent/service/register``)."""
        self._request("PUT", "/v1/agent/service/register", f"registering {service.get('ID')}", json=dict(service))

    def services(self) -> dict[str, Any]:
        """The agent's local services by ID."""
        data: dict[str, Any] = self._json("GET", "/v1/agent/services", "the service list")
        return data

    # -- the catalog (every agent's services, as the datacenter knows them)
    def catalog_connect(self, service: str) -> list[dict[str, Any]]:
        """The Connect-capable instances of ``service`` in the catalog: its sidecar proxies, each with the
        instance it fronts (``ServiceProxy.DestinationServiceID``), its address, port, metadata and proxy
        ``Config``."""
        data: list[dict[str, Any]] = self._json("GET", f"/v1/catalog/connect/{service}",
                                                f"the catalog's sidecars of {service}")
        return data or []

    def catalog_service(self, name: str) -> list[dict[str, Any]]:
        """The instances of one service in the catalog (a gateway's, say)."""
        data: list[dict[str, Any]] = self._json("GET", f"/v1/catalog/service/{name}", f"the catalog's {name}")
        return data or []

    # -- config entries
    def config_entry(self, kind: str, name: str) -> dict[str, Any] | None:
        """One config entry as Consul holds it (with its ``ModifyIndex``), or None when there is none."""
        resp = self._request("GET", f"/v1/config/{kind}/{name}", f"reading {kind}/{name}", ok_404=True)
        if resp.status_code == 404:
            return None
        try:
            data: dict[str, Any] = resp.json()
        except ValueError:
            raise MeshError(f"the Consul agent at {self.address} answered {kind}/{name} with no JSON") from None
        return data

    def config_entries(self, kind: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._json("GET", f"/v1/config/{kind}", f"listing {kind}")
        return data or []

    def put_config_entry(self, entry: Mapping[str, Any], cas: int | None = None) -> bool:
        """Write ``entry``; with ``cas``, only if its ModifyIndex is still ``cas`` (0: only if absent).
        False when the check-and-set lost (someone else wrote it meanwhile)."""
        params = {} if cas is None else {"cas": str(cas)}
        body = {k: v for k, v in entry.items() if k not in ("CreateIndex", "ModifyIndex", "Hash")}
        return self._json("PUT", "/v1/config", f"writing {entry.get('Kind')}/{entry.get('Name')}", json=body,
                          params=params) is True

    def delete_config_entry(self, kind: str, name: str, cas: int | None = None) -> bool:
        """Delete one entry; with ``cas``, only if its ModifyIndex is still ``cas``. False when that lost."""
        params = {} if cas is None else {"cas": str(cas)}
        answer = self._json("DELETE", f"/v1/config/{kind}/{name}", f"deleting {kind}/{name}", params=params)
        return cas is None or answer is True

    # -- the Connect CA
    def agent_leaf(self, service: str) -> dict[str, Any]:
        """The leaf the agent holds for ``service`` (``CertPEM``, ``SerialNumber``), issuing one if none."""
        data: dict[str, Any] = self._json("GET", f"/v1/agent/connect/ca/leaf/{service}", f"the leaf of {service}")
        return data

    def ca_roots(self) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", "/v1/connect/ca/roots", "the CA roots")
        return data

    def ca_configuration(self) -> dict[str, Any]:
        data: dict[str, Any] = self._json("GET", "/v1/connect/ca/configuration", "the CA configuration")
        return data

    def set_ca_configuration(self, config: Mapping[str, Any]) -> None:
        self._request("PUT", "/v1/connect/ca/configuration", "the CA configuration", json=dict(config))
