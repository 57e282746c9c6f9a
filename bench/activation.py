"""How quickly a change reaches traffic: a fault's activation and rollback as a client sees them, and the raw
floor those are measured against (an Envoy route file rewritten by hand).

Why traffic and not the admin endpoint: every verdict's window of uncertainty is the time between the
harness saying "the fault is on" and the requests actually meeting it. ``apply`` returns once the admin
endpoint shows the change; the probe here keeps requests going from several clients and notes the first
answer that shows the change, so what is measured is what a request meets.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.baseline import HCM, ROUTER, _child, allocate_ports, envoy_binary, wait_until
from bench.figures import percentile
from harness.mesh.intents import HttpFault, NetworkToxic

__all__ = ["Probe", "envoy_reload_ms", "fault_activation_ms", "net_fault_activation_ms", "percentile"]

PROBE_CLIENTS = 4
"""Clients sending back to back: with a ~10 ms request tree, a change is seen within a few ms of taking effect."""
SEEN_TIMEOUT_S = 10.0
HELD_WAIT_S = 1.5
"""How long held answers are still collected after the first: a new mTLS connection through a 300 ms toxic is
held about 950 ms, so one sent earlier than the first to end is found."""
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


@dataclass(frozen=True)
class Seen:
    sent: float
    done: float
    status: int


class Probe:
    """``PROBE_CLIENTS`` threads requesting ``url`` back to back, each answer kept with when it was sent."""

    def __init__(self, url: str, clients: int = PROBE_CLIENTS) -> None:
        self.url = url
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                sent = time.perf_counter()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.seen.append(Seen(sent, time.perf_counter(), status))

    def first(self, after: float, shows: Callable[[Seen], bool], timeout_s: float | None = None) -> Seen:
        """The first answer to a request sent at or after ``after`` that ``shows`` the change (waits for it,
        ``SEEN_TIMEOUT_S`` unless told)."""
        timeout_s = SEEN_TIMEOUT_S if timeout_s is None else timeout_s
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            with self._lock:
                hits = [s for s in self.seen if s.sent >= after and shows(s)]
            if hits:
                return min(hits, key=lambda s: s.done)
            time.sleep(0.001)
        raise TimeoutError(f"no answer from {self.url} showed the change within {timeout_s:g}s")

    def earliest_sent(self, after: float, shows: Callable[[Seen], bool]) -> float:
        """When the earliest request sent at or after ``after`` whose answer ``shows`` the change was sent."""
        with self._lock:
            return min(s.sent for s in self.seen if s.sent >= after and shows(s))

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        for t in self._threads:
            t.start()
        try:
            self.first(time.perf_counter(), lambda s: s.status == 200)
            yield self
        finally:
            self._stop.set()
            for t in self._threads:
                t.join(timeout=10)


# ------------------------------------------------------------------------------------------- the raw floor
def _status_is(status: int) -> Callable[[Seen], bool]:
    return lambda s: s.status == status


def _route_file(status: int, version: int) -> dict[str, Any]:
    return {"version_info": str(version), "resources": [{
        "@type": ROUTE, "name": "bench",
        "virtual_hosts": [{"name": "all", "domains": ["*"],
                           "routes": [{"match": {"prefix": "/"},
                                       "direct_response": {"status": status,
                                                           "body": {"inline_string": str(status)}}}]}]}]}


def _write_moved(path: Path, data: dict[str, Any]) -> None:
    """Write next to ``path``, then move over it: the move is what Envoy's watched directory reacts to."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def envoy_reload_ms(reps: int) -> list[float]:
    """One bare Envoy with its route from a watched file: rewrite the file (200 <-> 503) by hand and time until
    a probe sees the new status. The floor of any file-driven change to a local Envoy: no harness code."""
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        root = Path(tmp)
        xds = root / "xds"
        xds.mkdir()
        route = xds / "rds.json"
        _write_moved(route, _route_file(200, 1))
        admin, listener = allocate_ports(2)
        hcm = {"@type": HCM, "stat_prefix": "bench",
               "rds": {"route_config_name": "bench",
                       "config_source": {"resource_api_version": "V3", "path_config_source": {
                           "path": str(route), "watched_directory": {"path": str(xds)}}}},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
        bootstrap = {"node": {"id": "bench", "cluster": "bench"},
                     "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
                     "static_resources": {"listeners": [{
                         "name": "bench",
                         "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
                         "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                         "typed_config": hcm}]}]}]}}
        (root / "bootstrap.json").write_text(json.dumps(bootstrap))
        base_id = str(random.randint(1_000_000, 9_000_000))  # above the mesh's range, as the start-up baseline's
        argv = [envoy_binary(), "-c", str(root / "bootstrap.json"), "--base-id", base_id, "--concurrency", "1",
                "-l", "warning"]
        out: list[float] = []
        with _child(argv, root / "envoy.log") as proc, httpx.Client(timeout=2.0) as client:
            url = f"http://127.0.0.1:{listener}/"

            def answers() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return client.get(url).status_code == 200
                return False

            wait_until(answers, proc, "bare Envoy", root / "envoy.log")
            with Probe(url).running() as probe:
                for n in range(reps * 2):
                    status = 503 if n % 2 == 0 else 200
                    t0 = time.perf_counter()
                    _write_moved(route, _route_file(status, n + 2))
                    seen = probe.first(t0, _status_is(status))
                    out.append((seen.done - t0) * 1000)
        return out


# ------------------------------------------------------------------------------------------- the harness
def fault_activation_ms(mesh: Any, entry: str, reps: int, path: str = "/") -> tuple[list[float], list[float]]:
    """(activation, rollback) in ms: the driver prepares and applies a 100% http-abort (503) on the entry
    service, until a probe through the gateway gets a 503; then undoes it, until a probe gets a 200.

    ``path`` is what the probe asks the gateway for; the entry service's own health path
    (``/__harness/health``) crosses the same Envoys and the fault but calls no further service, for
    topologies where one request through everything takes longer than the change being timed."""
    on: list[float] = []
    off: list[float] = []
    with Probe(mesh.gateway_url + path).running() as probe:
        for _ in range(reps):
            t0 = time.perf_counter()
            prepared = mesh.prepare(HttpFault(entry, 100.0, abort_status=503))
            mesh.apply(prepared)
            try:
                on.append((probe.first(t0, lambda s: s.status == 503).done - t0) * 1000)
            finally:  # never leave the fault behind for the benchmarks that follow on this mesh
                t1 = time.perf_counter()
                mesh.undo(prepared.undo)
            off.append((probe.first(t1, lambda s: s.status == 200).done - t1) * 1000)
    return on, off


def net_fault_activation_ms(mesh: Any, caller: str, callee: str, reps: int, latency_ms: float = 300.0) -> list[float]:
    """ms from asking for a ``latency_ms`` net-latency toxic on ``caller -> callee`` until traffic entering
    the gateway is held by it: the earliest-sent probe request that was held (answered ``latency_ms`` late
    or more), by the time it was sent.

    Not by its answer less the latency: the toxic delays every flight from the callee, and a new connection
    through it under mTLS takes three (the handshake's, then the answer: measured ~950 ms for a 300 ms
    toxic). The held requests are collected for ``HELD_WAIT_S`` after the first one ends, so that one sent
    earlier but still held longer is not missed. A request sent just before the toxic was in the path can
    still be held on its way back, so the figure may read low by at most one unheld request's duration (a
    few ms on the demo). Each toxic is removed, and the probe sees requests fast again, before the next."""
    out: list[float] = []
    held = latency_ms / 1000
    with Probe(mesh.gateway_url + "/").running() as probe:
        for _ in range(reps):
            t0 = time.perf_counter()
            prepared = mesh.prepare(NetworkToxic(caller, callee, "latency", (("latency", int(latency_ms)),)))
            mesh.apply(prepared)
            try:
                probe.first(t0, lambda s: s.status == 200 and s.done - s.sent >= held)
                time.sleep(HELD_WAIT_S)
                earliest = probe.earliest_sent(t0, lambda s: s.status == 200 and s.done - s.sent >= held)
                out.append(max(0.0, (earliest - t0) * 1000))
            finally:
                t1 = time.perf_counter()
                mesh.undo(prepared.undo)
            probe.first(t1, lambda s: s.status == 200 and s.done - s.sent < held / 2)
    return out
