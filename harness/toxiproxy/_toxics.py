"""The toxics Toxiproxy 2.12 ships, with the attributes, defaults and timing of its ``toxics/*.go``.

Each class is one Go toxic: its attributes in Go's field order (the API writes them in that order),
and ``pipe``, a line-by-line port of the Go loop (the comments name what differs, which is only where Go
would crash or spin). Units are Toxiproxy's: milliseconds, KB/s (1 KB = 1000 bytes), slicer delays in
microseconds. All randomness comes from the server's ``random.Random`` so tests can seed it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import ClassVar

from harness.toxiproxy._gojson import Field, Float32
from harness.toxiproxy._stream import TIMED_OUT, Chunk, Interrupted, Stub

__all__ = [
    "DOWNSTREAM",
    "NOOP",
    "TOXICS",
    "UPSTREAM",
    "BandwidthToxic",
    "LatencyToxic",
    "LimitDataToxic",
    "NoopToxic",
    "ResetPeerToxic",
    "SlicerToxic",
    "SlowCloseToxic",
    "TimeoutToxic",
    "Toxic",
    "ToxicWrapper",
    "parse_direction",
]

UPSTREAM = 0
"""Client to upstream; Go's ``stream.Upstream`` (its chain is listed first)."""
DOWNSTREAM = 1
"""Upstream back to the client; the default stream of a toxic."""


def parse_direction(stream: str) -> int | None:
    """``upstream`` or ``downstream`` in any case (Go's ``ParseDirection``), else ``None``."""
    return {"upstream": UPSTREAM, "downstream": DOWNSTREAM}.get(stream.lower())


class Toxic:
    """One kind of toxic: its attributes (as instance fields) and the loop that applies it."""

    TYPE: ClassVar[str] = ""
    GO_NAME: ClassVar[str] = ""
    """The Go struct, as it appears in Go's decoding errors."""
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    BUFFER_SIZE: ClassVar[int] = 0
    """Capacity of the channel in front of this toxic (Go's ``BufferedToxic``): latency holds 1024."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        for f in self.FIELDS:
            setattr(self, f.key, 0)

    def attributes(self) -> dict[str, object]:
        """The attributes in Go's field order, as the API shows them."""
        return {f.key: getattr(self, f.key) for f in self.FIELDS}

    def set_attributes(self, values: dict[str, object]) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    def new_state(self) -> object:
        """Per-link state kept across re-runs of the toxic (Go's ``StatefulToxic``); none by default."""
        return None

    def cleanup(self, stub: Stub) -> None:
        """Called when the toxic is removed from a live link (Go's ``CleanupToxic``); nothing by default."""

    async def pipe(self, stub: Stub) -> None:
        raise NotImplementedError


class NoopToxic(Toxic):
    """Pass everything through: the hidden head of every chain, and what a failed toxicity roll runs."""

    TYPE = "noop"
    GO_NAME = "NoopToxic"

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            await stub.send(chunk)


NOOP = NoopToxic()


class LatencyToxic(Toxic):
    """Delay each chunk by ``latency`` ± ``jitter`` ms, measured from when it was read off the socket.

    Chunks are delayed relative to their own read time, not one after another, so a steady stream is
    shifted by the latency rather than slowed down; jitter is uniform over [latency-jitter,
    latency+jitter) and cannot reorder chunks.
    """

    TYPE = "latency"
    GO_NAME = "LatencyToxic"
    FIELDS = (Field("latency", "int64"), Field("jitter", "int64"))
    BUFFER_SIZE = 1024
    latency: int
    jitter: int

    def delay(self) -> float:
        delay = self.latency
        if self.jitter > 0:
            delay += self.rng.randrange(self.jitter * 2) - self.jitter
        return delay / 1000

    async def pipe(self, stub: Stub) -> None:
        loop = asyncio.get_running_loop()
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            sleep = self.delay() - (loop.time() - chunk.timestamp)
            try:
                await stub.sleep(sleep)
            except Interrupted:
                await stub.send(chunk)  # don't drop any data on the floor
                raise
            chunk.timestamp += sleep
            await stub.send(chunk)


class BandwidthToxic(Toxic):
    """Hold the stream to ``rate`` KB/s: chunks are passed on in 100 ms slices of ``rate * 100`` bytes.

    A rate of 0 lets no byte through (Go sends empty slices every 100 ms forever); a negative rate, on
    which Go crashes, behaves as 0 here.
    """

    TYPE = "bandwidth"
    GO_NAME = "BandwidthToxic"
    FIELDS = (Field("rate", "int64"),)
    rate: int

    async def pipe(self, stub: Stub) -> None:
        loop = asyncio.get_running_loop()
        sleep = 0.0
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            rate = max(self.rate, 0)
            sleep = 0.0 if rate <= 0 else sleep + len(chunk.data) / rate / 1000
            data = chunk.data
            while len(data) > rate * 100:
                try:
                    await stub.sleep(0.1)
                except Interrupted:
                    await stub.send_within(Chunk(data, chunk.timestamp), 5.0)
                    raise
                await stub.send(Chunk(data[: rate * 100], chunk.timestamp))
                data = data[rate * 100:]
                sleep -= 0.1
            start = loop.time()
            try:
                await stub.sleep(sleep)
            except Interrupted:
                await stub.send_within(Chunk(data, chunk.timestamp), 5.0)
                raise
            sleep -= loop.time() - start
            await stub.send(Chunk(data, chunk.timestamp))


class SlowCloseToxic(Toxic):
    """Pass data through, but hold the close of the stream back by ``delay`` ms."""

    TYPE = "slow_close"
    GO_NAME = "SlowCloseToxic"
    FIELDS = (Field("delay", "int64"),)
    delay: int

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                await stub.sleep(self.delay / 1000)
                stub.close()
                return
            await stub.send(chunk)


class TimeoutToxic(Toxic):
    """Drop every chunk; close the stream after ``timeout`` ms without data (0: never).

    Removing the toxic closes the stream (Go's ``Cleanup``): that is how a connection held by
    ``timeout: 0`` is released.
    """

    TYPE = "timeout"
    GO_NAME = "TimeoutToxic"
    FIELDS = (Field("timeout", "int64"),)
    timeout: int

    async def pipe(self, stub: Stub) -> None:
        while True:
            if self.timeout > 0:
                chunk = await stub.recv_within(self.timeout / 1000)
            else:
                chunk = await stub.recv()
            if chunk is None or chunk is TIMED_OUT:
                stub.close()
                return

    def cleanup(self, stub: Stub) -> None:
        stub.close()


class ResetPeerToxic(Toxic):
    """On the first chunk (or the end of the stream), wait ``timeout`` ms, then close with a TCP RST.

    The RST itself comes from SO_LINGER 0, which the proxy sets on both sockets of a connection whose
    chain holds a reset_peer toxic when the connection opens, as Go's ``link.Start`` does; a toxic added
    to an open connection closes it with a FIN instead, as in Toxiproxy.
    """

    TYPE = "reset_peer"
    GO_NAME = "ResetToxic"
    FIELDS = (Field("timeout", "int64"),)
    timeout: int

    async def pipe(self, stub: Stub) -> None:
        await stub.recv()
        await asyncio.sleep(max(self.timeout, 0) / 1000)  # not interruptible, as in Go
        stub.close()


@dataclass
class _LimitState:
    transmitted: int = 0


class LimitDataToxic(Toxic):
    """Pass ``bytes`` bytes in total, then close the stream (the count survives re-runs of the toxic)."""

    TYPE = "limit_data"
    GO_NAME = "LimitDataToxic"
    FIELDS = (Field("bytes", "int64"),)
    bytes: int

    def new_state(self) -> object:
        return _LimitState()

    async def pipe(self, stub: Stub) -> None:
        state = stub.state
        assert isinstance(state, _LimitState)
        remaining = self.bytes - state.transmitted
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            remaining = max(remaining, 0)
            if remaining < len(chunk.data):
                chunk = Chunk(chunk.data[:remaining], chunk.timestamp)
            if chunk.data:
                await stub.send(chunk)
                state.transmitted += len(chunk.data)
            remaining = self.bytes - state.transmitted
            if remaining <= 0:
                stub.close()
                return


class SlicerToxic(Toxic):
    """Cut each chunk into pieces of about ``average_size`` ± ``size_variation`` bytes, ``delay`` µs apart.

    Go recurses forever (and crashes) when ``average_size`` is 0 or the variation is not smaller than
    the average; here a piece is never cut below one byte, so those settings give 1-byte pieces.
    """

    TYPE = "slicer"
    GO_NAME = "SlicerToxic"
    FIELDS = (Field("average_size", "int"), Field("size_variation", "int"), Field("delay", "int"))
    average_size: int
    size_variation: int
    delay: int

    def bounds(self, start: int, end: int) -> list[int]:
        """Go's ``chunk``: pairs of [start, end) offsets, halving until a piece is small enough."""
        if (end - start) - self.average_size <= self.size_variation or end - start <= 1:
            return [start, end]
        mid = start + (end - start) // 2
        if self.size_variation > 0:
            mid += self.rng.randrange(self.size_variation * 2) - self.size_variation
        mid = min(max(mid, start + 1), end - 1)
        return self.bounds(start, mid) + self.bounds(mid, end)

    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            cuts = self.bounds(0, len(chunk.data))
            for i in range(1, len(cuts), 2):
                await stub.send(Chunk(chunk.data[cuts[i - 1]:cuts[i]], chunk.timestamp))
                try:
                    await stub.sleep(self.delay / 1_000_000)
                except Interrupted:
                    await stub.send(Chunk(chunk.data[cuts[i]:], chunk.timestamp))
                    raise


TOXICS: dict[str, type[Toxic]] = {
    cls.TYPE: cls
    for cls in (NoopToxic, LatencyToxic, BandwidthToxic, SlowCloseToxic, TimeoutToxic, ResetPeerToxic,
                LimitDataToxic, SlicerToxic)
}
"""Every toxic type the API accepts, by its ``type`` name (``noop`` included, as Toxiproxy registers it)."""


@dataclass
class ToxicWrapper:
    """A toxic as the API knows it: name, stream, toxicity, and its place in its direction's chain."""

    toxic: Toxic
    name: str
    type: str
    stream: str
    toxicity: Float32 = field(default_factory=lambda: Float32(1.0))
    direction: int = DOWNSTREAM
    index: int = 0

    @property
    def buffer_size(self) -> int:
        return self.toxic.BUFFER_SIZE

    def pick(self, rng: random.Random) -> Toxic:
        """The toxic to run for one link: itself with probability ``toxicity``, else a no-op."""
        return self.toxic if rng.random() < self.toxicity else NOOP

    def to_json(self) -> dict[str, object]:
        """Go's ``ToxicWrapper`` JSON, in its field order."""
        return {"attributes": self.toxic.attributes(), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": self.toxicity}
