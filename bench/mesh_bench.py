"""The three mesh benchmarks: start-up, request path overhead, metric scrape cost.

Each returns :class:`~bench.report.Result` rows whose baseline was measured in the same run, on the
same machine, a moment apart (see ``bench/report.py`` for why ratios).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.load import run_closed_loop
from bench.report import Goal, Result
from harness.mesh.base import GATEWAY, MeshDriver, MetricSource
from harness.model.environment import Environment
from harness.model.loader import load_environment

__all__ = ["PHASES", "load_env", "request_path", "scrape_cost", "source_for", "timed_phases", "timed_up"]

PHASES = ("_preflight", "_write_all_configs", "_wait_ready")
"""Steps of the local mesh's ``up`` timed separately, so a slow start-up says where its time went. The
benchmarks measure the local mesh (its processes, admin ports and apps): they take its driver as
``Any`` where they read what only that driver has (``layout``, ``admin_stats``, ``app_stats``)."""


@contextmanager
def timed_phases(mesh: Any, phases: tuple[str, ...] = PHASES) -> Iterator[dict[str, float]]:
    """Time the given methods of this one mesh object (instance attributes; the class is untouched)."""
    spent: dict[str, float] = {}

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return timed

    for name in phases:
        setattr(mesh, name, wrap(name, getattr(mesh, name)))
    try:
        yield spent
    finally:
        for name in phases:
            delattr(mesh, name)


def timed_up(mesh: Any) -> tuple[float, dict[str, float]]:
    """Wall seconds of ``mesh.up()`` and of its main phases; the rest is CA, spawning and bookkeeping."""
    with timed_phases(mesh) as spent:
        t0 = time.perf_counter()
        mesh.up()
        total = time.perf_counter() - t0
    phases = {name.strip("_"): spent.get(name, 0.0) for name in PHASES}
    phases["other (CA, spawn)"] = total - sum(phases.values())
    return total, phases


# ----------------------------------------------------------------------------------- request path
_DOWNSTREAM = r"^http\.(inbound|outbound_[^.]*|gateway)\.downstream_rq_total$"


def _mesh_counts(mesh: Any) -> tuple[float, float, float]:
    """(requests the gateway listener took, listener traversals on all Envoys, requests all apps took)."""
    gateway = listeners = 0.0
    for node in mesh.nodes():
        for value in mesh.admin_stats(node, _DOWNSTREAM).values():
            listeners += float(value)
            if node.id == GATEWAY:
                gateway += float(value)
    apps = sum(float(mesh.app_stats(inst).get("requests", 0)) for inst in mesh.layout.instances)
    return gateway, listeners, apps


def request_path(mesh: Any, duration_s: float, concurrency: int = 20) -> list[Result]:
    """Closed-loop throughput and p50 through the gateway vs straight to the ratings app, same run.

    The direct path is the cheapest thing a request can do in the demo (one app, no Envoy, the 2 ms
    latency ratings is configured with); the gateway path is the whole tree. The hop counts in the note
    are measured from the Envoy and app counters during the gateway run, not assumed.
    """
    direct_url = f"http://127.0.0.1:{mesh.layout.of('ratings')[0].app_port}/"
    direct = run_closed_loop(direct_url, concurrency, duration_s)
    before = _mesh_counts(mesh)
    gateway = run_closed_loop(mesh.gateway_url + "/", concurrency, duration_s)
    after = _mesh_counts(mesh)
    gw_rq = after[0] - before[0]
    hops = (after[1] - before[1]) / gw_rq if gw_rq else float("nan")
    apps = (after[2] - before[2]) / gw_rq if gw_rq else float("nan")
    load = f"{concurrency} tasks × {duration_s:g} s each path"
    failures = f"; failed: gateway {gateway.failed}, direct {direct.failed}" if gateway.failed or direct.failed \
        else ""
    return [
        Result("request path: throughput", gateway.rps, direct.rps, unit="req/s",
               note=f"gateway vs ratings app direct, {load}; per gateway request {hops:.1f} Envoy listener "
                    f"traversals and {apps:.1f} app requests (measured){failures}"),
        Result("request path: p50 latency", gateway.p50_s * 1000, direct.p50_s * 1000, unit="ms",
               note=f"p99 gateway {gateway.p99_s * 1000:.1f} ms, direct {direct.p99_s * 1000:.1f} ms; "
                    "load generator shares the 2 cores with the mesh"),
    ]


# ----------------------------------------------------------------------------------- scrape
def source_for(mesh: MeshDriver, env: Environment) -> MetricSource:
    """The metric source exactly as ``MeshSession.open`` gets it: from the driver."""
    return mesh.metric_source(env.spec.metrics.scrape_interval)


def _median_time(fn: Callable[[], object], samples: int) -> float:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scrape_cost(mesh: Any, env: Environment, samples: int = 20, cpu_window_s: float = 3.0) -> list[Result]:
    """One ``scrape()`` vs one bare admin GET, then the background scraper's CPU share of one core.

    The CPU share is this process's CPU time (all threads) over wall time while nothing but the
    scraper runs in it: what a run pays for having metrics on.
    """
    ready_url = f"http://127.0.0.1:{mesh.layout.gateway_admin_port}/ready"
    source: Any = source_for(mesh, env)  # the local mesh's EnvoySource: its nodes, apps and hooks are timed
    try:
        with httpx.Client(timeout=2.0) as client:
            client.get(ready_url)  # keep-alive connection open, as the scraper's are after its first scrape
            ready_s = _median_time(lambda: client.get(ready_url), samples)
        snap = source.scrape()
        cpu0 = time.process_time()
        scrape_s = _median_time(source.scrape, samples)
        cpu_per_scrape = (time.process_time() - cpu0) / samples
        counters = sum(len(v) for v in snap.envoy.values())
        missing = len(source.nodes) - len(snap.envoy) + len(source.apps) - len(snap.apps)

        background: list[float] = []
        source.on_snapshot(lambda s: background.append(s.t))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        source.start()
        time.sleep(cpu_window_s)
        source.stop()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        scrapes = len(background)
    finally:
        source.close()
    return [
        Result("scrape: one scrape()", scrape_s, ready_s, goal=Goal(50),
               note=f"{len(source.nodes)} Envoys + {len(source.apps)} apps, {counters} counters, "
                    f"{missing} unreachable; baseline one GET /ready on one admin; median of {samples}; "
                    f"CPU {cpu_per_scrape * 1000:.1f} ms per scrape"),
        Result("scrape: CPU share", cpu, wall, goal=Goal(0.05, label="≤ 5% of a core"), ratio_style="%",
               note=f"background scraper for {wall:.1f} s at interval {source.interval_s:g} s "
                    f"({scrapes} scrapes); measured = CPU time, baseline = wall time"),
    ]


def load_env(path: Path) -> tuple[Environment, Path]:
    """Load and validate the environment file, as every harness command does."""
    loaded = load_environment(path)
    return loaded.model, loaded.path
