"""The demo service as the driver starts it: real processes.

Why real processes: the driver starts the service exactly this way (``python3 -m ...``), so
the CLI, config file parsing, binding, the shared client session and SIGTERM handling are
all part of what is being verified, not just the request handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import harness
from harness.mesh.local.demo_service import (
    TRACE_HEADER,
    VERSION_HEADER,
    Behaviour,
    CallSpec,
    DemoConfig,
)

__all__: list[str] = []

REPO_ROOT = Path(harness.__file__).resolve().parents[1]
START_TIMEOUT_S = 15.0


def free_port() -> int:
    """Return a port that was free a moment ago (used to pre-assign the demo services' ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """A running demo-service process and its config."""

    config: DemoConfig
    popen: subprocess.Popen[str]

    @property
    def url(self) -> str:
        """Base URL of the instance."""
        return f"http://127.0.0.1:{self.config.port}"


class Spawner:
    """Starts demo services as real processes in parallel and always stops them by PID."""

    def __init__(self, tmp: Path) -> None:
        """Remember where configs are written; processes are tracked for teardown."""
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(self, *configs: DemoConfig) -> list[Proc]:
        """Start all configs at once (ports must be known up front) and wait until each listens."""
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        started: list[Proc] = []
        for cfg in configs:
            path = self.tmp / f"{cfg.instance}.json"
            cfg.write(path)
            popen = subprocess.Popen(
                [sys.executable, "-m", "harness.mesh.local.demo_service", "--config", str(path)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            )
            proc = Proc(cfg, popen)
            self.procs.append(proc)
            started.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        for proc in started:
            assert proc.popen.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.popen.stdout, selectors.EVENT_READ)
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"{proc.config.instance} did not start in time")
            line = proc.popen.stdout.readline()
            if not line:
                _, err = proc.popen.communicate(timeout=5)
                raise AssertionError(f"{proc.config.instance} exited: {err}")
            event = json.loads(line)
            assert event["event"] == "listening"
            assert event["port"] == proc.config.port
        return started

    def stop_all(self) -> None:
        """SIGTERM everything still running, then kill whatever did not exit in time."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.communicate()


def cfg(name: str, version: str = "v1", calls: list[CallSpec] | None = None, **behaviour: Any) -> DemoConfig:
    """A config on a pre-assigned free port, so all processes can start in parallel."""
    return DemoConfig(service=name, version=version, instance=f"{name}-{version}-0", port=free_port(),
                      calls=calls or [], behaviour=Behaviour(**behaviour))


@dataclass
class Mesh:
    """The module's set of running instances, keyed by role."""

    procs: dict[str, Proc]
    client: httpx.Client

    def url(self, name: str) -> str:
        """Base URL of the named instance."""
        return self.procs[name].url

    def get(self, name: str, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``path`` on the named instance with the shared client (client creation is slow)."""
        return self.client.get(self.url(name) + path, **kwargs)

    def stats(self, name: str) -> dict[str, Any]:
        """The instance's ``/__harness/stats`` counters."""
        r = self.get(name, "/__harness/stats")
        assert r.status_code == 200
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """Start every instance used by this module in one go: process start-up dominates runtime."""
    spawner = Spawner(tmp_path_factory.mktemp("demo"))
    # A 'down' callee: a port bound but never listened on refuses connections, and no other process
    # (a mesh of a concurrent test run) can take it while we hold it, as it could a port merely found free.
    down = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    down.bind(("127.0.0.1", 0))
    down_url = f"http://127.0.0.1:{down.getsockname()[1]}"
    ratings = cfg("ratings")
    details = cfg("details")
    reviews = cfg("reviews", "v2", [CallSpec("ratings", f"http://127.0.0.1:{ratings.port}")])
    productpage = cfg("productpage", "v1", [
        CallSpec("details", f"http://127.0.0.1:{details.port}"),
        CallSpec("reviews", f"http://127.0.0.1:{reviews.port}"),
        CallSpec("recommendations", down_url, optional=True),
    ])
    sink = details  # a leaf whose request counter shows whether it was called
    broken = cfg("broken", "v1", [CallSpec("recommendations", down_url),
                                  CallSpec("details", f"http://127.0.0.1:{sink.port}")])
    flaky = cfg("flaky", "v1", [CallSpec("details", f"http://127.0.0.1:{sink.port}")],
                error_rate=1.0, error_status=503)
    gateway = cfg("gateway", "v1", [CallSpec("flaky", f"http://127.0.0.1:{flaky.port}")])
    slow = cfg("slow", latency_ms=150.0)
    counted = cfg("counted", latency_ms=500.0)
    term = cfg("term", latency_ms=5000.0)
    configs = {"ratings": ratings, "details": details, "reviews": reviews, "productpage": productpage,
               "broken": broken, "flaky": flaky, "gateway": gateway, "slow": slow,
               "counted": counted, "term": term}
    client = httpx.Client(timeout=10)
    try:
        procs = spawner.start(*configs.values())
        yield Mesh(dict(zip(configs, procs, strict=True)), client)
    finally:
        client.close()
        spawner.stop_all()
        down.close()


def test_chain_trace_version_and_optional_down(mesh: Mesh) -> None:
    """productpage→details, productpage→reviews→ratings, optional recommendations is down."""
    r = mesh.get("productpage", "/api/v1/products/0?user=jason")
    assert r.status_code == 200
    assert r.headers[VERSION_HEADER] == "productpage-v1"
    assert r.headers[TRACE_HEADER] == "productpage-v1,details-v1,reviews-v2,ratings-v1"
    body = r.json()
    assert (body["service"], body["version"], body["instance"], body["status"]) == (
        "productpage", "v1", "productpage-v1-0", 200)
    assert [c["to"] for c in body["calls"]] == ["details", "reviews", "recommendations"]
    details, reviews, rec = body["calls"]
    assert details["status"] == 200
    assert details["body"]["service"] == "details"
    assert reviews["status"] == 200
    assert reviews["body"]["calls"][0]["body"]["service"] == "ratings"
    assert rec["optional"] is True
    assert rec["status"] == 0
    assert rec["body"] is None
    assert rec["error"]


def test_outbound_calls_are_recorded_per_callee(mesh: Mesh) -> None:
    """The app records how each call to each callee ended, with latency bins: the evidence timeout and
    circuit-breaker verdicts read for inner edges."""
    before = mesh.stats("productpage").get("calls", {})
    assert mesh.get("productpage", "/calls").status_code == 200
    calls = mesh.stats("productpage")["calls"]

    def grew(callee: str, outcome: str) -> int:
        then = before.get(callee, {}).get("outcomes", {}).get(outcome, 0)
        return int(calls[callee]["outcomes"].get(outcome, 0) - then)

    assert (grew("details", "ok"), grew("reviews", "ok"), grew("recommendations", "failed")) == (1, 1, 1)
    assert calls["recommendations"]["status"]["0"] >= 1, "no response at all is status 0"
    assert all(width == 1.0 for _, width, _ in calls["reviews"]["latency"]["ok"])


def test_failed_required_call_gives_502_and_stops(mesh: Mesh) -> None:
    """A down required callee gives 502 and later calls are not made."""
    before = mesh.stats("details")["requests"]
    r = mesh.get("broken", "/x")
    assert r.status_code == 502
    assert r.headers[VERSION_HEADER] == "broken-v1"
    assert r.headers[TRACE_HEADER] == "broken-v1"
    body = r.json()
    assert body["status"] == 502
    assert len(body["calls"]) == 1
    assert body["calls"][0]["optional"] is False
    assert mesh.stats("details")["requests"] == before, "the chain must stop at the failed required call"


def test_non_200_callee_is_a_failure_and_body_is_kept(mesh: Mesh) -> None:
    """Non-200 from a callee counts as failure; its JSON body is kept for diagnosis."""
    r = mesh.get("gateway", "/")
    assert r.status_code == 502
    assert r.headers[TRACE_HEADER] == "gateway-v1"
    (flaky_call,) = r.json()["calls"]
    assert flaky_call["status"] == 503
    assert flaky_call["body"]["service"] == "flaky"


def test_error_rate_one_answers_error_status_without_calls(mesh: Mesh) -> None:
    """Injected errors short-circuit the call graph and still carry the headers."""
    before = mesh.stats("details")["requests"]
    for _ in range(5):
        r = mesh.get("flaky", "/anything")
        assert r.status_code == 503
        assert r.headers[VERSION_HEADER] == "flaky-v1"
        assert r.headers[TRACE_HEADER] == "flaky-v1"
        assert r.json()["calls"] == []
    assert mesh.stats("details")["requests"] == before
    assert mesh.stats("flaky")["responses"]["503"] >= 5


def test_latency_is_applied(mesh: Mesh) -> None:
    """Configured latency is a lower bound on the response time."""
    mesh.get("slow", "/warmup")
    t0 = time.perf_counter()
    r = mesh.get("slow", "/")
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200
    assert elapsed >= 0.150


def test_stats_inflight_max_attempts_and_reset(mesh: Mesh) -> None:
    """The behind-the-sidecar counters that retry/circuit-breaker tests rely on."""
    url = mesh.url("counted")

    async def burst() -> list[int]:
        """Ten concurrent requests with a mix of attempt-count headers."""
        async with httpx.AsyncClient(timeout=10) as client:
            attempt_headers: list[dict[str, str]] = (
                [{"x-envoy-attempt-count": "1"}] * 4 + [{"x-envoy-attempt-count": "2"}] * 3 + [{}] * 3
            )
            rs = await asyncio.gather(*(client.get(f"{url}/r{i}", headers=h)
                                        for i, h in enumerate(attempt_headers)))
            return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * 10
    stats = mesh.stats("counted")
    assert stats["requests"] == 10
    assert stats["inflight"] == 0
    assert stats["max_inflight"] == 10
    assert stats["responses"] == {"200": 10}
    assert stats["attempts"] == {"1": 4, "2": 3}
    assert max(peak for _, peak in stats["inflight_peaks"]) == 10, "the burst is in the per-window peak log"
    reset = mesh.client.post(url + "/__harness/reset-max").json()
    assert reset["max_inflight"] == 0
    assert reset["requests"] == 10, "control endpoints are not counted as requests"
    assert mesh.get("counted", "/__harness/health").text == "ok"
    assert mesh.get("counted", "/__harness/unknown").status_code == 404
    assert mesh.stats("counted")["requests"] == 10


def test_sigterm_exits_zero_fast_even_with_keepalive_and_inflight(mesh: Mesh) -> None:
    """Runs last among the mesh tests (file order): it stops the ``term`` instance."""
    proc = mesh.procs["term"]
    assert mesh.get("term", "/__harness/health").status_code == 200  # leaves an idle keep-alive conn

    async def stop_while_inflight() -> float:
        """Send SIGTERM while a slow request is in flight and time the exit."""
        async with httpx.AsyncClient(timeout=10) as client:
            pending = asyncio.ensure_future(client.get(proc.url + "/slow"))
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            proc.popen.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.popen.wait, 5)
            elapsed = time.perf_counter() - t0
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            return elapsed

    elapsed = asyncio.run(stop_while_inflight())
    print(f"SIGTERM to exit: {elapsed * 1000:.0f} ms")
    assert proc.popen.returncode == 0
    assert elapsed < 1.0
