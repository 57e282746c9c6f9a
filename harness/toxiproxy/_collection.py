"""The toxics of one proxy: two chains (upstream, downstream) and the live links they are wired into.

Go's ``toxic_collection.go``: each chain starts with a hidden no-op toxic (so every real toxic has a
stub in front of it that can be interrupted); the API lists the upstream chain, then the downstream
one. Changes are serialised by a lock and applied to every live link of the direction concurrently.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from harness.toxiproxy._gojson import (
    BAD_REQUEST_BODY,
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_ALREADY_EXISTS,
    TOXIC_NOT_FOUND,
    Field,
    Float32,
    JsonObject,
    decode_body,
    decode_fields,
    kind_of,
)
from harness.toxiproxy._link import Link, Sink, Source
from harness.toxiproxy._toxics import (
    DOWNSTREAM,
    NOOP,
    TOXICS,
    UPSTREAM,
    ResetPeerToxic,
    Toxic,
    ToxicWrapper,
    parse_direction,
)

__all__ = ["ToxicCollection"]

WRAPPER_FIELDS = (Field("name", "string"), Field("type", "string"), Field("stream", "string"),
                  Field("toxicity", "float32"))
UPDATE_FIELDS = (Field("toxicity", "float32"),)
UPDATE_TYPE = 'struct { Attributes interface {} "json:\\"attributes\\""; Toxicity float32 "json:\\"toxicity\\"" }'
"""Go's name of the anonymous struct ``UpdateToxicJson`` decodes into (it appears in its errors)."""


def _attributes(obj: JsonObject) -> object:
    """The ``attributes`` value of a toxic body, found the way Go matches keys (last match wins)."""
    found: object = None
    for key, value in obj:
        if key.lower() == "attributes":
            found = value
    return found


def _attributes_kind_error(obj: JsonObject, toxic: Toxic) -> str | None:
    attrs = _attributes(obj)
    if attrs is None or isinstance(attrs, JsonObject):
        return None
    return (f"json: cannot unmarshal {kind_of(attrs)} into Go struct field ToxicWrapper.attributes "
            f"of type toxics.{toxic.GO_NAME}")


def _decode_attributes(toxic: Toxic, obj: JsonObject) -> dict[str, object]:
    error = _attributes_kind_error(obj, toxic)
    if error:
        raise BAD_REQUEST_BODY.joined(error)
    attrs = _attributes(obj)
    if attrs is None:
        return {}
    values, error = decode_fields(attrs, toxic.FIELDS, toxic.GO_NAME, "attributes.")
    if error:
        raise BAD_REQUEST_BODY.joined(error)
    return values


def _object(body: bytes, gotype: str) -> JsonObject:
    value = decode_body(body)
    if not isinstance(value, JsonObject):
        if value is None:
            return JsonObject()
        raise BAD_REQUEST_BODY.joined(f"json: cannot unmarshal {kind_of(value)} into Go value of type {gotype}")
    return value


class ToxicCollection:
    """Both chains of one proxy and the links built from them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        noop = ToxicWrapper(NOOP, "", "noop", "downstream")
        self.chain: list[list[ToxicWrapper]] = [[noop], [noop]]
        self.links: set[Link] = set()
        self.lock = asyncio.Lock()

    def toxics(self) -> list[ToxicWrapper]:
        """Every toxic, upstream chain first, without the hidden heads."""
        return [w for direction in (UPSTREAM, DOWNSTREAM) for w in self.chain[direction][1:]]

    def find(self, name: str) -> ToxicWrapper | None:
        return next((w for w in self.toxics() if w.name == name), None)

    def has_reset_peer(self) -> bool:
        """Whether a new connection's sockets need SO_LINGER 0 (Go sets it when a link starts)."""
        return any(isinstance(w.toxic, ResetPeerToxic) for w in self.toxics())

    def start_link(self, direction: int, source: Source, sink: Sink, on_done: Callable[[], None]) -> Link:
        """Build and start the link of one direction of a new connection from the chain as it is now.

        ``on_done`` runs once the link has closed its sink (Go then drops the connection from the proxy).
        """
        chain = list(self.chain[direction])
        link = Link(chain, direction, self.rng)
        self.links.add(link)

        def finished(done: Link) -> None:
            self.links.discard(done)
            on_done()

        link.start(chain, source, sink, finished)
        return link

    def _links(self, direction: int) -> list[Link]:
        return [link for link in self.links if link.direction == direction and not link.done]

    async def add_json(self, body: bytes) -> ToxicWrapper:
        """Create a toxic from an API body, in Go's order of checks, and wire it into live links."""
        async with self.lock:
            obj = _object(body, "toxics.ToxicWrapper")
            values, error = decode_fields(obj, WRAPPER_FIELDS, "ToxicWrapper")
            error = error or _attributes_kind_error(obj, NOOP)
            if error:
                raise BAD_REQUEST_BODY.joined(error)
            stream = str(values.get("stream", "downstream"))
            direction = parse_direction(stream)
            if direction is None:
                raise INVALID_STREAM
            kind = str(values.get("type", ""))
            name = str(values.get("name", "")) or f"{kind}_{stream}"
            cls = TOXICS.get(kind)
            if cls is None:
                raise INVALID_TOXIC_TYPE
            if self.find(name) is not None:
                raise TOXIC_ALREADY_EXISTS
            toxic = cls(self.rng)
            toxic.set_attributes(_decode_attributes(toxic, obj))
            toxicity = values.get("toxicity", Float32(1.0))
            assert isinstance(toxicity, Float32)
            wrapper = ToxicWrapper(toxic, name, kind, stream, toxicity, direction)
            chain = self.chain[direction]
            wrapper.index = len(chain)
            chain.append(wrapper)
            await asyncio.gather(*(link.add_toxic(list(chain), wrapper) for link in self._links(direction)))
            return wrapper

    async def update_json(self, name: str, body: bytes) -> ToxicWrapper:
        """Merge new attributes and toxicity into a toxic and restart it on live links."""
        async with self.lock:
            wrapper = self.find(name)
            if wrapper is None:
                raise TOXIC_NOT_FOUND
            obj = _object(body, UPDATE_TYPE)
            values, error = decode_fields(obj, UPDATE_FIELDS, "")  # anonymous: Go says ``field .toxicity``
            attrs = _decode_attributes(wrapper.toxic, obj)
            if error:
                raise BAD_REQUEST_BODY.joined(error)
            wrapper.toxic.set_attributes(attrs)
            toxicity = values.get("toxicity", wrapper.toxicity)
            assert isinstance(toxicity, Float32)
            wrapper.toxicity = toxicity
            await asyncio.gather(*(link.update_toxic(wrapper) for link in self._links(wrapper.direction)))
            return wrapper

    async def remove(self, name: str) -> None:
        """Remove a toxic from its chain and from every live link."""
        async with self.lock:
            wrapper = self.find(name)
            if wrapper is None:
                raise TOXIC_NOT_FOUND
            await self._remove(wrapper)

    async def _remove(self, wrapper: ToxicWrapper) -> None:
        chain = self.chain[wrapper.direction]
        index = wrapper.index
        del chain[index]
        for i in range(index, len(chain)):
            chain[i].index = i
        await asyncio.gather(*(link.remove_toxic(list(chain), wrapper, index)
                               for link in self._links(wrapper.direction)))
        wrapper.index = -1

    async def reset(self) -> None:
        """Remove every toxic (``POST /reset``), upstream chain first, each from its head, as Go does."""
        async with self.lock:
            for direction in (UPSTREAM, DOWNSTREAM):
                while len(self.chain[direction]) > 1:
                    await self._remove(self.chain[direction][1])

    def close_links(self) -> None:
        """Forget every link; used when the proxy is gone and its connections are being closed."""
        for link in list(self.links):
            link.teardown()
        self.links.clear()
