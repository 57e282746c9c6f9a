"""The plumbing of a toxic chain: chunks, Go-like channels, and the stub each toxic runs in.

Toxiproxy (``stream/io_chan.go``, ``toxics/toxic.go``) moves each read from a socket as a timestamped
chunk through a chain of Go channels; every toxic runs in a "stub" between two channels and can be
*interrupted* so the chain can be rewired while connections stay open. This module is that model in
asyncio, so the toxics (``_toxics.py``) and the rewiring (``_link.py``) read like their Go originals
and behave like them, down to which waits an interrupt may break (reads and sleeps) and which it may not
(writes: a toxic never drops a chunk it holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["TIMED_OUT", "Channel", "Chunk", "Interrupted", "Pipe", "Stub"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Chunk:
    """One read from a socket, with the loop time it was read at (latency is measured from there)."""

    data: bytes
    timestamp: float


class _TimedOut:
    """The type of :data:`TIMED_OUT`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final = _TimedOut()
"""What :meth:`Stub.recv_within` returns when its timeout ran out before a chunk came (Go's ``time.After``)."""


class Interrupted(Exception):
    """The stub was asked to stop its toxic so that the chain can be rewired or the toxic changed.

    An exception rather than a return value because every wait that may be interrupted is deep inside a
    toxic's loop; toxics that hold a chunk catch it, pass the chunk on, and re-raise (Go: "don't drop
    any data on the floor").
    """


class Channel:
    """A bounded FIFO of chunks that can be closed, like a Go ``chan *StreamChunk``.

    Go's unbuffered channel becomes a capacity of 1. After :meth:`close`, readers get the buffered
    chunks and then ``None`` forever (Go's nil from a closed channel); a write to a closed channel is
    dropped (Go would panic: nothing is listening any more). Both waits are cancellation-safe: a
    cancelled :meth:`get` takes nothing and a cancelled :meth:`put` puts nothing.
    """

    __slots__ = ("_buf", "_capacity", "_closed", "_getters", "_putters")

    def __init__(self, capacity: int = 0) -> None:
        self._buf: deque[Chunk] = deque()
        self._capacity = max(1, capacity)
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    @staticmethod
    def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def get(self) -> Chunk | None:
        """The next chunk, or ``None`` once the channel is closed and empty."""
        while not self._buf:
            if self._closed:
                return None
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake(self._getters)  # pass on the wake-up this getter will not use
                raise
        chunk = self._buf.popleft()
        self._wake(self._putters)
        return chunk

    async def put(self, chunk: Chunk) -> None:
        """Append ``chunk``, waiting while the channel is full."""
        while len(self._buf) >= self._capacity and not self._closed:
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake(self._putters)
                raise
        if self._closed:
            return
        self._buf.append(chunk)
        self._wake(self._getters)

    def close(self) -> None:
        """No more chunks will come: wake every reader (they drain, then get ``None``) and writer."""
        if not self._closed:
            self._closed = True
            self._wake_all(self._getters)
            self._wake_all(self._putters)


class Pipe(Protocol):
    """What a stub runs: a toxic's loop from its input to its output (Go's ``Toxic.Pipe``)."""

    async def pipe(self, stub: Stub) -> None: ...


class Stub:
    """Where one toxic of one link runs: between an input and an output channel (Go's ``ToxicStub``).

    :meth:`run` starts a toxic as a task; the caller has already rolled its toxicity (Go rolls on every
    run, so a toxic re-run after a rewire rolls again). :meth:`interrupt` stops the toxic at its next
    read or sleep and reports whether it did (``False``: the stub closed instead).
    """

    __slots__ = ("_interrupt_requested", "_interruptible", "_task", "_took_interrupt", "closed", "input",
                 "output", "state")

    def __init__(self, input: Channel, output: Channel) -> None:
        self.input = input
        self.output = output
        self.state: object = None
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._interrupt_requested = False
        self._interruptible = False
        self._took_interrupt = False

    def run(self, toxic: Pipe) -> None:
        """Start ``toxic`` on this stub, as a task of the running loop."""
        self._interrupt_requested = False
        self._took_interrupt = False
        self._task = asyncio.get_running_loop().create_task(self._run(toxic))

    async def _run(self, toxic: Pipe) -> None:
        try:
            await toxic.pipe(self)
        except Interrupted:
            self._took_interrupt = True
        except Exception:  # a bug in a toxic must end its connection, not leave it hanging silently
            _log.exception("toxic %s failed; closing its stream", type(toxic).__name__)
            self.close()

    def close(self) -> None:
        """Close the output: everything after this stub sees the end of the stream."""
        if not self.closed:
            self.closed = True
            self.output.close()

    def cancel(self) -> None:
        """Tear down: the link is over, stop the task wherever it waits."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()

    async def interrupt(self) -> bool:
        """Stop the running toxic at its next read or sleep; ``False`` if the stub closed instead."""
        task = self._task
        if self.closed or task is None or task.done():
            return False
        self._interrupt_requested = True
        if self._interruptible:
            task.cancel()
        await asyncio.wait([task])
        return self._took_interrupt

    def _check(self) -> None:
        if self._interrupt_requested:
            raise Interrupted

    def _as_interrupt(self, exc: asyncio.CancelledError) -> Interrupted:
        """Turn our own cancellation into :class:`Interrupted`; anyone else's propagates."""
        task = asyncio.current_task()
        if not self._interrupt_requested or task is None:
            raise exc
        task.uncancel()
        return Interrupted()

    async def recv(self) -> Chunk | None:
        """The next input chunk, ``None`` at the end of the stream; interruptible."""
        self._check()
        self._interruptible = True
        try:
            return await self.input.get()
        except asyncio.CancelledError as exc:
            raise self._as_interrupt(exc) from None
        finally:
            self._interruptible = False

    async def recv_within(self, timeout: float) -> Chunk | _TimedOut | None:
        """:meth:`recv`, or :data:`TIMED_OUT` if nothing came within ``timeout`` seconds."""
        self._check()
        self._interruptible = True
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                return await self.input.get()
        except TimeoutError:
            return TIMED_OUT
        except asyncio.CancelledError as exc:
            raise self._as_interrupt(exc) from None
        finally:
            self._interruptible = False

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a negative wait returns at once, as Go's timers do); interruptible."""
        self._check()
        self._interruptible = True
        try:
            await asyncio.sleep(max(seconds, 0.0))
        except asyncio.CancelledError as exc:
            raise self._as_interrupt(exc) from None
        finally:
            self._interruptible = False

    async def send(self, chunk: Chunk) -> None:
        """Pass ``chunk`` on, however long it takes (Go's ``stub.Output <- c``): not interruptible."""
        await self.output.put(chunk)

    async def send_within(self, chunk: Chunk, seconds: float) -> bool:
        """Pass ``chunk`` on unless that takes longer than ``seconds`` (Go's ``WriteOutput``)."""
        try:
            await asyncio.wait_for(self.output.put(chunk), seconds)
        except TimeoutError:
            return False
        return True
