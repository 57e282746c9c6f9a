"""``python -m bench [--quick] [--json FILE] [--check]``: run the benchmarks, print the table.

It reports and exits 0, so a slow shared machine never turns CI red; ``--check`` is for whoever wants
the ratio goals enforced (exit 1 if one is missed or a benchmark could not run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.activation import envoy_reload_ms, fault_activation_ms, net_fault_activation_ms, percentile
from bench.baseline import BaselineStart, start_baseline
from bench.load_workers import worker_rates
from bench.mesh_bench import load_env, request_path, scrape_cost, timed_up
from bench.report import Goal, Result, exit_code, format_table, to_json
from harness.mesh import open_driver
from harness.runner.session import interruptible

__all__ = ["main", "run"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENV = REPO / "environments" / "local.yaml"

Runner = Callable[[bool, Path, Callable[[str], None]], tuple[list[Result], dict[str, Any]]]


def _say(message: str) -> None:
    """Progress goes to stderr so that stdout is just the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " | ")[:400]


def _fmt_phases(samples: list[dict[str, float]]) -> str:
    if not samples:
        return ""
    names = list(samples[0])
    return ", ".join(f"{n} {statistics.median(s[n] for s in samples):.2f} s" for n in names)


def _startup_rows(ups: list[float], bases: list[BaselineStart], downs: list[float],
                  phases: list[dict[str, float]], error: str) -> list[Result]:
    absolute_goal = Goal(10.0, kind="value", checked=False, label="≤ 10 s (stretch 5 s)")
    if error or not ups or not bases:
        error = error or "no successful repetition"
        return [Result("mesh start-up", goal=Goal(8), error=error),
                Result("mesh start-up (absolute)", goal=absolute_goal, error=error)]
    up = statistics.median(ups)
    envoy = statistics.median(b.envoy_s for b in bases)
    app = statistics.median(b.app_s for b in bases)
    return [
        Result("mesh start-up", up, statistics.median(b.total_s for b in bases), goal=Goal(8),
               note=f"median of {len(ups)}; baseline = 1 bare Envoy ({envoy:.2f} s) then 1 demo app "
                    f"({app:.2f} s); mesh = 7 Envoys + 6 apps in parallel; up phases: {_fmt_phases(phases)}"),
        Result("mesh start-up (absolute)", up, goal=absolute_goal,
               note=f"samples {', '.join(f'{u:.2f}' for u in ups)} s; stretch 5 s "
                    f"{'met' if up <= 5 else 'not met'}; down took {statistics.median(downs):.2f} s (median)"),
    ]


def run(quick: bool, env_path: Path, say: Callable[[str], None] = _say) -> tuple[list[Result], dict[str, Any]]:
    """Every benchmark; the last start-up repetition's mesh is reused for the request and scrape ones.

    Each mesh lives in a private temporary state directory (its own ports and base ids, nothing shared
    with meshes other people run on this machine) and is taken down in ``finally``.
    """
    reps = 1 if quick else 3
    load_s = 1.5 if quick else 3.0
    env, env_file = load_env(env_path)
    ups: list[float] = []
    downs: list[float] = []
    bases: list[BaselineStart] = []
    phases: list[dict[str, float]] = []
    startup_error = ""
    later: list[Result] = []
    for rep in range(1, reps + 1):
        say(f"start-up {rep}/{reps}: baseline (bare Envoy, then demo app)")
        try:
            bases.append(start_baseline())
        except Exception as exc:
            startup_error = f"baseline: {_error(exc)}"
            break
        say(f"start-up {rep}/{reps}: mesh up")
        with tempfile.TemporaryDirectory(prefix="bench-mesh-") as tmp:
            mesh = open_driver(env, env_file, state_dir=Path(tmp))
            try:
                up_s, spent = timed_up(mesh)
                ups.append(up_s)
                phases.append(spent)
                if rep == reps:
                    later = _with_mesh(mesh, env, load_s, say)
            except Exception as exc:
                startup_error = f"mesh up: {_error(exc)}"
                break
            finally:
                t0 = time.perf_counter()
                resisted = mesh.down()
                downs.append(time.perf_counter() - t0)
                mesh.close()
                if resisted:
                    say(f"WARNING: processes that resisted SIGKILL: {resisted}")
    if startup_error and not later:
        later = [Result("request path", error="mesh did not start"), Result("scrape", error="mesh did not start")]
    workers = max(2, os.cpu_count() or 2)
    say(f"load: one Locust process, then {workers} workers, each asked more than it can send")
    try:
        later += worker_rates(workers, 2.0 if quick else 4.0)
    except Exception as exc:
        later.append(Result("load: Locust workers", error=_error(exc)))
    meta = {"quick": quick, "repetitions": reps, "environment": str(env_file), "cpus": os.cpu_count()}
    return _startup_rows(ups, bases, downs, phases, startup_error) + later, meta


def _with_mesh(mesh: Any, env: Any, load_s: float, say: Callable[[str], None]) -> list[Result]:
    """The benchmarks that need a running mesh; one failing does not hide the other."""
    out: list[Result] = []
    say(f"request path: 20 tasks × {load_s:g} s direct, then through the gateway")
    try:
        out += request_path(mesh, load_s)
    except Exception as exc:
        out.append(Result("request path", error=_error(exc)))
    say("activation: a 100% abort on the entry service, and a net-latency toxic, until the probes see them")
    try:
        out += activation_rows(mesh, env, 5 if load_s < 2 else 20)
    except Exception as exc:
        out.append(Result("fault activation", error=_error(exc)))
    say("scrape: 20 scrapes, 20 bare GETs, then the background scraper for 3 s")
    try:
        out += scrape_cost(mesh, env)
    except Exception as exc:
        out.append(Result("scrape", error=_error(exc)))
    return out


def activation_rows(mesh: Any, env: Any, reps: int) -> list[Result]:
    """A fault's activation and rollback as traffic sees them, against a hand-rewritten route file's."""
    floor = envoy_reload_ms(reps)
    on, off = fault_activation_ms(mesh, env.spec.gateway.service, reps)
    edge = env.spec.edges()[0]
    net = net_fault_activation_ms(mesh, edge[0], edge[1], max(3, reps // 4))
    base = statistics.median(floor)
    note = f"{reps} changes each; raw floor = a bare Envoy's route file rewritten by hand, p50 {base:.1f} ms"
    return [
        Result("fault activation p50 (seen by traffic)", statistics.median(on), base, unit="ms", note=note),
        Result("fault activation p99", percentile(on, 0.99), percentile(floor, 0.99), unit="ms",
               goal=Goal(50, kind="value", checked=False)),
        Result("fault rollback p99", percentile(off, 0.99), percentile(floor, 0.99), unit="ms",
               goal=Goal(50, kind="value", checked=False)),
        Result("net fault activation p99", percentile(net, 0.99), unit="ms",
               note=f"300 ms latency toxic on {edge[0]}->{edge[1]}, {len(net)} changes; first probe held by it"),
    ]


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None, runner: Runner = run) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="one start-up repetition, 1.5 s load per path")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a ratio goal is missed or a benchmark fails")
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV, help="environment file (default: %(default)s)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    load_before = _loadavg()
    with interruptible():  # SIGTERM unwinds like Ctrl-C, so every mesh and child is stopped in finally
        results, meta = runner(args.quick, args.env, _say)
    total = time.perf_counter() - started
    meta |= {"total_s": round(total, 2), "loadavg_before": load_before, "loadavg_after": _loadavg()}
    print(format_table(results))
    print(f"\ntotal {total:.1f} s; load average {load_before} before, {meta['loadavg_after']} after "
          f"({meta.get('cpus', '?')} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(to_json(results, meta), indent=2) + "\n")
    return exit_code(results, args.check)


if __name__ == "__main__":
    sys.exit(main())
