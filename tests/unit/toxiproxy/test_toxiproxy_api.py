"""The embedded server's HTTP API, in-process on 127.0.0.1: routes, status codes, bodies, headers.

The same behaviours are checked against the real Go server in
tests/integration/test_toxiproxy_conformance.py; these run without any process and pin the
embedded-only choices (loopback by default, the version string).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from harness.toxiproxy import API_VERSION, EmbeddedToxiproxy


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedToxiproxy]:
    with EmbeddedToxiproxy(seed=5) as tp:
        yield tp


@pytest.fixture
def api(server: EmbeddedToxiproxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield client
        for name in client.get("/proxies").json():
            client.delete(f"/proxies/{name}")


def _listening(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_version(api: httpx.Client) -> None:
    """GET /version answers Go's exact bytes, with the embedded version."""
    response = api.get("/version")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    assert response.text == f'{{"version": "{API_VERSION}"}}\n'


def test_create_body_is_byte_for_byte(api: httpx.Client) -> None:
    """POST /proxies answers 201 and exactly Go's JSON (``Logger`` included)."""
    response = api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0",
                                          "enabled": False})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.text == ('{"name":"a","listen":"127.0.0.1:0","upstream":"127.0.0.1:9","enabled":false,'
                             '"Logger":{},"toxics":[]}')


def test_error_bodies_are_plain_text_json(api: httpx.Client) -> None:
    """Errors are Go's ``http.Error``: JSON plus newline, text/plain, nosniff."""
    response = api.get("/proxies/none")
    assert response.status_code == 404
    assert response.text == '{"error":"proxy not found","status":404}\n'
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_unknown_path_and_method(api: httpx.Client) -> None:
    """Unknown paths are ``404 page not found``; other methods on known paths an empty 405."""
    assert (api.get("/nope").status_code, api.get("/nope").text) == (404, "404 page not found\n")
    response = api.delete("/proxies")
    assert (response.status_code, response.content) == (405, b"")
    assert api.head("/proxies").status_code == 405


def test_browsers_are_refused(api: httpx.Client) -> None:
    """A browser User-Agent gets 403, Toxiproxy's guard against requests from web pages."""
    response = api.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert (response.status_code, response.text) == (403, "User agent not allowed\n")


def test_default_listen_is_loopback(api: httpx.Client) -> None:
    """A proxy without ``listen`` (or with an empty host) listens on 127.0.0.1, never on every interface."""
    no_listen = api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9"}).json()
    empty_host = api.post("/proxies", json={"name": "b", "upstream": "127.0.0.1:9", "listen": ":0"}).json()
    assert no_listen["listen"].startswith("127.0.0.1:")
    assert empty_host["listen"].startswith("127.0.0.1:")


def test_bind_failure_is_500_with_gos_text(api: httpx.Client) -> None:
    """A port in use fails creation with 500 ``listen tcp ...: bind: address already in use``."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        response = api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9", "listen": f"127.0.0.1:{port}"})
    assert response.status_code == 500
    assert response.json()["error"] == f"listen tcp 127.0.0.1:{port}: bind: address already in use"
    assert api.get("/proxies").json() == {}


def test_enabled_toggles_the_listener(api: httpx.Client) -> None:
    """``enabled: false`` closes the listener; ``true`` listens again on the same address."""
    created = api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"})
    listen = created.json()["listen"]
    assert _listening(listen)
    assert api.patch("/proxies/a", json={"enabled": False}).json()["enabled"] is False
    assert not _listening(listen)
    assert api.post("/proxies/a", json={"enabled": True}).json()["listen"] == listen
    assert _listening(listen)


def test_toxic_create_is_200_and_listed_upstream_first(api: httpx.Client) -> None:
    """Toxics are created with 200 and listed upstream chain first, each in order of creation."""
    api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"})
    first = api.post("/proxies/a/toxics", json={"type": "latency", "name": "d1"})
    api.post("/proxies/a/toxics", json={"type": "timeout", "name": "u1", "stream": "upstream"})
    api.post("/proxies/a/toxics", json={"type": "slicer", "name": "d2"})
    assert first.status_code == 200
    assert [t["name"] for t in api.get("/proxies/a/toxics").json()] == ["u1", "d1", "d2"]


def test_populate_response_shapes(api: httpx.Client) -> None:
    """/populate answers ``{"proxies": [...]}`` 201, ``null`` for none, error fields first on failure."""
    assert api.post("/populate", json=[]).text == '{"proxies":null}'
    done = api.post("/populate", json=[{"name": "p", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"}])
    assert done.status_code == 201
    assert [p["name"] for p in done.json()["proxies"]] == ["p"]
    bad = api.post("/populate", json={"name": "p"})
    assert bad.status_code == 400
    assert list(bad.json()) == ["error", "status", "proxies"]


def test_reset_reenables_and_clears(api: httpx.Client) -> None:
    """POST /reset answers 204, enables every proxy and removes every toxic."""
    api.post("/proxies", json={"name": "a", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0", "enabled": False})
    api.post("/proxies/a/toxics", json={"type": "latency"})
    response = api.post("/reset")
    assert (response.status_code, response.content) == (204, b"")
    proxy = api.get("/proxies/a").json()
    assert proxy["enabled"] is True
    assert proxy["toxics"] == []
    assert _listening(proxy["listen"])


def test_the_client_sends_a_whole_number_of_milliseconds_as_an_integer(server: EmbeddedToxiproxy,
                                                                         api: httpx.Client) -> None:
    # Toxiproxy's attributes are int64: `300.0` is refused by the real server and by this one alike.
    from urllib.parse import urlsplit

    from harness.toxiproxy.client import ToxiproxyClient

    created = api.post("/proxies", json={"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"})
    assert created.status_code == 201
    body = {"type": "latency", "attributes": {"latency": 300.0}}
    assert api.post("/proxies/p/toxics", json=body).status_code == 400
    url = urlsplit(server.url)
    client = ToxiproxyClient(url.hostname or "127.0.0.1", url.port or 0)
    client.set_toxic("p", "slow", "latency", {"latency": 300.0, "jitter": 0.0})
    assert client.toxics("p")["slow"]["attributes"] == {"latency": 300, "jitter": 0}
