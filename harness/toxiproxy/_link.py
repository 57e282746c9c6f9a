"""One direction of one proxied connection: socket → chain of toxic stubs → socket (Go's ``link.go``).

A link is built from its direction's chain as it stands when the connection opens, and is then
rewired in place when a toxic is added, updated or removed, so a change reaches open connections the
way it does in Toxiproxy: an added toxic goes to the end of the chain, an updated one restarts with its
new attributes (and a new toxicity roll), a removed one hands on what it holds — except a toxic with a
cleanup (``timeout``), whose removal closes the stream instead.

The socket ends are protocols so that tests can drive a link with in-memory streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from harness.toxiproxy._stream import Channel, Chunk, Stub
from harness.toxiproxy._toxics import ToxicWrapper

__all__ = ["READ_SIZE", "Link", "Sink", "Source"]

READ_SIZE = 32 * 1024
"""Bytes per socket read: Go's ``io.Copy`` buffer, so chunks (and so slicer and latency) match."""


class Source(Protocol):
    """Where a link reads from (an ``asyncio.StreamReader``)."""

    async def read(self, n: int = -1) -> bytes: ...


class Sink(Protocol):
    """Where a link writes to (an ``asyncio.StreamWriter``)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class Link:
    """The chain of stubs of one direction of one connection, and the tasks that feed and drain it."""

    def __init__(self, chain: Sequence[ToxicWrapper], direction: int, rng: random.Random) -> None:
        self.direction = direction
        self.rng = rng
        self.input = Channel()
        self.stubs: list[Stub] = []
        self.done = False
        last = self.input
        for i in range(len(chain)):
            following = Channel(chain[i + 1].buffer_size) if i + 1 < len(chain) else Channel()
            self.stubs.append(Stub(last, following))
            last = following
        self.output = last
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, chain: Sequence[ToxicWrapper], source: Source, sink: Sink,
              on_done: Callable[[Link], None]) -> None:
        """Run the chain between ``source`` and ``sink``; ``on_done`` once the sink has been closed."""
        loop = asyncio.get_running_loop()
        for stub, wrapper in zip(self.stubs, chain, strict=True):
            stub.state = wrapper.toxic.new_state()
            stub.run(wrapper.pick(self.rng))
        self._tasks = [loop.create_task(self._read(source)), loop.create_task(self._write(sink, on_done))]

    async def _read(self, source: Source) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await source.read(READ_SIZE)
                if not data:
                    break
                await self.input.put(Chunk(data, loop.time()))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.input.close()

    async def _write(self, sink: Sink, on_done: Callable[[Link], None]) -> None:
        try:
            while True:
                chunk = await self.output.get()
                if chunk is None:
                    break
                sink.write(chunk.data)
                await sink.drain()
        except (OSError, RuntimeError):
            pass  # the peer went away, or the transport was closed under us: the link is over either way
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                sink.close()
            self.teardown()
            on_done(self)

    def teardown(self) -> None:
        """The link is over: stop every task, so that nothing waits on channels no one drains."""
        self.done = True
        for stub in self.stubs:
            stub.cancel()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def add_toxic(self, chain: Sequence[ToxicWrapper], wrapper: ToxicWrapper) -> None:
        """Append ``wrapper`` (already last in ``chain``) behind the current last stub."""
        i = len(self.stubs)
        if self.done or i != len(chain) - 1:
            return
        new_input = Channel(wrapper.buffer_size)
        stub = Stub(new_input, self.stubs[i - 1].output)
        self.stubs.append(stub)
        if await self.stubs[i - 1].interrupt():
            self.stubs[i - 1].output = new_input
            stub.state = wrapper.toxic.new_state()
            stub.run(wrapper.pick(self.rng))
            self.stubs[i - 1].run(chain[i - 1].pick(self.rng))
        else:
            stub.output = new_input  # the stream already ended: end this stub too
            stub.close()

    async def update_toxic(self, wrapper: ToxicWrapper) -> None:
        """Restart the stub of ``wrapper`` with its new attributes (and a new toxicity roll)."""
        if self.done or wrapper.index >= len(self.stubs):
            return
        stub = self.stubs[wrapper.index]
        if await stub.interrupt():
            stub.run(wrapper.pick(self.rng))

    async def remove_toxic(self, chain: Sequence[ToxicWrapper], wrapper: ToxicWrapper, index: int) -> None:
        """Take the stub at ``index`` out, handing on what it holds; ``chain`` is the chain without it."""
        if self.done or not 0 < index < len(self.stubs):
            return
        stub = self.stubs[index]
        if not await stub.interrupt():
            return
        wrapper.toxic.cleanup(stub)
        if stub.closed:
            del self.stubs[index]  # Go leaves it in place; dropping it keeps later indexes aligned
            return
        previous = self.stubs[index - 1]
        if not await self._drain_while_interrupting(stub, previous):
            return
        while len(stub.input):  # empty the toxic's buffer
            chunk = await stub.input.get()
            if chunk is None:
                stub.close()
                return
            await stub.send_within(chunk, 5.0)
        previous.output = stub.output
        del self.stubs[index]
        previous.run(chain[index - 1].pick(self.rng))

    @staticmethod
    async def _drain_while_interrupting(stub: Stub, previous: Stub) -> bool:
        """Interrupt ``previous`` while passing on what it writes to ``stub`` (it may be blocked on that).

        ``False`` if the stream ended meanwhile (``stub`` is then closed and nothing is left to rewire).
        """
        interrupting = asyncio.ensure_future(previous.interrupt())
        interrupted = False
        while not interrupted:
            getter = asyncio.ensure_future(stub.input.get())
            done, _ = await asyncio.wait({interrupting, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                await asyncio.wait({getter})
            if getter.done() and not getter.cancelled():
                chunk = getter.result()
                if chunk is None:
                    stub.close()
                    await interrupting
                    return False
                await stub.send_within(chunk, 5.0)
            if interrupting.done():
                interrupted = interrupting.result()
                if not interrupted:
                    # previous closed instead: pass everything on until the stream's end comes through
                    while (chunk := await stub.input.get()) is not None:
                        await stub.send_within(chunk, 5.0)
                    stub.close()
                    return False
        return True
