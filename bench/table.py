"""The readable table of a run: one row per figure (or per measured/baseline pair), with the issue's goals.

Why goals sit here and not in :mod:`bench.figures`: the JSON is numbers only, for scripts; a goal is a
judgement, for the reader and for ``--check``. Which goals ``--check`` enforces follows the rule of
:class:`~bench.report.Goal`: ratios against a baseline measured in the same run, and memory, which the
machine's load barely moves, are checked; absolute times are shown and not checked, since on a shared
2-core machine they miss for reasons that have nothing to do with the code.

Pure: figures and the run's record in, rows out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.figures import FIGURES, per_repetition
from bench.plan import Measured
from bench.report import Goal, Result, format_value

__all__ = ["ROWS", "Row", "rows", "table_keys"]

Figures = Mapping[str, float | None]


@dataclass(frozen=True)
class Row:
    """A table row read from the figures: ``measured`` (and ``baseline``, ``ratio``) name figure keys."""

    name: str
    benchmark: str
    measured: str
    unit: str
    baseline: str = ""
    ratio: str = ""
    goal: Goal | None = None
    note: str = ""


def _time(limit: float) -> Goal:
    return Goal(limit, kind="value", checked=False)


ROWS: tuple[Row, ...] = (
    Row("mesh up", "mesh up", "mesh_up_s", "s", goal=_time(5)),
    Row("mesh memory (PSS), idle after up", "mesh memory", "mesh_rss_mib", "MiB",
        goal=Goal(600, kind="value", label="≤ 600 MiB"),
        note="proportional set size summed over every process the driver recorded, and their children"),
    Row("Envoy route file reload p50 (raw floor)", "envoy reload", "envoy_reload_ms_p50", "ms",
        note="a bare Envoy's route file rewritten by hand until a probe sees it: no harness code"),
    Row("fault activation p50 (seen by traffic)", "fault activation", "fault_activation_ms_p50", "ms",
        baseline="envoy_reload_ms_p50", note="100% abort on the entry service; baseline the raw floor's p50"),
    Row("fault activation p99", "fault activation", "fault_activation_ms_p99", "ms", goal=_time(50)),
    Row("fault rollback p99", "fault activation", "rollback_ms_p99", "ms", goal=_time(50)),
    Row("net fault activation p99", "net fault activation", "net_fault_activation_ms_p99", "ms",
        note="300 ms latency toxic on the first edge, until a request through the gateway is held by it"),
    Row("load: harness vs bare Locust", "load", "load_rps_harness", "req/s", baseline="load_rps_bare_locust",
        ratio="load_ratio", goal=Goal(0.9, at_least=True),
        note="same gateway, users and duration; the harness records every request"),
    Row("L4: embedded proxy vs Envoy tcp_proxy", "l4 proxy", "l4_proxy_rps", "req/s",
        baseline="envoy_tcp_proxy_rps", ratio="l4_ratio", goal=Goal(0.5, at_least=True),
        note="keep-alive requests with 16 KiB answers over 8 connections, no toxic"),
    Row("scrape p50 (every Envoy and app)", "scrape", "scrape_ms_p50", "ms"),
    Row("standard suites (pytest suites/)", "standard suite", "standard_suite_s", "s", goal=_time(180)),
)


def _num(value: float | None) -> float:
    return math.nan if value is None else value


def _spread(figures: Figures, key: str, unit: str, count: int) -> str:
    low, high = figures.get(f"{key}_min"), figures.get(f"{key}_max")
    if low is None or high is None:
        return ""
    if count == 1:
        return "one repetition"
    return f"median of {count}, {format_value(low, unit)} to {format_value(high, unit)}"


def _counts(measured: Measured) -> dict[str, int]:
    return {f.key: len(per_repetition(f, measured.repetitions)) for f in FIGURES}


def rows(figures: Figures, measured: Measured) -> list[Result]:
    """The table's rows: each figure's median with its spread; an error row for a failed benchmark, a
    note for a skipped one; then ``measured.extra``."""
    counts = _counts(measured)
    out: list[Result] = []
    first_row: dict[str, str] = {}
    for row in ROWS:
        if row.benchmark in measured.errors:
            # The error in full once; the benchmark's other rows point at it.
            error = f"as {first_row[row.benchmark]}" if row.benchmark in first_row else measured.errors[row.benchmark]
            first_row.setdefault(row.benchmark, row.name)
            out.append(Result(row.name, unit=row.unit, goal=row.goal, error=error))
            continue
        if row.benchmark in measured.skipped:
            out.append(Result(row.name, unit=row.unit, note=f"skipped: {measured.skipped[row.benchmark]}"))
            continue
        value = figures.get(row.measured)
        if value is None:
            out.append(Result(row.name, unit=row.unit, goal=row.goal, error="not measured in any repetition"))
            continue
        ratio = figures.get(row.ratio) if row.ratio else None
        notes = [row.note, _spread(figures, row.measured, row.unit, counts[row.measured])]
        if row.ratio and ratio is not None:
            notes.append(f"ratio {_spread(figures, row.ratio, '', counts[row.ratio])}")
        out.append(Result(row.name, value, figures.get(row.baseline) if row.baseline else None, unit=row.unit,
                          goal=row.goal, note="; ".join(n for n in notes if n),
                          given_ratio=_num(ratio) if row.ratio else None))
    return out + _after_load(measured) + list(measured.extra)


def _after_load(measured: Measured) -> list[Result]:
    """The mesh's memory once more after the load: informative, the figure is the idle one."""
    values = [v for rep in measured.repetitions for v in rep.get("mesh_pss_after_load_mib", [])]
    if not values or "mesh memory after the load" in measured.errors:
        return []
    return [Result("mesh memory (PSS), after the load", statistics.median(values), unit="MiB",
                   note=f"{len(values)} repetitions, {min(values):.0f} to {max(values):.0f} MiB")]


def table_keys(rows_: Sequence[Row] = ROWS) -> set[str]:
    """Every figure key the table shows (a test checks none is forgotten)."""
    return {k for r in rows_ for k in (r.measured, r.baseline, r.ratio) if k}
