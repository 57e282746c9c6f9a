"""The demo mesh's own benchmarks: how long ``up`` takes (and where its time goes), and one metric scrape.

Each returns raw samples; :mod:`bench.figures` turns them into the figures of a run.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.mesh.base import MeshDriver, MetricSource
from harness.model.environment import Environment
from harness.model.loader import load_environment

__all__ = ["PHASES", "load_env", "scrape_ms", "source_for", "timed_phases", "timed_up"]

PHASES = ("_preflight", "_write_all_configs", "_wait_ready")
"""Steps of the local mesh's ``up`` timed separately, so a slow start-up says where its time went. The
benchmarks measure the local mesh: they take its driver as ``Any`` where they reach what only that driver
has (these phases)."""


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


# ----------------------------------------------------------------------------------- scrape
def source_for(mesh: MeshDriver, env: Environment) -> MetricSource:
    """The metric source exactly as ``MeshSession.open`` gets it: from the driver."""
    return mesh.metric_source(env.spec.metrics.scrape_interval)


def scrape_ms(mesh: Any, env: Environment, samples: int) -> list[float]:
    """Milliseconds of each of ``samples`` calls of ``scrape()``: one scrape of every Envoy and app of the mesh,
    through the metric source exactly as a run gets it, after one scrape that opens its connections (a
    run's scraper keeps them open from its first scrape on)."""
    source = source_for(mesh, env)
    out: list[float] = []
    try:
        source.scrape()
        for _ in range(samples):
            t0 = time.perf_counter()
            source.scrape()
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        source.close()
    return out


def load_env(path: Path) -> tuple[Environment, Path]:
    """Load and validate the environment file, as every harness command does."""
    loaded = load_environment(path)
    return loaded.model, loaded.path
