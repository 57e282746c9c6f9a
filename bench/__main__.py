"""``python -m bench [--quick] [--reps N] [--json FILE] [--check]``: run the benchmarks, print the table.

``--json FILE`` writes one flat JSON object with exactly the keys of :data:`bench.figures.JSON_KEYS`:
each figure the median over repetitions, with ``<key>_min`` and ``<key>_max`` beside it; null for a
figure whose benchmark failed, and for ``standard_suite_s`` under ``--quick`` (the suites are not run).
Beside it, ``<stem>.details.json`` keeps what the figures leave out: the run's metadata (CPUs, load
average, quick, repetitions, the plan), the table's rows, every repetition's raw samples and the errors.

It reports and exits 0, so a slow shared machine never turns CI red; ``--check`` is for whoever wants
the checked goals enforced (exit 1 if one is missed or a benchmark could not run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.figures import assemble
from bench.plan import Measured, Plan, plan_for
from bench.report import Result, exit_code, format_table, to_json
from bench.table import rows
from harness.runner.session import interruptible

__all__ = ["DEFAULT_ENV", "Runner", "details_path", "main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ENV = REPO / "environments" / "local.yaml"

Runner = Callable[[Plan, Path, Callable[[str], None]], Measured]
"""What measures: the real one is :func:`bench.runner.measure`; tests pass one that returns fake samples."""


def _say(message: str) -> None:
    """Progress goes to stderr so that stdout is just the table."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, got {value}")
    return value


def details_path(json_file: Path) -> Path:
    """``bench.json`` -> ``bench.details.json``, in the same directory."""
    return json_file.with_name(f"{json_file.stem}.details.json")


def _real_runner(plan: Plan, env: Path, say: Callable[[str], None]) -> Measured:
    """Imported on use: the measurements pull in the mesh drivers, which a test of the CLI needs not."""
    from bench.runner import measure

    return measure(plan, env, say)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers of Envoys, e.g. 7,25,50,100; got {text!r}") from None
    if any(n < 2 for n in sizes):
        raise argparse.ArgumentTypeError("every size counts at least 2 Envoys (the gateway and one sidecar)")
    return sizes


Scaler = Callable[[Sequence[int], bool, Callable[[str], None]], tuple[dict[str, Any], dict[str, str]]]
"""What measures the generated meshes (:func:`bench.scale.scale_figures`); tests pass a fake."""


def _real_scaler(sizes: Sequence[int], quick: bool, say: Callable[[str], None]) -> tuple[dict[str, Any],
                                                                                     dict[str, str]]:
    """Imported on use, as :func:`_real_runner`."""
    from bench.scale import scale_figures

    return scale_figures(sizes, 5 if quick else 20, 5 if quick else 10, say)


def _finite(repetitions: list[dict[str, list[float]]]) -> list[dict[str, list[float | None]]]:
    """Raw samples as JSON can hold them: a NaN or infinity (never expected) becomes null."""
    return [{name: [v if math.isfinite(v) else None for v in values] for name, values in rep.items()}
            for rep in repetitions]


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def main(argv: Sequence[str] | None = None, runner: Runner = _real_runner,
         scaler: Scaler = _real_scaler) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true",
                        help="2 repetitions with few samples, no standard suites (standard_suite_s is null)")
    parser.add_argument("--reps", type=_positive, metavar="N", help="repetitions (default: 3, or 2 with --quick)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write the figures here (flat JSON), and the details beside it as <stem>.details.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a checked goal is missed or a benchmark fails")
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV, help="environment file (default: %(default)s)")
    parser.add_argument("--scale", nargs="?", const="7,25,50,100", type=_sizes, metavar="SIZES",
                        help="also a generated mesh of each size (default 7,25,50,100 Envoys): "
                             "<figure>_<n> keys and their fits (bench/scale.py)")
    args = parser.parse_args(argv)
    plan = plan_for(args.quick, args.reps)
    started = time.perf_counter()
    load_before = _loadavg()
    with interruptible():  # SIGTERM unwinds like Ctrl-C, so every mesh and child is stopped in finally
        measured = runner(plan, args.env, _say)
        scale: dict[str, Any] = {}
        if args.scale:
            scale, scale_errors = scaler(args.scale, plan.quick, _say)
            measured.errors |= scale_errors
    total = time.perf_counter() - started
    figures = {**assemble(measured.repetitions, failed=measured.errors), **scale}
    results: list[Result] = rows(figures, measured)
    if args.scale:
        from bench.scale import scale_rows

        results += scale_rows(scale, measured.errors, args.scale)
    meta = {**measured.meta, "quick": plan.quick, "repetitions": plan.reps, "plan": dataclasses.asdict(plan),
            "cpus": os.cpu_count(), "total_s": round(total, 2), "loadavg_before": load_before,
            "loadavg_after": _loadavg()}
    print(format_table(results))
    print(f"\n{plan.reps} repetitions{' (--quick)' if plan.quick else ''}; total {total:.1f} s; load average "
          f"{load_before} before, {meta['loadavg_after']} after ({meta['cpus']} CPUs)")
    if args.json:
        _write(args.json, figures)
        _write(details_path(args.json), {**to_json(results, meta), "figures": figures,
                                         "repetitions": _finite(measured.repetitions), "errors": measured.errors,
                                         "skipped": measured.skipped})
        _say(f"figures written to {args.json}, details to {details_path(args.json)}")
    return exit_code(results, args.check)


if __name__ == "__main__":
    sys.exit(main())
