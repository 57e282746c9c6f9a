"""A gRPC server on a unix socket only its owner can use, run until SIGTERM/SIGINT: the harness's xDS and
SDS servers, both of which serve private keys to the local Envoys."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import grpc

__all__ = ["serve_private"]


async def serve_private(socket_path: Path, add_servicers: Callable[[grpc.aio.Server], None],
                        started: Callable[[], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve on ``socket_path`` (0600 from the moment it is bound) until a signal, or ``stop`` is set;
    ``started`` runs once the server listens. The socket is removed on the way out."""
    server = grpc.aio.server()
    add_servicers(server)
    socket_path.unlink(missing_ok=True)
    mask = os.umask(0o077)  # gRPC binds the socket in add_insecure_port, with the process's umask
    try:
        server.add_insecure_port(f"unix:{socket_path}")
        await server.start()
    finally:
        os.umask(mask)
    os.chmod(socket_path, 0o600)
    if started is not None:
        started()
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0.5)
        with contextlib.suppress(OSError):
            socket_path.unlink()
