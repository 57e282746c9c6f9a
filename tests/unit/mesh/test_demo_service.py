"""The demo service in-process: request handling and its config file (no processes; the process-level
tests are in tests/integration/test_demo_service.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

import harness
from harness.mesh.local.demo_service import (
    TRACE_HEADER,
    Behaviour,
    CallSpec,
    DemoConfig,
    Stats,
    build_app,
    latency_bin,
    service_of,
)

__all__: list[str] = []

REPO_ROOT = Path(harness.__file__).resolve().parents[1]
START_TIMEOUT_S = 15.0


def test_headers_and_path_are_propagated_in_process() -> None:
    """Callee sees the same path+query and the tracing headers (and not others)."""
    seen: dict[str, Any] = {}

    async def capture(request: web.Request) -> web.Response:
        """Record what the callee received."""
        seen["path"] = request.raw_path
        seen["headers"] = {k.lower(): v for k, v in request.headers.items()}
        return web.json_response({"ok": True}, headers={TRACE_HEADER: "capture-v9"})

    async def scenario() -> httpx.Response:
        """Capture callee and demo app in-process on ephemeral ports."""
        callee = web.Application()
        callee.router.add_route("*", "/{tail:.*}", capture)
        callee_runner = web.AppRunner(callee, access_log=None)
        await callee_runner.setup()
        callee_site = web.TCPSite(callee_runner, "127.0.0.1", 0)
        await callee_site.start()
        callee_port = callee_runner.addresses[0][1]
        config = DemoConfig("front", "v3", "front-v3-0", 0,
                            [CallSpec("capture", f"http://127.0.0.1:{callee_port}/")])
        app = build_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            async with httpx.AsyncClient() as client:
                r = await client.get(
                    f"http://127.0.0.1:{port}/a/b%20c?q=1&z=%2F",
                    headers={"x-request-id": "rid-1", "x-b3-traceid": "abc", "x-b3-spanid": "def",
                             "traceparent": "00-1-2-01", "x-secret": "nope"},
                )
            assert service_of(app).stats.requests == 1
            return r
        finally:
            await runner.cleanup()
            await callee_runner.cleanup()

    r = asyncio.run(scenario())
    assert r.status_code == 200
    assert r.headers[TRACE_HEADER] == "front-v3,capture-v9"
    assert r.json()["calls"][0]["body"] == {"ok": True}
    assert seen["path"] == "/a/b%20c?q=1&z=%2F"
    headers = seen["headers"]
    assert headers["x-request-id"] == "rid-1"
    assert headers["x-b3-traceid"] == "abc"
    assert headers["x-b3-spanid"] == "def"
    assert headers["traceparent"] == "00-1-2-01"
    assert "x-secret" not in headers


def test_config_round_trip_and_defaults(tmp_path: Path) -> None:
    """The driver writes what the process reads: the JSON round trip must be lossless."""
    raw = {"service": "reviews", "version": "v2", "instance": "reviews-v2-0", "port": 41234,
           "calls": [{"to": "ratings", "url": "http://127.0.0.1:41300", "optional": False}],
           "behaviour": {"latency_ms": 2.0, "error_rate": 0.0, "error_status": 500}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    config = DemoConfig.from_json(path)
    assert config.to_dict() == raw
    assert DemoConfig.from_json(config.write(tmp_path / "d.json")) == config
    minimal = DemoConfig.from_dict({"service": "s", "version": "v1", "instance": "s-v1-0", "port": 1})
    assert minimal.behaviour == Behaviour(latency_ms=0.0, error_rate=0.0, error_status=500)
    assert minimal.calls == []
    with pytest.raises(ValueError, match="error_rate"):
        Behaviour(error_rate=1.5)


def test_outbound_calls_are_recorded_by_how_the_mesh_ended_them() -> None:
    """Per callee: Envoy's timeout 504 is a 'timeout', a 503 with x-envoy-overloaded is 'overloaded', a 2xx is
    'ok', anything else (an app's own 504 included) 'failed'; each with its status and latency bin."""
    answers: dict[str, tuple[int, str, dict[str, str]]] = {
        "/ok": (200, "fine", {}),
        "/timeout": (504, "upstream request timeout", {}),
        "/overloaded": (503, "overflow", {"x-envoy-overloaded": "true"}),
        "/app504": (504, "my own gateway timeout", {}),
        "/slow": (200, "late", {}),
    }

    async def callee(request: web.Request) -> web.Response:
        """Answer as the mesh would for the path asked."""
        if request.path == "/slow":
            await asyncio.sleep(0.05)
        status, text, headers = answers[request.path]
        return web.Response(status=status, text=text, headers=headers)

    async def scenario() -> dict[str, Any]:
        """Call each kind of answer through the demo app, then read its stats."""
        server = web.Application()
        server.router.add_route("*", "/{tail:.*}", callee)
        server_runner = web.AppRunner(server, access_log=None)
        await server_runner.setup()
        await web.TCPSite(server_runner, "127.0.0.1", 0).start()
        callee_port = server_runner.addresses[0][1]
        app = build_app(DemoConfig("front", "v1", "front-v1-0", 0,
                                   [CallSpec("back", f"http://127.0.0.1:{callee_port}", optional=True)]))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                base = f"http://127.0.0.1:{runner.addresses[0][1]}"
                for path in ("/ok", "/ok", "/timeout", "/overloaded", "/app504", "/slow"):
                    await client.get(base + path)
                stats: dict[str, Any] = (await client.get(base + "/__harness/stats")).json()
                return stats
        finally:
            await runner.cleanup()
            await server_runner.cleanup()

    back = asyncio.run(scenario())["calls"]["back"]
    assert back["outcomes"] == {"ok": 3, "timeout": 1, "overloaded": 1, "failed": 1}
    assert back["status"] == {"200": 3, "504": 2, "503": 1}
    slow = [b for b in back["latency"]["ok"] if b[0] >= 50]
    assert len(slow) == 1, "the 50ms call is in one bin at or above 50ms"
    assert slow[0][1:] == [1.0, 1], "1ms wide, holding that one call"


def test_latency_bins_are_fine_below_a_second_and_one_percent_above() -> None:
    """1ms bins below 1s, then 1% of the decade: a timeout band of ±20ms spans many bins."""
    assert latency_bin(0.4) == (0.0, 1.0)
    assert latency_bin(101.7) == (101.0, 1.0)
    assert latency_bin(1234.5) == (1230.0, 10.0)
    assert latency_bin(15555.0) == (15500.0, 100.0)


def test_in_flight_peaks_are_logged_per_quarter_second() -> None:
    """The highest in-flight count of each quarter second with an arrival; the since-start maximum stays."""
    stats = Stats()
    stats.arrived(now=100.0)
    stats.arrived(now=100.1)
    stats.inflight -= 2
    stats.arrived(now=100.3)
    snap = stats.snapshot()
    assert snap["inflight_peaks"] == [[100.0, 2], [100.25, 1]]
    assert snap["max_inflight"] == 2
    assert snap["inflight_peak_s"] == 0.25
    assert snap["requests"] == 3
