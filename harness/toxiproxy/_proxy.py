"""Proxies: a listener that pairs each client with an upstream connection (Go's ``proxy.go`` and
``proxy_collection.go``).

As in Toxiproxy, the upstream is dialled as soon as a client connects (a failed dial closes the client),
each connection gets two links (client → upstream is the ``upstream`` stream), and disabling a proxy
closes its listener and every open connection. Changing ``listen`` or ``upstream`` restarts the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct

from harness.toxiproxy._address import AddressError, format_address, resolve, split_host_port
from harness.toxiproxy._collection import ToxicCollection
from harness.toxiproxy._gojson import (
    BAD_REQUEST_BODY,
    MISSING_FIELD,
    PROXY_ALREADY_EXISTS,
    PROXY_NOT_FOUND,
    ApiError,
    Field,
    JsonObject,
    decode_body,
    decode_fields,
    kind_of,
)
from harness.toxiproxy._toxics import DOWNSTREAM, UPSTREAM

__all__ = ["PROXY_FIELDS", "AlreadyStarted", "Proxy", "ProxyCollection"]

PROXY_FIELDS = (Field("name", "string"), Field("listen", "string"), Field("upstream", "string"),
                Field("enabled", "bool"))
POPULATE_ITEM = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
LISTEN_BACKLOG = 1024


class AlreadyStarted(Exception):
    """``start`` on a proxy that is already listening (Go's ``ErrProxyAlreadyStarted``)."""


def _strerror(exc: OSError) -> str:
    """Go's lower-case errno text: ``address already in use``."""
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return text.lower()


def _linger_zero(writer: asyncio.StreamWriter) -> None:
    """Make the socket's close an RST (what ``reset_peer`` needs), as Go's ``SetLinger(0)``."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Proxy:
    """One named proxy: where it listens, where it forwards, its toxics and its open connections."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics = ToxicCollection(rng)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._lock = asyncio.Lock()

    def to_json(self) -> dict[str, object]:
        """Go's JSON of a proxy with its toxics; ``Logger`` is an empty object there too (a Go field
        exported by mistake), kept so that both servers answer byte for byte alike."""
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "Logger": {}, "toxics": [w.to_json() for w in self.toxics.toxics()]}

    async def start(self) -> None:
        """Listen; raises :class:`AlreadyStarted`, or a 500 :class:`ApiError` with Go's ``listen tcp`` text."""
        async with self._lock:
            await self._start()

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        async with self._lock:
            self._stop()

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Apply ``POST /proxies/{name}``: restart on a new address, then enable or disable as asked."""
        async with self._lock:
            try:
                resolved = format_address(*resolve(listen))
            except AddressError as exc:
                raise ApiError(str(exc), 500) from None
            if self.listen != resolved or self.upstream != upstream:
                self._stop()
                self.listen = listen
                self.upstream = upstream
            if enabled != self.enabled:
                if enabled:
                    await self._start()
                else:
                    self._stop()

    def differs(self, listen: str, upstream: str) -> bool:
        """Whether ``/populate`` must replace this proxy (Go's ``Differs``: resolved listen or upstream)."""
        try:
            resolved = format_address(*resolve(listen))
        except AddressError as exc:
            raise ApiError(str(exc), 500) from None
        return self.listen != resolved or self.upstream != upstream

    async def _start(self) -> None:
        if self.enabled:
            raise AlreadyStarted(self.name)
        try:
            host, port = resolve(self.listen)
        except AddressError as exc:
            raise ApiError(f"listen tcp: {exc}", 500) from None
        try:
            server = await asyncio.start_server(self._accept, host, port, backlog=LISTEN_BACKLOG,
                                                reuse_address=True)
        except OSError as exc:
            raise ApiError(f"listen tcp {format_address(host, port)}: bind: {_strerror(exc)}", 500) from None
        ip, bound = server.sockets[0].getsockname()[:2]
        self.listen = format_address(str(ip), int(bound))
        self._server = server
        self.enabled = True

    def _stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.transport.abort()  # Go's Close: unsent data is not waited for
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A client connected: dial the upstream, then wire the two links between them."""
        server = self._server
        try:
            host, port = split_host_port(self.upstream)
            up_reader, up_writer = await asyncio.open_connection(host or "127.0.0.1", int(port or 0))
        except (OSError, AddressError, ValueError):
            writer.close()
            return
        if not self.enabled or self._server is not server:  # disabled or restarted while dialling
            writer.close()
            up_writer.close()
            return
        if self.toxics.has_reset_peer():
            _linger_zero(writer)
            _linger_zero(up_writer)
        self._connections.update((writer, up_writer))
        self.toxics.start_link(UPSTREAM, reader, up_writer, lambda: self._connections.discard(up_writer))
        self.toxics.start_link(DOWNSTREAM, up_reader, writer, lambda: self._connections.discard(writer))


class ProxyCollection:
    """Every proxy by name, with Go's rules for adding, replacing and removing them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()

    def new(self, name: str, listen: str, upstream: str) -> Proxy:
        return Proxy(name, listen, upstream, self.rng)

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    async def add(self, proxy: Proxy, start: bool) -> None:
        """Add a new proxy (409 if the name is taken), listening first if ``start``."""
        async with self._lock:
            if proxy.name in self.proxies:
                raise PROXY_ALREADY_EXISTS
            if start:
                await proxy.start()
            self.proxies[proxy.name] = proxy

    async def add_or_replace(self, proxy: Proxy, start: bool) -> Proxy:
        """``/populate``'s rule: keep a same-named proxy unless its listen or upstream differ."""
        async with self._lock:
            existing = self.proxies.get(proxy.name)
            if existing is not None:
                if not existing.differs(proxy.listen, proxy.upstream):
                    return existing
                await existing.stop()
            if start:
                await proxy.start()
            self.proxies[proxy.name] = proxy
            return proxy

    async def remove(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            await proxy.stop()
            proxy.toxics.close_links()
            del self.proxies[name]

    async def clear(self) -> None:
        """Stop and forget every proxy (server shutdown)."""
        for name in list(self.proxies):
            await self.remove(name)

    async def populate_json(self, body: bytes) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace a list of proxies; what was done before an error is kept and reported."""
        try:
            items = decode_body(body)
        except ApiError as exc:
            return [], exc
        if not isinstance(items, list) or isinstance(items, JsonObject):
            if items is None:
                return [], None
            detail = f"json: cannot unmarshal {kind_of(items)} into Go value of type []{POPULATE_ITEM}"
            return [], BAD_REQUEST_BODY.joined(detail)
        parsed: list[dict[str, object]] = []
        for i, raw in enumerate(items, start=1):
            item = JsonObject() if raw is None else raw
            if not isinstance(item, JsonObject):
                detail = f"json: cannot unmarshal {kind_of(item)} into Go value of type {POPULATE_ITEM}"
                return [], BAD_REQUEST_BODY.joined(detail)
            values, error = decode_fields(item, PROXY_FIELDS, "Proxy")
            if error:
                return [], BAD_REQUEST_BODY.joined(error)
            if not values.get("name"):
                return [], MISSING_FIELD.joined(f"name at proxy {i}")
            if not values.get("upstream"):
                return [], MISSING_FIELD.joined(f"upstream at proxy {i}")
            parsed.append(values)
        done: list[Proxy] = []
        for values in parsed:
            proxy = self.new(str(values["name"]), str(values.get("listen", "")), str(values["upstream"]))
            try:
                done.append(await self.add_or_replace(proxy, bool(values.get("enabled", True))))
            except ApiError as exc:
                return done, exc
        return done, None
