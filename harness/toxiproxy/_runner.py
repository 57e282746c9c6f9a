"""Running the embedded server: in the foreground (``serve``) or on a thread of its own (``EmbeddedToxiproxy``).

``serve`` is what ``python -m harness.toxiproxy`` and ``mesh-harness toxiproxy-server`` run: it blocks
until SIGINT or SIGTERM, then closes every proxy and connection. ``EmbeddedToxiproxy`` runs the same
server on a background thread with its own event loop, for tests and for the local mesh, so that the
caller (synchronous, or on another loop) drives it over HTTP exactly as it would a real Toxiproxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from harness._errors import MeshError
from harness.toxiproxy._address import format_address
from harness.toxiproxy._api import make_app
from harness.toxiproxy._proxy import ProxyCollection

__all__ = ["DEFAULT_PORT", "EmbeddedToxiproxy", "serve"]

DEFAULT_PORT = 8474
"""Toxiproxy's API port."""

SHUTDOWN_TIMEOUT_S = 2.0
START_TIMEOUT_S = 10.0


async def _run(host: str, port: int, seed: int | None, stop: asyncio.Event,
               ready: Callable[[str, int], None]) -> None:
    """Serve the API on ``host:port`` until ``stop`` is set; ``ready`` gets the address actually bound."""
    app = make_app(ProxyCollection(random.Random(seed)))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise MeshError(f"the Toxiproxy API cannot listen on {format_address(host, port)}: "
                            f"{exc.strerror or exc}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        ready(str(bound_host), int(bound_port))
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, seed: int | None = None) -> None:
    """Run the embedded Toxiproxy API server in the foreground until SIGINT or SIGTERM.

    Raises :class:`~harness._errors.MeshError` if the address cannot be bound.
    """

    def announce(bound_host: str, bound_port: int) -> None:
        print(f"toxiproxy API (embedded) listening on http://{format_address(bound_host, bound_port)}",
              file=sys.stderr, flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _run(host, port, seed, stop, announce)

    asyncio.run(main())


class EmbeddedToxiproxy:
    """The embedded server on a background thread: ``with EmbeddedToxiproxy() as tp: tp.url``.

    ``port=0`` picks a free port; ``seed`` makes toxicity rolls, jitter and slicing reproducible.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The API's base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{format_address(self.host, self.port)}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start serving and return once the API answers; raises MeshError if it cannot listen."""
        if self.running:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="toxiproxy-embedded", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise MeshError(f"the embedded Toxiproxy did not start within {START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to start(), which raises it in the caller's thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def ready(host: str, port: int) -> None:
            self.host, self.port = host, port
            self._ready.set()

        await _run(self.host, self.port, self.seed, self._stop, ready)

    def stop(self, timeout: float = 10.0) -> None:
        """Close every proxy and connection and stop the thread; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
