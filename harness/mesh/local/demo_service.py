"""The demo application that sits behind every sidecar of the local mesh.

Why it exists: traffic-policy and chaos tests need an application whose behaviour is
*known exactly*, so that every deviation seen by the client can be attributed to the mesh
(retries, timeouts, fault injection, routing) rather than to the app. One process is one
instance of one version of one service; the driver writes a JSON config per process and
starts ``python3 -m harness.mesh.local.demo_service --config PATH``.

Contract (relied upon by assertions elsewhere, so change it only deliberately):

* Every path except ``/__harness/*`` is answered the same way: sleep ``latency_ms``; with
  probability ``error_rate`` answer ``error_status`` without calling anything; otherwise
  call each entry of ``calls`` in order with a GET to ``url`` + the received path and
  query, forwarding the tracing headers. A call succeeds iff the callee answers 200. A
  failed required call stops the chain and the answer is 502; a failed optional call is
  recorded and the chain continues.
* The JSON body is ``{"service","version","instance","status","calls":[...]}`` and the
  headers ``x-harness-version`` (``<service>-<version>``) and ``x-harness-trace`` (the
  versions that answered, depth first, starting with this one) are always present, so a
  test can tell from one response which versions served the whole request tree.
* ``/__harness/stats``, ``/__harness/reset-max`` and ``/__harness/health`` expose counters
  measured *behind* the sidecar (requests, concurrency, Envoy attempt counts), which is the
  ground truth that mesh-side metrics are checked against.
* The app also records how each of its own outbound calls ended, per callee (``calls`` in the
  stats): the status, the outcome as the mesh signalled it (``timeout``: Envoy's 504 "upstream
  request timeout"; ``overloaded``: a 503 with ``x-envoy-overloaded``, a circuit breaker's answer)
  and latency bins per outcome. A load generator only sees the gateway edge; this is how the
  verdicts on an inner edge (timeouts, breakers) see when and how that edge's calls ended.
* In-flight requests are logged as a peak per quarter second (``inflight_peaks``, the last
  minute), so that a window can read the maximum concurrency *inside* it, which a single
  since-start maximum cannot give while several windows and readers share one process.

It must never be the bottleneck of a load test, hence aiohttp with access logging off, one
shared keep-alive client session and no per-request allocations beyond what is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = [
    "HARNESS_PREFIX",
    "PROPAGATED_HEADERS",
    "TRACE_HEADER",
    "VERSION_HEADER",
    "Behaviour",
    "CallSpec",
    "CallStats",
    "DemoConfig",
    "DemoService",
    "Stats",
    "build_app",
    "latency_bin",
    "main",
    "service_of",
]

#: Paths under this prefix are the harness's own control plane and are never counted.
HARNESS_PREFIX = "/__harness/"
#: Response header naming the version that produced the response.
VERSION_HEADER = "x-harness-version"
#: Response header listing every ``<service>-<version>`` that answered, depth first.
TRACE_HEADER = "x-harness-trace"
#: Exact (lower-case) request header names forwarded to callees so that Envoy tracing and
#: request-id based assertions see one request tree. ``x-b3-*`` is matched by prefix.
PROPAGATED_HEADERS = frozenset({"x-request-id", "traceparent", "tracestate", "b3"})
_B3_PREFIX = "x-b3-"
#: Inbound header Envoy sets (with ``include_request_attempt_count``) on each try.
_ATTEMPT_HEADER = "x-envoy-attempt-count"
#: Request header the calling sidecar adds with its own service name (see envoy_config).
_CALLER_HEADER = "x-harness-caller"
#: Safety cap only: the mesh enforces the real timeouts, this just stops leaks.
_CLIENT_TOTAL_TIMEOUT_S = 60.0
#: Longer than Envoy's default upstream idle timeout (1 h) so that the app never closes a
#: keep-alive connection Envoy is about to reuse (which would surface as a spurious 503).
_SERVER_KEEPALIVE_S = 3700.0
#: Grace period for in-flight requests on SIGTERM; the harness wants exit in well under 1 s.
_SHUTDOWN_TIMEOUT_S = 0.1
#: Listen backlog; load tests open many connections at once and the default 128 drops SYNs.
_BACKLOG = 1024
#: Resolution and memory of the in-flight peak log: fine enough to put a window's edge within a
#: quarter second, and a minute is far more than the gap between two scrapes of the metric source.
_PEAK_BUCKET_S = 0.25
_PEAK_KEEP = 240
#: Envoy's answer when the route timeout fires (router local reply, status 504).
_ENVOY_TIMEOUT_BODY = b"upstream request timeout"
#: Response header Envoy sets on a 503 it answered because a circuit breaker overflowed.
_OVERLOADED_HEADER = "x-envoy-overloaded"


@dataclass(slots=True)
class Behaviour:
    """How this instance misbehaves; the knobs the fault scenarios turn.

    Kept separate from the call graph because scenarios change behaviour per version
    (e.g. ``reviews-v3`` is slow) while the topology stays the same.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500

    def __post_init__(self) -> None:
        """Reject values that would silently make a statistical test meaningless."""
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {self.error_rate}")
        if not 100 <= self.error_status <= 599:
            raise ValueError(f"error_status must be an HTTP status, got {self.error_status}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        """Build from JSON, applying the documented defaults for missing fields."""
        return cls(
            latency_ms=float(data.get("latency_ms", 0.0)),
            error_rate=float(data.get("error_rate", 0.0)),
            error_status=int(data.get("error_status", 500)),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, the inverse of :meth:`from_dict`."""
        return {"latency_ms": self.latency_ms, "error_rate": self.error_rate,
                "error_status": self.error_status}


@dataclass(slots=True)
class CallSpec:
    """One downstream dependency, called in list order.

    ``url`` is normally the local sidecar's outbound listener, so the call goes through the
    mesh. ``host``, when set, overrides the Host header, for sidecar configs that route by
    virtual host rather than by listener port; by default the Host is derived from ``url``.
    """

    to: str
    url: str
    optional: bool = False
    host: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallSpec:
        """Build from JSON; ``to`` and ``url`` are mandatory because a call without them is a bug."""
        host = data.get("host")
        return cls(to=str(data["to"]), url=str(data["url"]), optional=bool(data.get("optional", False)),
                   host=None if host is None else str(host))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; ``host`` is omitted when unset to keep configs minimal."""
        out: dict[str, Any] = {"to": self.to, "url": self.url, "optional": self.optional}
        if self.host is not None:
            out["host"] = self.host
        return out


@dataclass(slots=True)
class DemoConfig:
    """Everything one demo process needs; the driver writes it, the process reads it.

    A file rather than CLI flags because the call list is structured and because the file
    left on disk documents exactly what each instance was told to do during a run.
    """

    service: str
    version: str
    instance: str
    port: int
    calls: list[CallSpec] = field(default_factory=list)
    behaviour: Behaviour = field(default_factory=Behaviour)
    host: str = "127.0.0.1"
    """Where to listen: loopback on the local mesh; 0.0.0.0 in a container (its own network namespace),
    where the harness reads ``/__harness/*`` through a port published on the host's 127.0.0.1."""

    def __post_init__(self) -> None:
        """Fail at start-up, not at the first request, on an impossible port."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within [0, 65535], got {self.port}")

    @property
    def tag(self) -> str:
        """``<service>-<version>``, the unit the trace and version headers speak in."""
        return f"{self.service}-{self.version}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoConfig:
        """Build from parsed JSON."""
        return cls(
            service=str(data["service"]),
            version=str(data["version"]),
            instance=str(data.get("instance", f"{data['service']}-{data['version']}-0")),
            port=int(data["port"]),
            calls=[CallSpec.from_dict(c) for c in data.get("calls", [])],
            behaviour=Behaviour.from_dict(data.get("behaviour", {})),
            host=str(data.get("host", "127.0.0.1")),
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DemoConfig:
        """Read the config file the process was started with."""
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, the inverse of :meth:`from_dict`."""
        return {
            "service": self.service,
            "version": self.version,
            "instance": self.instance,
            "port": self.port,
            "calls": [c.to_dict() for c in self.calls],
            "behaviour": self.behaviour.to_dict(),
        }

    def to_json(self) -> str:
        """Serialise for the driver; stable key order keeps config diffs readable."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename) so a starting process never reads half a file."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.to_json())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def latency_bin(ms: float) -> tuple[float, float]:
    """The (lower bound, width) in ms of the latency bin holding ``ms``: 1 ms wide below 1 s, then
    1% of the decade (10 ms up to 10 s, 100 ms beyond), so no bin is wider than 1% of its values
    above 100 ms, and a timeout band of ±10% or 20 ms is always many bins wide."""
    if ms < 1000.0:
        return float(int(max(ms, 0.0))), 1.0
    width = 10.0 ** (len(str(int(ms))) - 3)
    return (ms // width) * width, width


@dataclass(slots=True)
class CallStats:
    """How this instance's outbound calls to one callee ended.

    ``outcomes`` classifies each call as the mesh signalled it: ``ok`` (2xx), ``timeout``
    (Envoy's route timeout), ``overloaded`` (a circuit breaker's fast 503) or ``failed``
    (anything else, including no response); ``latency`` holds bins per outcome, keyed by lower
    bound (width from :func:`latency_bin`).
    """

    status: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latency: dict[str, Counter[float]] = field(default_factory=dict)

    def record(self, status: int, outcome: str, ms: float) -> None:
        """Count one finished call."""
        self.status[str(status)] += 1
        self.outcomes[outcome] += 1
        self.latency.setdefault(outcome, Counter())[latency_bin(ms)[0]] += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON form: bins as ``[lower, width, count]``, sorted, like Envoy's detailed histograms."""
        return {
            "status": dict(self.status),
            "outcomes": dict(self.outcomes),
            "latency": {kind: [[lo, latency_bin(lo)[1], n] for lo, n in sorted(bins.items())]
                        for kind, bins in self.latency.items()},
        }


@dataclass(slots=True)
class Stats:
    """Counters measured behind the sidecar: the ground truth for mesh-side assertions.

    ``attempts`` is the histogram of Envoy's ``x-envoy-attempt-count`` request header, which
    is how retry tests see how many tries actually reached the app. ``peaks`` holds
    ``[bucket index, highest in-flight count]`` for each quarter second in which a request
    arrived; in a quarter second without arrivals the count only falls, so the level at a
    window's start plus the peaks inside it give the window's maximum.
    """

    requests: int = 0
    inflight: int = 0
    max_inflight: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    attempts_by_caller: dict[str, Counter[str]] = field(default_factory=dict)
    calls: dict[str, CallStats] = field(default_factory=dict)
    peaks: deque[list[int]] = field(default_factory=lambda: deque(maxlen=_PEAK_KEEP))

    def arrived(self, now: float | None = None) -> None:
        """One more request in flight: update the maxima and this quarter second's peak."""
        self.requests += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        bucket = int((time.time() if now is None else now) / _PEAK_BUCKET_S)
        if self.peaks and self.peaks[-1][0] == bucket:
            self.peaks[-1][1] = max(self.peaks[-1][1], self.inflight)
        else:
            self.peaks.append([bucket, self.inflight])

    def reset_max(self) -> None:
        """Start a new concurrency window, e.g. right before a circuit-breaker test."""
        self.max_inflight = self.inflight

    def snapshot(self) -> dict[str, Any]:
        """JSON form served at ``/__harness/stats``."""
        return {
            "requests": self.requests,
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "responses": dict(self.responses),
            "attempts": dict(self.attempts),
            "attempts_by_caller": {caller: dict(c) for caller, c in self.attempts_by_caller.items()},
            "calls": {callee: c.snapshot() for callee, c in self.calls.items()},
            "inflight_peaks": [[b * _PEAK_BUCKET_S, peak] for b, peak in self.peaks],
            "inflight_peak_s": _PEAK_BUCKET_S,
        }


def _propagated(headers: Mapping[str, str]) -> dict[str, str]:
    """Select the tracing headers to forward, so one request tree keeps one identity."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        low = name.lower()
        if low in PROPAGATED_HEADERS or low.startswith(_B3_PREFIX):
            out[low] = value
    return out


class DemoService:
    """Request handling for one instance; holds the config, the counters and the client session.

    A class rather than closures so tests can build the app in-process and inspect
    :attr:`stats` directly.
    """

    def __init__(self, config: DemoConfig) -> None:
        """Precompute per-call URLs' base so the hot path only concatenates strings."""
        self.config = config
        self.stats = Stats()
        self._tag = config.tag
        self._bases = [c.url.rstrip("/") for c in config.calls]
        self._session: aiohttp.ClientSession | None = None

    def _respond(self, status: int, calls: list[dict[str, Any]], trace: list[str]) -> web.Response:
        """Build the contract response and count it."""
        self.stats.responses[str(status)] += 1
        body = {
            "service": self.config.service,
            "version": self.config.version,
            "instance": self.config.instance,
            "status": status,
            "calls": calls,
        }
        return web.Response(
            status=status,
            body=json.dumps(body, separators=(",", ":")).encode(),
            content_type="application/json",
            headers={VERSION_HEADER: self._tag, TRACE_HEADER: ",".join(trace)},
        )

    async def _call(
        self, index: int, path_qs: str, headers: dict[str, str]
    ) -> tuple[dict[str, Any], str | None]:
        """Perform one dependency call; return its record and the callee trace if it succeeded.

        Connection errors and timeouts are reported as ``status: 0`` with an ``error`` text,
        because to the caller they are failures exactly like a non-200 answer.
        """
        spec = self.config.calls[index]
        if self._session is None:
            raise RuntimeError("client session not started (app not running?)")
        url = URL(self._bases[index] + path_qs, encoded=True)
        if spec.host is not None:
            headers = {**headers, "Host": spec.host}
        status = 0
        body: Any = None
        error: str | None = None
        trace: str | None = None
        outcome = "failed"
        started = time.perf_counter()
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                raw = await resp.read()
                if status == 200:
                    trace = resp.headers.get(TRACE_HEADER)
                if 200 <= status < 300:
                    outcome = "ok"
                elif status == 504 and raw.startswith(_ENVOY_TIMEOUT_BODY):
                    outcome = "timeout"
                elif status == 503 and _OVERLOADED_HEADER in resp.headers:
                    outcome = "overloaded"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Also covers a body cut off after a 200 status line: that is a failure, not a 200.
            status, trace, outcome = 0, None, "failed"
            error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            if status != 200:
                error = f"HTTP {status}"
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.stats.calls.setdefault(spec.to, CallStats()).record(status, outcome, elapsed_ms)
        record = {"to": spec.to, "status": status, "optional": spec.optional, "body": body, "error": error}
        return record, trace

    async def handle(self, request: web.Request) -> web.Response:
        """Serve any application path according to the module contract."""
        stats = self.stats
        stats.arrived()
        try:
            attempt = request.headers.get(_ATTEMPT_HEADER)
            if attempt is not None and attempt.strip().isdigit():
                stats.attempts[str(int(attempt))] += 1
                # The calling sidecar names its service, so each edge's retries are seen apart.
                caller = request.headers.get(_CALLER_HEADER, "")
                stats.attempts_by_caller.setdefault(caller, Counter())[str(int(attempt))] += 1
            behaviour = self.config.behaviour
            if behaviour.latency_ms > 0:
                await asyncio.sleep(behaviour.latency_ms / 1000.0)
            trace = [self._tag]
            if behaviour.error_rate > 0 and random.random() < behaviour.error_rate:
                return self._respond(behaviour.error_status, [], trace)
            calls: list[dict[str, Any]] = []
            if self._bases:
                forward = _propagated(request.headers)
                path_qs = request.raw_path
                for index, spec in enumerate(self.config.calls):
                    record, callee_trace = await self._call(index, path_qs, forward)
                    calls.append(record)
                    if record["status"] == 200:
                        if callee_trace:
                            trace.append(callee_trace)
                    elif not spec.optional:
                        return self._respond(502, calls, trace)
            return self._respond(200, calls, trace)
        finally:
            stats.inflight -= 1

    async def stats_handler(self, request: web.Request) -> web.Response:
        """``GET /__harness/stats``: counters, not counted as a request."""
        return web.json_response(self.stats.snapshot())

    async def reset_max_handler(self, request: web.Request) -> web.Response:
        """``POST /__harness/reset-max``: start a new max-inflight window, return the stats."""
        self.stats.reset_max()
        return web.json_response(self.stats.snapshot())

    async def health_handler(self, request: web.Request) -> web.Response:
        """``GET /__harness/health``: readiness probe for the driver."""
        return web.Response(text="ok")

    async def not_found_handler(self, request: web.Request) -> web.Response:
        """Unknown control paths are 404 rather than being served as application traffic."""
        return web.Response(status=404, text="unknown harness endpoint")

    async def session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """Own the single shared keep-alive client session for the app's lifetime."""
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=_CLIENT_TOTAL_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            try:
                yield
            finally:
                self._session = None


_SERVICE_KEY = web.AppKey("demo_service", DemoService)


def build_app(config: DemoConfig) -> web.Application:
    """Build the aiohttp application; separate from :func:`main` so tests can run it in-process."""
    service = DemoService(config)
    app = web.Application()
    app[_SERVICE_KEY] = service
    app.cleanup_ctx.append(service.session_ctx)
    app.router.add_get(HARNESS_PREFIX + "stats", service.stats_handler)
    app.router.add_post(HARNESS_PREFIX + "reset-max", service.reset_max_handler)
    app.router.add_get(HARNESS_PREFIX + "health", service.health_handler)
    app.router.add_route("*", HARNESS_PREFIX + "{tail:.*}", service.not_found_handler)
    app.router.add_route("*", "/{tail:.*}", service.handle)
    return app


def service_of(app: web.Application) -> DemoService:
    """Return the :class:`DemoService` behind an app made by :func:`build_app` (for tests)."""
    return app[_SERVICE_KEY]


def _bind(port: int, host: str = "127.0.0.1") -> socket.socket:
    """Bind ourselves so port 0 works and the real port can be reported."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _new_loop() -> asyncio.AbstractEventLoop:
    """Use uvloop when it happens to be installed (faster), never require it."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(argv: list[str] | None = None) -> int:
    """Entry point: load the config, bind, announce the port on stdout, serve until SIGTERM.

    aiohttp's ``handle_signals`` turns SIGTERM/SIGINT into a graceful exit; the short
    shutdown timeout keeps exit well under a second even with requests in flight, and the
    return code is 0 so the driver can tell a clean stop from a crash.
    """
    parser = argparse.ArgumentParser(prog="python3 -m harness.mesh.local.demo_service",
                                     description="Demo service instance for the local mesh.")
    parser.add_argument("--config", required=True, type=Path, help="path of the JSON DemoConfig")
    args = parser.parse_args(argv)
    config = DemoConfig.from_json(args.config)
    sock = _bind(config.port, config.host)
    port = sock.getsockname()[1]
    print(json.dumps({"event": "listening", "instance": config.instance, "host": config.host,
                      "port": port}), flush=True)
    web.run_app(
        build_app(config),
        sock=sock,
        print=None,
        access_log=None,
        handle_signals=True,
        backlog=_BACKLOG,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=_SERVER_KEEPALIVE_S,
        loop=_new_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
