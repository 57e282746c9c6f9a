"""The real measurements of ``python -m bench``: every benchmark, repetition by repetition, raw samples out.

Why one demo mesh per repetition: ``up`` is itself a figure, and a fresh mesh per repetition also means
the other mesh benchmarks see a mesh in the state a suite meets it in, not one warmed by earlier load.
Each mesh lives in a private temporary state directory (its own ports and base ids, nothing shared with
meshes other people run on this machine) and is taken down in ``finally``.

Why failures are caught per benchmark: one that breaks (a timeout on a loaded machine, a missing binary)
must not hide the others' figures. Its first error is recorded and its figures are null; Ctrl-C and
SIGTERM are not caught, so they still stop the run (every mesh and child going down on the way).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.activation import envoy_reload_ms, fault_activation_ms, net_fault_activation_ms
from bench.load_cost import load_rates
from bench.load_workers import worker_rates
from bench.memory import mesh_pss_mib
from bench.mesh_bench import load_env, scrape_ms, timed_up
from bench.plan import Measured, Plan
from bench.report import Result
from bench.suite import standard_suite_s
from bench.toxiproxy_cost import l4_rates
from harness.mesh import open_driver

__all__ = ["REPO", "measure"]

REPO = Path(__file__).resolve().parents[1]
MESH_BENCHMARKS = ("mesh memory", "fault activation", "net fault activation", "scrape", "load")
"""What needs a running mesh: in a repetition whose mesh did not start, each of these failed too."""

Say = Callable[[str], None]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " | ")[:400]


class _Attempts:
    """Runs each benchmark so that its failure is recorded (the first, with its repetition) and the run goes on."""

    def __init__(self, measured: Measured, say: Say) -> None:
        self.measured = measured
        self.say = say

    @contextlib.contextmanager
    def __call__(self, benchmark: str, rep: int | None = None) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.fail(benchmark, _error(exc), rep)

    def fail(self, benchmark: str, message: str, rep: int | None = None) -> None:
        where = f"repetition {rep + 1}: " if rep is not None else ""
        self.measured.errors.setdefault(benchmark, where + message)
        self.say(f"{benchmark} FAILED: {where}{message}")


def measure(plan: Plan, env_path: Path, say: Say) -> Measured:
    """Every benchmark of ``plan``; raw samples per repetition, errors and skips recorded."""
    measured = Measured.empty(plan.reps)
    attempt = _Attempts(measured, say)
    env, env_file = load_env(env_path)
    for rep, samples in enumerate(measured.repetitions):
        say(f"repetition {rep + 1}/{plan.reps}: a bare Envoy's route file rewritten {plan.reload_pairs * 2} times")
        with attempt("envoy reload", rep):
            samples["envoy_reload_ms"] = envoy_reload_ms(plan.reload_pairs)
        _mesh_repetition(plan, env, env_file, rep, samples, attempt, say)
    say(f"L4 proxies: embedded proxy and Envoy tcp_proxy, {plan.reps} rounds of {plan.l4_s:g} s each")
    with attempt("l4 proxy"):
        for samples, (proxied, tcp) in zip(measured.repetitions, l4_rates(plan.l4_s, plan.reps), strict=True):
            samples["l4_proxy_rps"] = [proxied]
            samples["envoy_tcp_proxy_rps"] = [tcp]
    measured.extra += _workers(plan, say)
    if plan.suite:
        say("standard suites: python -m pytest suites/ (about 4 minutes)")
        with attempt("standard suite"):
            measured.repetitions[0]["standard_suite_s"] = [standard_suite_s(REPO)]
    else:
        measured.skipped["standard suite"] = "--quick (the key is null)"
    measured.meta |= {"environment": str(env_file)}
    return measured


def _mesh_repetition(plan: Plan, env: Any, env_file: Path, rep: int, samples: dict[str, list[float]],
                     attempt: _Attempts, say: Say) -> None:
    """One demo mesh: up, memory, fault activation, net fault, scrape, load, memory again, down."""
    with tempfile.TemporaryDirectory(prefix="bench-mesh-") as tmp:
        mesh = open_driver(env, env_file, state_dir=Path(tmp))
        try:
            say(f"repetition {rep + 1}/{plan.reps}: mesh up")
            with attempt("mesh up", rep):
                up_s, phases = timed_up(mesh)
                samples["mesh_up_s"] = [up_s]
                say("  up phases: " + ", ".join(f"{name} {s:.2f} s" for name, s in phases.items()))
            if "mesh_up_s" not in samples:
                for benchmark in MESH_BENCHMARKS:
                    attempt.fail(benchmark, "the mesh did not start", rep)
                return
            with attempt("mesh memory", rep):
                samples["mesh_pss_mib"] = [mesh_pss_mib(mesh)]
            _mesh_benchmarks(plan, mesh, env, rep, samples, attempt, say)
            with attempt("mesh memory after the load", rep):
                samples["mesh_pss_after_load_mib"] = [mesh_pss_mib(mesh)]
        finally:
            with attempt("mesh down", rep):  # a failing teardown is recorded, and the run goes on
                try:
                    resisted = mesh.down()
                    if resisted:
                        say(f"WARNING: processes that resisted SIGKILL: {resisted}")
                finally:
                    mesh.close()


def _mesh_benchmarks(plan: Plan, mesh: Any, env: Any, rep: int, samples: dict[str, list[float]],
                     attempt: _Attempts, say: Say) -> None:
    say(f"  fault activation: {plan.activation_changes} aborts on the entry service, applied and undone")
    with attempt("fault activation", rep):
        samples["activation_ms"], samples["rollback_ms"] = fault_activation_ms(
            mesh, env.spec.gateway.service, plan.activation_changes)
    say(f"  net fault activation: {plan.net_changes} latency toxics on the first edge")
    with attempt("net fault activation", rep):
        caller, callee = env.spec.edges()[0]
        samples["net_activation_ms"] = net_fault_activation_ms(mesh, caller, callee, plan.net_changes)
    say(f"  scrape: {plan.scrape_samples} scrapes of every Envoy and app")
    with attempt("scrape", rep):
        samples["scrape_ms"] = scrape_ms(mesh, env, plan.scrape_samples)
    say(f"  load: bare Locust and the harness's, {plan.load_users} users × {plan.load_s} s each")
    with attempt("load", rep):
        bare, harness = load_rates(mesh.gateway_url, plan.load_users, plan.load_s, bare_first=rep % 2 == 0)
        samples["load_bare_rps"] = [bare]
        samples["load_harness_rps"] = [harness]


def _workers(plan: Plan, say: Say) -> list[Result]:
    """Locust's workers against one process (informative; ``docs/concepts/suites.md`` quotes the row)."""
    workers = max(2, os.cpu_count() or 2)
    say(f"load: one Locust process, then {workers} workers, each asked more than it can send")
    try:
        return worker_rates(workers, plan.workers_s)
    except Exception as exc:
        return [Result("load: Locust workers", error=_error(exc))]
