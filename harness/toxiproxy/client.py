"""A Toxiproxy server, driven through the ``toxiproxy-python`` client: the same code for the embedded
server and for a real Toxiproxy (a container in compose, a binary on PATH).

toxiproxy-python keeps the server's address in a class attribute shared by the whole process
(``APIConsumer.host``/``port``), so every call here sets it under a lock first: two meshes (or a mesh and
a test's own server) in one process then never talk to each other's server. Its errors are turned into
:class:`~harness.FaultError` naming the server and the proxy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.server import Toxiproxy

from harness._errors import FaultError

__all__ = ["ToxiproxyClient"]

T = TypeVar("T")
_LOCK = threading.Lock()


class ToxiproxyClient:
    """Proxies and toxics on one Toxiproxy server (``host:port`` of its HTTP API)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server = Toxiproxy()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with _LOCK:
            APIConsumer.host, APIConsumer.port = self.host, self.port
            try:
                return fn()
            except (NotFound, InvalidToxic, ProxyExists) as exc:
                raise FaultError(f"toxiproxy at {self.host}:{self.port} refused to {what}: {exc}") from None
            except requests.RequestException as exc:
                raise FaultError(f"toxiproxy at {self.host}:{self.port} cannot be reached to {what}: {exc}") from None

    def running(self) -> bool:
        return bool(self._call("answer", self._server.running))

    def proxies(self) -> dict[str, dict[str, Any]]:
        """Every proxy by name: ``listen``, ``upstream``, ``enabled``."""
        found = self._call("list proxies", self._server.proxies)
        return {name: {"listen": p.listen, "upstream": p.upstream, "enabled": p.enabled} for name, p in found.items()}

    def ensure_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> str:
        """A proxy ``name`` to ``upstream`` (created if absent, kept if it already goes there); its listen
        address as the server reports it (``127.0.0.1:PORT``)."""
        def run() -> str:
            existing = self._server.get_proxy(name)
            if existing is not None and existing.upstream != upstream:
                existing.destroy()
                existing = None
            if existing is None:
                existing = self._server.create(upstream=upstream, name=name, listen=listen, enabled=True)
            return str(existing.listen)
        return self._call(f"create proxy {name}", run)

    def remove_proxy(self, name: str) -> None:
        """Delete proxy ``name`` (its connections close); absent already is fine."""
        def run() -> None:
            proxy = self._server.get_proxy(name)
            if proxy is not None:
                proxy.destroy()
        self._call(f"delete proxy {name}", run)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable proxy ``name``; disabled, it refuses connections and drops the open ones."""
        def run() -> None:
            proxy = self._server.get_proxy(name)
            if proxy is None:
                raise NotFound(f"no proxy {name}")
            if enabled:
                proxy.enable()
            else:
                proxy.disable()
        self._call(f"{'enable' if enabled else 'disable'} proxy {name}", run)

    def toxics(self, proxy: str) -> dict[str, dict[str, Any]]:
        """The toxics of ``proxy`` by name (an absent proxy has none)."""
        def run() -> dict[str, dict[str, Any]]:
            found = self._server.get_proxy(proxy)
            if found is None:
                return {}
            return {name: {"type": t.type, "stream": t.stream, "toxicity": t.toxicity, "attributes": t.attributes}
                    for name, t in found.toxics().items()}
        return self._call(f"list the toxics of {proxy}", run)

    def set_toxic(self, proxy: str, name: str, toxic_type: str, attributes: dict[str, float],
                  stream: str = "downstream", toxicity: float = 1.0) -> None:
        """Add toxic ``name`` to ``proxy``, replacing one of that name (so a retried apply is harmless).

        A whole number is sent as an integer: every attribute of Toxiproxy's toxics is an int64, and the
        real server refuses ``300.0`` for a latency (the embedded one took it)."""
        attributes = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in attributes.items()}

        def run() -> None:
            found = self._server.get_proxy(proxy)
            if found is None:
                raise NotFound(f"no proxy {proxy}")
            if found.get_toxic(name) is not None:
                found.destroy_toxic(name)
            found.add_toxic(name=name, type=toxic_type, stream=stream, toxicity=toxicity, attributes=attributes)
        self._call(f"add toxic {name} to {proxy}", run)

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove toxic ``name`` from ``proxy``; absent (toxic or proxy) is fine."""
        def run() -> None:
            found = self._server.get_proxy(proxy)
            if found is not None and found.get_toxic(name) is not None:
                found.destroy_toxic(name)
        self._call(f"remove toxic {name} from {proxy}", run)
