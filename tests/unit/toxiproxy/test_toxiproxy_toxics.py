"""Each toxic's loop on in-memory channels: what it passes on, when, and when it closes the stream."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Coroutine
from typing import Any

import pytest

from harness.toxiproxy._gojson import Float32
from harness.toxiproxy._stream import Channel, Chunk, Stub
from harness.toxiproxy._toxics import (
    NOOP,
    TOXICS,
    BandwidthToxic,
    LatencyToxic,
    LimitDataToxic,
    ResetPeerToxic,
    SlicerToxic,
    SlowCloseToxic,
    TimeoutToxic,
    Toxic,
    ToxicWrapper,
    parse_direction,
)

Received = list[tuple[bytes, float]]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a scenario; a toxic that wrongly holds the stream fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coro, 10))


def _toxic(cls: type[Toxic], seed: int = 1, **attributes: int) -> Toxic:
    toxic = cls(random.Random(seed))
    toxic.set_attributes(dict(attributes))
    return toxic


async def _through(toxic: Toxic, feed: list[bytes], close: bool = True, within: float = 3.0) -> tuple[Received, float]:
    """Run ``toxic`` on a stub, feed it chunks, and collect its output with arrival times until it closes."""
    loop = asyncio.get_running_loop()
    source, sink = Channel(), Channel()
    stub = Stub(source, sink)
    stub.state = toxic.new_state()
    stub.run(toxic)
    start = loop.time()
    for data in feed:
        await source.put(Chunk(data, loop.time()))
    if close:
        source.close()
    received: Received = []
    async with asyncio.timeout(within):
        while (chunk := await sink.get()) is not None:
            received.append((chunk.data, loop.time() - start))
    return received, loop.time() - start


def test_registry_has_every_documented_type() -> None:
    """The API accepts the seven documented toxics plus Toxiproxy's own ``noop``."""
    assert set(TOXICS) == {"noop", "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "limit_data",
                           "slicer"}


def test_directions_parse_in_any_case() -> None:
    """``upstream``/``downstream`` are accepted in any case; anything else is refused."""
    assert (parse_direction("UpStream"), parse_direction("downstream"), parse_direction("sideways")) == (0, 1, None)


def test_noop_passes_everything_and_closes() -> None:
    """The no-op toxic passes chunks through in order and ends when its input ends."""
    received, _ = _run(_through(NOOP, [b"a", b"b"]))
    assert [d for d, _ in received] == [b"a", b"b"]


def test_latency_delays_each_chunk() -> None:
    """Each chunk leaves about ``latency`` ms after it was read."""
    received, _ = _run(_through(_toxic(LatencyToxic, latency=80), [b"a", b"b"]))
    assert [d for d, _ in received] == [b"a", b"b"]
    assert all(0.075 <= t < 0.2 for _, t in received), received


def test_latency_jitter_stays_within_bounds() -> None:
    """Delays are spread over [latency - jitter, latency + jitter)."""
    toxic = _toxic(LatencyToxic, latency=100, jitter=20)
    assert isinstance(toxic, LatencyToxic)
    delays = [toxic.delay() for _ in range(2000)]
    assert min(delays) >= 0.08
    assert max(delays) < 0.12
    assert max(delays) - min(delays) > 0.035


def test_bandwidth_paces_the_stream() -> None:
    """50 KB at 500 KB/s takes about 100 ms, in slices of at most rate*100 bytes."""
    received, elapsed = _run(_through(_toxic(BandwidthToxic, rate=500), [b"x" * 50_000]))
    assert b"".join(d for d, _ in received) == b"x" * 50_000
    assert max(len(d) for d, _ in received) <= 50_000
    assert 0.09 <= elapsed < 0.4, elapsed


def test_bandwidth_zero_lets_nothing_through() -> None:
    """A rate of 0 passes no byte, as in Toxiproxy (it only sends empty slices)."""
    async def scenario() -> Received:
        with pytest.raises(TimeoutError):
            await _through(_toxic(BandwidthToxic, rate=0), [b"abc"], within=0.35)
        return []

    _run(scenario())


def test_slow_close_delays_the_end() -> None:
    """Data passes at once; the end of the stream comes ``delay`` ms later."""
    received, elapsed = _run(_through(_toxic(SlowCloseToxic, delay=150), [b"a"]))
    assert received[0][1] < 0.05
    assert 0.14 <= elapsed < 0.4


def test_timeout_drops_data_and_closes_after_timeout() -> None:
    """``timeout`` drops every chunk and closes about ``timeout`` ms after the last one."""
    received, elapsed = _run(_through(_toxic(TimeoutToxic, timeout=120), [b"a"], close=False))
    assert received == []
    assert 0.11 <= elapsed < 0.4


def test_timeout_zero_holds_until_cleanup() -> None:
    """``timeout: 0`` never closes by itself; its cleanup (the toxic's removal) closes the stream."""
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        source, sink = Channel(), Channel()
        stub = Stub(source, sink)
        toxic = _toxic(TimeoutToxic, timeout=0)
        stub.run(toxic)
        await source.put(Chunk(b"a", loop.time()))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await sink.get()
        assert await stub.interrupt()
        toxic.cleanup(stub)
        start = loop.time()
        assert await sink.get() is None
        return loop.time() - start

    assert _run(scenario()) < 0.05


def test_reset_peer_closes_after_first_chunk_and_timeout() -> None:
    """``reset_peer`` swallows the first chunk, waits ``timeout`` ms, then ends the stream."""
    received, elapsed = _run(_through(_toxic(ResetPeerToxic, timeout=100), [b"a"], close=False))
    assert received == []
    assert 0.09 <= elapsed < 0.3


def test_limit_data_truncates_then_closes() -> None:
    """``limit_data`` passes exactly ``bytes`` bytes and then ends the stream."""
    received, _ = _run(_through(_toxic(LimitDataToxic, bytes=5), [b"abc", b"defgh", b"ij"], close=False))
    assert b"".join(d for d, _ in received) == b"abcde"


def test_limit_data_counts_across_reruns() -> None:
    """The count survives a restart of the toxic (an update), as Toxiproxy keeps it in link state."""
    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        source, sink = Channel(), Channel()
        stub = Stub(source, sink)
        toxic = _toxic(LimitDataToxic, bytes=4)
        stub.state = toxic.new_state()
        stub.run(toxic)
        await source.put(Chunk(b"ab", loop.time()))
        first = await sink.get()
        assert await stub.interrupt()
        stub.run(toxic)
        await source.put(Chunk(b"cdef", loop.time()))
        second = await sink.get()
        assert first is not None
        assert second is not None
        assert await sink.get() is None
        return first.data + second.data

    assert _run(scenario()) == b"abcd"


@pytest.mark.parametrize(("size", "average", "variation"), [(1000, 10, 0), (1000, 10, 5), (37, 3, 1), (5, 0, 0),
                                                            (100, 5, 50)])
def test_slicer_bounds_cover_the_chunk(size: int, average: int, variation: int) -> None:
    """Slices are contiguous, cover the whole chunk, are non-empty, and small when the settings are sane."""
    toxic = _toxic(SlicerToxic, average_size=average, size_variation=variation)
    assert isinstance(toxic, SlicerToxic)
    cuts = toxic.bounds(0, size)
    pairs = list(zip(cuts[::2], cuts[1::2], strict=True))
    assert pairs[0][0] == 0
    assert pairs[-1][1] == size
    assert all(a < b for a, b in pairs)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(pairs))
    if variation < average:
        assert max(b - a for a, b in pairs) <= average + variation


def test_slicer_slices_with_delay() -> None:
    """A chunk leaves as many small slices, ``delay`` µs apart."""
    received, elapsed = _run(_through(_toxic(SlicerToxic, average_size=10, delay=2000), [b"z" * 200]))
    assert b"".join(d for d, _ in received) == b"z" * 200
    assert len(received) >= 16
    assert max(len(d) for d, _ in received) <= 10
    assert elapsed >= 0.03


def test_wrapper_json_shape() -> None:
    """A toxic's JSON has Toxiproxy's keys in Toxiproxy's order."""
    wrapper = ToxicWrapper(_toxic(LatencyToxic, latency=5), "lat", "latency", "upstream", Float32(0.5), 0)
    assert list(wrapper.to_json()) == ["attributes", "name", "type", "stream", "toxicity"]
    assert wrapper.to_json()["attributes"] == {"latency": 5, "jitter": 0}


@pytest.mark.parametrize(("toxicity", "expected"), [(0.0, 0), (1.0, 1000)])
def test_toxicity_extremes(toxicity: float, expected: int) -> None:
    """Toxicity 0 never picks the toxic, 1 always does."""
    toxic = _toxic(LatencyToxic, latency=1)
    wrapper = ToxicWrapper(toxic, "lat", "latency", "downstream", Float32(toxicity))
    rng = random.Random(7)
    assert sum(wrapper.pick(rng) is toxic for _ in range(1000)) == expected


def test_toxicity_half_picks_about_half() -> None:
    """Toxicity 0.5 picks the toxic for about half of the links."""
    toxic = _toxic(LatencyToxic, latency=1)
    wrapper = ToxicWrapper(toxic, "lat", "latency", "downstream", Float32(0.5))
    rng = random.Random(11)
    assert 4500 <= sum(wrapper.pick(rng) is toxic for _ in range(10_000)) <= 5500


def test_a_failing_toxic_ends_its_stream() -> None:
    """A toxic that raises closes its stream instead of leaving the connection hanging."""
    class Broken(Toxic):
        async def pipe(self, stub: Stub) -> None:
            raise RuntimeError("bug")

    received, _ = _run(_through(Broken(), [b"a"], close=False, within=1.0))
    assert received == []
