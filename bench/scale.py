"""How the local mesh's cost grows with its size: a generated topology at 7, 25, 50 and 100 Envoys.

Real service graphs have 20 to 100 services with versions and replicas; the demo has 7 Envoys. The
generated graph is a binary tree of services below the gateway (service i calls 2i+1 and 2i+2, as a
fan-out of real calls), each service with two versions split 50/50 (the last with one when the count is
odd), so that a request through the gateway crosses every service once per version chosen.

For each size: ``up`` until a request passes end to end (``mesh_up_s_<n>``), the mesh's PSS
(``mesh_rss_mib_<n>``), the p99 of an abort's activation as traffic sees it (``fault_activation_ms_p99_<n>``,
probed on the entry app's health path: see :func:`measure_size`)
and one scrape of every Envoy and app (``scrape_ms_p50_<n>``). Growth is summarised by two fits over the
sizes: the least-squares slope (cost per Envoy) and the log-log slope, the exponent of a power law
through the points: 1 is linear growth, above 1 worse than linear.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

from bench.activation import fault_activation_ms
from bench.figures import percentile
from bench.memory import mesh_pss_mib
from bench.mesh_bench import load_env, scrape_ms, timed_up
from bench.report import Goal, Result
from harness.mesh import open_driver

__all__ = ["SCALE_FIGURES", "SIZES", "fits", "scale_environment", "scale_figures", "scale_rows"]

SIZES = (7, 25, 50, 100)
HEALTH_PATH = "/__harness/health"
SCALE_FIGURES = ("mesh_up_s", "mesh_rss_mib", "fault_activation_ms_p99", "scrape_ms_p50")
Say = Callable[[str], None]


def scale_environment(envoys: int) -> dict[str, Any]:
    """An Environment document with ``envoys`` Envoys: the gateway and ``envoys - 1`` sidecars."""
    if envoys < 2:
        raise ValueError(f"at least 2 Envoys (the gateway and one sidecar), got {envoys}")
    instances = envoys - 1
    count = math.ceil(instances / 2)
    names = [f"svc{i:02d}" for i in range(count)]
    services: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        service: dict[str, Any] = {"name": name}
        if 2 * (i + 1) <= instances:
            service["versions"] = {"v1": {}, "v2": {}}
            service["split"] = {"v1": 50, "v2": 50}
        calls = [{"to": names[c]} for c in (2 * i + 1, 2 * i + 2) if c < count]
        if calls:
            service["calls"] = calls
        services.append(service)
    return {"apiVersion": "harness/v1", "kind": "Environment", "metadata": {"name": f"scale-{envoys}"},
            "spec": {"mesh": "local", "gateway": {"service": names[0], "port": 0}, "services": services,
                     "mtls": "strict", "metrics": {"source": "envoy"}, "safety": {"max_fault_percent": 100}}}


def measure_size(envoys: int, changes: int, scrapes: int, say: Say) -> dict[str, float]:
    """One generated mesh of ``envoys`` Envoys: up, memory, activation, scrape, down."""
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{envoys}-") as tmp:
        env_file = Path(tmp) / "environment.yaml"
        env_file.write_text(yaml.safe_dump(scale_environment(envoys), sort_keys=False))
        env, path = load_env(env_file)
        mesh = open_driver(env, path, state_dir=Path(tmp) / "state")
        try:
            up_s, _ = timed_up(mesh)
            say(f"  {envoys} Envoys up in {up_s:.2f} s")
            pss = mesh_pss_mib(mesh)
            # The tree calls every service on each request (through 100 Envoys, about 150 ms): the probe
            # asks the entry app's health path, through the same gateway, sidecar and fault, so that what
            # is timed is the change reaching traffic, not a request's walk through the whole tree.
            on, _off = fault_activation_ms(mesh, env.spec.gateway.service, changes, path=HEALTH_PATH)
            scrape = scrape_ms(mesh, env, scrapes)
        finally:
            try:
                mesh.down()
            finally:
                mesh.close()
    return {"mesh_up_s": up_s, "mesh_rss_mib": pss, "fault_activation_ms_p99": percentile(on, 0.99),
            "scrape_ms_p50": percentile(scrape, 0.5)}


def fits(sizes: Sequence[int], values: Sequence[float]) -> dict[str, float]:
    """Least-squares slope (per Envoy), its r², and the log-log slope (growth exponent) of ``values``."""
    if len(sizes) < 2 or any(v <= 0 for v in values):
        return {"per_envoy": math.nan, "r2": math.nan, "exponent": math.nan}
    line = stats.linregress(sizes, values)
    loglog = stats.linregress([math.log(n) for n in sizes], [math.log(v) for v in values])
    return {"per_envoy": float(line.slope), "r2": float(line.rvalue) ** 2, "exponent": float(loglog.slope)}


def scale_figures(sizes: Sequence[int], changes: int, scrapes: int, say: Say) -> tuple[dict[str, float | None],
                                                                                       dict[str, str]]:
    """``<figure>_<n>`` for every size and figure, ``<figure>_per_envoy``/``_exponent`` fits; errors by size."""
    out: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    measured: dict[int, dict[str, float]] = {}
    for n in sizes:
        say(f"scale: a generated mesh of {n} Envoys")
        try:
            measured[n] = measure_size(n, changes, scrapes, say)
        except Exception as exc:
            errors[f"scale {n}"] = f"{type(exc).__name__}: {exc}".replace("\n", " | ")[:400]
            say(f"scale {n} FAILED: {errors[f'scale {n}']}")
    for name in SCALE_FIGURES:
        for n in sizes:
            out[f"{name}_{n}"] = round(measured[n][name], 4) if n in measured else None
        done = [n for n in sizes if n in measured]
        fitted = fits(done, [measured[n][name] for n in done])
        for what, value in fitted.items():
            out[f"{name}_{what}"] = round(value, 4) if math.isfinite(value) else None
    return out, errors


def scale_rows(scale: dict[str, float | None], errors: dict[str, str], sizes: Sequence[int]) -> list[Result]:
    """The table's rows for the generated meshes: one per size (its error instead, if it failed), and the
    growth of each figure. The issue's goal, fault activation under 100 ms p99 at 100 Envoys, is shown."""
    out: list[Result] = []
    for n in sizes:
        if f"scale {n}" in errors:
            out.append(Result(f"scale: {n} Envoys", error=errors[f"scale {n}"]))
            continue
        goal = Goal(100, kind="value", checked=False) if n == 100 else None
        out.append(Result(f"scale: {n} Envoys, activation p99", scale.get(f"fault_activation_ms_p99_{n}") or math.nan,
                          unit="ms", goal=goal,
                          note=f"up {_num(scale, f'mesh_up_s_{n}', '.2f')} s, PSS "
                               f"{_num(scale, f'mesh_rss_mib_{n}', '.0f')} MiB, scrape p50 "
                               f"{_num(scale, f'scrape_ms_p50_{n}', '.1f')} ms"))
    for name in SCALE_FIGURES:
        per, exponent = scale.get(f"{name}_per_envoy"), scale.get(f"{name}_exponent")
        if per is not None and exponent is not None:
            out.append(Result(f"scale: {name} growth exponent", exponent, unit="", goal=Goal(1.1, kind="value",
                              checked=False, label="≤ 1.1 (linear)"),
                              note=f"least squares {per:.3g} per Envoy, r² {_num(scale, f'{name}_r2', '.3f')}"))
    return out


def _num(figures: dict[str, float | None], key: str, spec: str) -> str:
    value = figures.get(key)
    return "-" if value is None or not math.isfinite(value) else format(value, spec)
