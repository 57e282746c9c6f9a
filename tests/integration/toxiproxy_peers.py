"""The peers of the Toxiproxy conformance tests: the two servers under test, an echo upstream, and a
small socket client that measures what a toxic does on the wire.

Kept apart from tests/integration/test_toxiproxy_conformance.py so the tests read as expectations only.
Every server binds 127.0.0.1; the real server's process is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness.install import InstallError, install
from harness.toxiproxy import EmbeddedToxiproxy

CLOSE = b"CLOSE"
"""Sent to the echo upstream, makes it close the connection (to see what a proxy does with a close)."""


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                if CLOSE in data:
                    return
                sock.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs under a burst: a 1 s retransmit looks like a toxic


@contextlib.contextmanager
def echo_upstream() -> Iterator[str]:
    """A threaded TCP echo server on 127.0.0.1; yields its ``host:port``."""
    server = _Server(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, name="echo-upstream", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class ApiServer:
    """A Toxiproxy API under test: ``embedded`` or ``real``, where it answers."""

    kind: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_api(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{url}/version", timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def embedded_server() -> Iterator[ApiServer]:
    with EmbeddedToxiproxy(seed=1) as tp:
        yield ApiServer("embedded", tp.host, tp.port)


def real_server_binary() -> Path | str:
    """The Go build of Toxiproxy (built on first use), or the reason it cannot be had."""
    try:
        return install("toxiproxy")
    except InstallError as exc:
        return str(exc)


@contextlib.contextmanager
def real_server(binary: Path, log: Path) -> Iterator[ApiServer]:
    """The real ``toxiproxy-server`` as a child process, stopped by its PID."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(binary), "-host", "127.0.0.1", "-port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_api(f"http://127.0.0.1:{port}")
        yield ApiServer("real", "127.0.0.1", port)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def connect(listen: str, timeout: float = 5.0) -> socket.socket:
    """A client connection to a proxy's ``listen`` address."""
    sock = socket.create_connection(address(listen), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds from sending ``payload`` to having all of it echoed back."""
    start = time.perf_counter()
    sock.sendall(payload)
    received = 0
    while received < len(payload):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {received} of {len(payload)} bytes")
        received += len(data)
    return time.perf_counter() - start


def read_until_closed(sock: socket.socket) -> tuple[bytes, list[int], str]:
    """Everything until the peer closes, the size of each read, and how it ended (``eof`` or ``reset``)."""
    data = bytearray()
    sizes: list[int] = []
    try:
        while chunk := sock.recv(65536):
            data += chunk
            sizes.append(len(chunk))
    except ConnectionResetError:
        return bytes(data), sizes, "reset"
    return bytes(data), sizes, "eof"


def closed_within(sock: socket.socket, seconds: float) -> str | None:
    """``eof`` or ``reset`` if the peer closes within ``seconds`` (data read meanwhile is dropped)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        return "reset"
    return "eof"
