"""Links rewired while they carry data: toxics added, updated and removed reach open connections.

The link reads from an in-memory source and writes to an in-memory sink, so these tests see exactly
what a client would receive, and when, without sockets.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

from harness.toxiproxy._collection import ToxicCollection
from harness.toxiproxy._toxics import DOWNSTREAM


class MemorySource:
    """A source fed by the test; ``end()`` is the peer closing."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def read(self, n: int = -1) -> bytes:
        return await self.queue.get()

    def send(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def end(self) -> None:
        self.queue.put_nowait(b"")


class MemorySink:
    """A sink that records what arrives, when, and whether it was closed."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.received: list[tuple[bytes, float]] = []
        self.closed = asyncio.Event()
        self.arrived = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.received.append((data, self.loop.time()))
        self.arrived.set()

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed.set()

    async def next(self, within: float = 2.0) -> tuple[bytes, float]:
        async with asyncio.timeout(within):
            while not self.received:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received.pop(0)


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


Scenario = Callable[[ToxicCollection, MemorySource, MemorySink], Awaitable[Any]]


def _with_link(scenario: Scenario) -> Any:
    """Run ``scenario`` with a downstream link of a fresh collection between a memory source and sink."""
    async def main() -> Any:
        collection = ToxicCollection(random.Random(3))
        source, sink = MemorySource(), MemorySink()
        done = asyncio.Event()
        collection.start_link(DOWNSTREAM, source, sink, done.set)
        try:
            return await scenario(collection, source, sink)
        finally:
            source.end()
            async with asyncio.timeout(3):
                await done.wait()

    return asyncio.run(asyncio.wait_for(main(), 10))


async def _delay_of(source: MemorySource, sink: MemorySink, data: bytes) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    source.send(data)
    got, at = await sink.next()
    assert got == data
    return at - start


def test_data_passes_in_order_without_toxics() -> None:
    """With no toxic, chunks reach the sink at once and in order."""
    async def scenario(_: ToxicCollection, source: MemorySource, sink: MemorySink) -> list[bytes]:
        for data in (b"a", b"b", b"c"):
            source.send(data)
        return [(await sink.next())[0] for _ in range(3)]

    assert _with_link(scenario) == [b"a", b"b", b"c"]


def test_added_toxic_reaches_the_open_link() -> None:
    """A latency toxic added after the link started delays its next chunk."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> tuple[float, float]:
        before = await _delay_of(source, sink, b"a")
        await collection.add_json(_body(type="latency", attributes={"latency": 120}))
        return before, await _delay_of(source, sink, b"b")

    before, after = _with_link(scenario)
    assert before < 0.05
    assert 0.115 <= after < 0.3


def test_updated_toxic_restarts_with_new_attributes() -> None:
    """Updating a toxic's attributes changes what an open link does."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> float:
        await collection.add_json(_body(type="latency", name="lat", attributes={"latency": 50}))
        await collection.update_json("lat", _body(attributes={"latency": 200}))
        return await _delay_of(source, sink, b"x")

    assert 0.19 <= _with_link(scenario) < 0.4


def test_removed_latency_hands_on_what_it_holds() -> None:
    """Removing a latency toxic delivers the chunk it was holding at once, not after the delay."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> float:
        loop = asyncio.get_running_loop()
        await collection.add_json(_body(type="latency", name="lat", attributes={"latency": 1000}))
        start = loop.time()
        source.send(b"held")
        await asyncio.sleep(0.05)
        await collection.remove("lat")
        got, at = await sink.next()
        assert got == b"held"
        assert await _delay_of(source, sink, b"next") < 0.05
        return at - start

    assert _with_link(scenario) < 0.3


def test_removed_timeout_closes_the_link() -> None:
    """Removing a ``timeout: 0`` toxic releases the held connection by closing it."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> bool:
        await collection.add_json(_body(type="timeout", name="hold", attributes={"timeout": 0}))
        source.send(b"dropped")
        await asyncio.sleep(0.1)
        assert not sink.closed.is_set()
        assert not sink.received
        await collection.remove("hold")
        async with asyncio.timeout(1):
            await sink.closed.wait()
        return not sink.received

    assert _with_link(scenario)


def test_removing_the_middle_of_a_chain_keeps_the_rest() -> None:
    """Of three 40 ms latencies, removing the middle one leaves 80 ms on the open link."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> tuple[float, float]:
        for name in ("l0", "l1", "l2"):
            await collection.add_json(_body(type="latency", name=name, attributes={"latency": 40}))
        three = await _delay_of(source, sink, b"a")
        await collection.remove("l1")
        return three, await _delay_of(source, sink, b"b")

    three, two = _with_link(scenario)
    assert 0.115 <= three < 0.25
    assert 0.075 <= two < 0.16


def test_reset_removes_every_toxic() -> None:
    """``reset`` empties both chains and open links run toxic-free again."""
    async def scenario(collection: ToxicCollection, source: MemorySource, sink: MemorySink) -> float:
        await collection.add_json(_body(type="latency", attributes={"latency": 300}))
        await collection.add_json(_body(type="latency", stream="upstream", attributes={"latency": 300}))
        await collection.reset()
        assert collection.toxics() == []
        return await _delay_of(source, sink, b"a")

    assert _with_link(scenario) < 0.05


def test_end_of_source_closes_the_sink() -> None:
    """When the source ends, the sink is closed and the link leaves the collection."""
    async def main() -> tuple[bool, int]:
        collection = ToxicCollection(random.Random(1))
        source, sink = MemorySource(), MemorySink()
        done = asyncio.Event()
        collection.start_link(DOWNSTREAM, source, sink, done.set)
        source.end()
        async with asyncio.timeout(1):
            await done.wait()
        return sink.closed.is_set(), len(collection.links)

    assert asyncio.run(asyncio.wait_for(main(), 10)) == (True, 0)


def test_toxic_added_after_end_does_not_hang() -> None:
    """Adding a toxic while links are closing neither hangs nor fails."""
    async def main() -> int:
        collection = ToxicCollection(random.Random(1))
        source, sink = MemorySource(), MemorySink()
        collection.start_link(DOWNSTREAM, source, sink, lambda: None)
        source.end()
        async with asyncio.timeout(1):
            await collection.add_json(_body(type="latency", attributes={"latency": 10}))
        return len(collection.toxics())

    assert asyncio.run(asyncio.wait_for(main(), 10)) == 1
