"""Toxiproxy's HTTP API (``api.go`` of v2.12.0) on aiohttp: routes, status codes, bodies and headers.

Answers are what the Go server writes, checked side by side against it in
``tests/integration/test_toxiproxy_conformance.py``: errors are ``{"error": ..., "status": N}`` plus a
newline as ``text/plain`` (Go's ``http.Error``), ``POST .../toxics`` answers 200 while ``POST /proxies``
answers 201, an unknown path is ``404 page not found``, a known path with another method is an empty
405, and a browser's User-Agent is refused with 403 (Toxiproxy's guard against cross-site requests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from harness.toxiproxy._gojson import (
    BAD_REQUEST_BODY,
    MISSING_FIELD,
    TOXIC_NOT_FOUND,
    ApiError,
    JsonObject,
    decode_body,
    decode_fields,
    dumps,
    kind_of,
)
from harness.toxiproxy._proxy import PROXY_FIELDS, AlreadyStarted, ProxyCollection

__all__ = ["API_VERSION", "make_app"]

API_VERSION = "2.12.0-embedded"
"""What ``GET /version`` answers: the Toxiproxy release whose API this follows, marked as embedded."""

COLLECTION: web.AppKey[ProxyCollection] = web.AppKey("collection", ProxyCollection)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(value).encode(), headers={"Content-Type": "application/json"})


def _text_error(text: str, status: int) -> web.Response:
    """Go's ``http.Error``: the text and a newline, as plain text, with ``nosniff``."""
    return web.Response(status=status, body=(text + "\n").encode(),
                        headers={"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"})


def _api_error(error: ApiError) -> web.Response:
    return _text_error(dumps(error.body()), error.status)


def _no_content() -> web.Response:
    return web.Response(status=204)


@web.middleware
async def _go_behaviour(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Go's mux and middlewares: its 404 and 405, the browser guard, and ApiError as an error body."""
    unmatched = request.match_info.http_exception
    if isinstance(unmatched, web.HTTPMethodNotAllowed):
        return web.Response(status=405, headers={"Content-Length": "0"})
    if unmatched is not None:
        return _text_error("404 page not found", 404)
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return _text_error("User agent not allowed", 403)
    try:
        return await handler(request)
    except ApiError as error:
        return _api_error(error)


def _collection(request: web.Request) -> ProxyCollection:
    return request.app[COLLECTION]


def _proxy_body(body: bytes) -> JsonObject:
    value = decode_body(body)
    if value is None:
        return JsonObject()
    if not isinstance(value, JsonObject):
        raise BAD_REQUEST_BODY.joined(f"json: cannot unmarshal {kind_of(value)} into Go value of type toxiproxy.Proxy")
    return value


async def reset(request: web.Request) -> web.Response:
    """``POST /reset``: enable every proxy and remove every toxic."""
    for proxy in list(_collection(request).proxies.values()):
        with contextlib.suppress(AlreadyStarted):
            await proxy.start()
        await proxy.toxics.reset()
    return _no_content()


async def proxy_index(request: web.Request) -> web.Response:
    proxies = _collection(request).proxies
    return _json({name: proxies[name].to_json() for name in sorted(proxies)})


async def proxy_create(request: web.Request) -> web.Response:
    """``POST /proxies``: 201 with the proxy, listening already unless ``enabled`` is false."""
    obj = _proxy_body(await request.read())
    values, error = decode_fields(obj, PROXY_FIELDS, "Proxy")
    if error:
        raise BAD_REQUEST_BODY.joined(error)
    name, upstream = str(values.get("name", "")), str(values.get("upstream", ""))
    if not name:
        raise MISSING_FIELD.joined("name")
    if not upstream:
        raise MISSING_FIELD.joined("upstream")
    collection = _collection(request)
    proxy = collection.new(name, str(values.get("listen", "")), upstream)
    await collection.add(proxy, bool(values.get("enabled", True)))
    return _json(proxy.to_json(), 201)


async def populate(request: web.Request) -> web.Response:
    """``POST /populate``: create or replace; an error still lists what was done before it."""
    proxies, error = await _collection(request).populate_json(await request.read())
    body: dict[str, object] = error.body() if error else {}
    body["proxies"] = [p.to_json() for p in proxies] or None
    return _json(body, error.status if error else 201)


async def proxy_show(request: web.Request) -> web.Response:
    return _json(_collection(request).get(request.match_info["proxy"]).to_json())


async def proxy_update(request: web.Request) -> web.Response:
    """``POST``/``PATCH /proxies/{proxy}``: fields left out keep their values."""
    proxy = _collection(request).get(request.match_info["proxy"])
    values, error = decode_fields(_proxy_body(await request.read()), PROXY_FIELDS, "Proxy")
    if error:
        raise BAD_REQUEST_BODY.joined(error)
    await proxy.update(str(values.get("listen", proxy.listen)), str(values.get("upstream", proxy.upstream)),
                       bool(values.get("enabled", proxy.enabled)))
    return _json(proxy.to_json())


async def proxy_delete(request: web.Request) -> web.Response:
    await _collection(request).remove(request.match_info["proxy"])
    return _no_content()


async def toxic_index(request: web.Request) -> web.Response:
    proxy = _collection(request).get(request.match_info["proxy"])
    return _json([w.to_json() for w in proxy.toxics.toxics()])


async def toxic_create(request: web.Request) -> web.Response:
    """``POST /proxies/{proxy}/toxics``: 200 (not 201) with the toxic, as Toxiproxy answers."""
    proxy = _collection(request).get(request.match_info["proxy"])
    wrapper = await proxy.toxics.add_json(await request.read())
    return _json(wrapper.to_json())


async def toxic_show(request: web.Request) -> web.Response:
    proxy = _collection(request).get(request.match_info["proxy"])
    wrapper = proxy.toxics.find(request.match_info["toxic"])
    if wrapper is None:
        raise TOXIC_NOT_FOUND
    return _json(wrapper.to_json())


async def toxic_update(request: web.Request) -> web.Response:
    proxy = _collection(request).get(request.match_info["proxy"])
    wrapper = await proxy.toxics.update_json(request.match_info["toxic"], await request.read())
    return _json(wrapper.to_json())


async def toxic_delete(request: web.Request) -> web.Response:
    proxy = _collection(request).get(request.match_info["proxy"])
    await proxy.toxics.remove(request.match_info["toxic"])
    return _no_content()


async def version(request: web.Request) -> web.Response:
    return web.Response(body=f'{{"version": "{API_VERSION}"}}\n'.encode(),
                        headers={"Content-Type": "application/json;charset=utf-8"})


async def _close_proxies(app: web.Application) -> None:
    await app[COLLECTION].clear()


def make_app(collection: ProxyCollection) -> web.Application:
    """The API application over ``collection``; its proxies are stopped when the app shuts down."""
    app = web.Application(middlewares=[_go_behaviour])
    app[COLLECTION] = collection
    app.on_shutdown.append(_close_proxies)
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/reset", reset),
        ("GET", "/proxies", proxy_index),
        ("POST", "/proxies", proxy_create),
        ("POST", "/populate", populate),
        ("GET", "/proxies/{proxy}", proxy_show),
        ("POST", "/proxies/{proxy}", proxy_update),
        ("PATCH", "/proxies/{proxy}", proxy_update),
        ("DELETE", "/proxies/{proxy}", proxy_delete),
        ("GET", "/proxies/{proxy}/toxics", toxic_index),
        ("POST", "/proxies/{proxy}/toxics", toxic_create),
        ("GET", "/proxies/{proxy}/toxics/{toxic}", toxic_show),
        ("POST", "/proxies/{proxy}/toxics/{toxic}", toxic_update),
        ("PATCH", "/proxies/{proxy}/toxics/{toxic}", toxic_update),
        ("DELETE", "/proxies/{proxy}/toxics/{toxic}", toxic_delete),
        ("GET", "/version", version),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
