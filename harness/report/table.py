"""The verdict table: one row per expectation, what a user reads at the end of a run instead of dots.

Used by the pytest plugin's terminal summary and by ``mesh-harness run``. Rendered with rich into plain
text (colour only on a terminal), so that a CI log shows the same table a terminal does.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.runner.results import ExperimentResult

__all__ = ["LOG_WIDTH", "format_observed", "render_table", "verdict_rows", "verdict_table"]

LOG_WIDTH = 150
"""The table's width in a log (not a terminal, whose width is known): a CI log does not wrap, and 80
columns would fold every expectation into a sliver."""

_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow", "error": "red", "aborted": "red"}


def format_observed(value: float | None) -> str:
    """A number as a user reads it: four significant digits, no exponent for everyday magnitudes."""
    if value is None:
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "—" if interval is None else f"{format_observed(interval[0])} – {format_observed(interval[1])}"


def verdict_rows(results: Iterable[ExperimentResult]) -> list[tuple[str, str, str, str, str, str]]:
    """(experiment, expectation, observed, interval, samples, verdict) per expectation; an experiment
    with no expectation judged (an error, say) is one row whose expectation column says why."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    for result in results:
        if not result.expectations:
            why = result.error or result.aborted_by or "no expectation was judged"
            rows.append((result.name, why, "—", "—", "—", result.verdict))
            continue
        for outcome in result.expectations:
            what = outcome.expected if outcome.expected.startswith(outcome.kind) else \
                f"{outcome.kind}: {outcome.expected}"
            rows.append((result.name, what, format_observed(outcome.observed), _interval(outcome.interval),
                         f"{outcome.samples:,}", outcome.verdict))
    return rows


def render_table(results: Iterable[ExperimentResult], width: int = 120, colour: bool = False) -> str:
    """The table as text ``width`` columns wide (long expectations wrap within their column)."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=colour, no_color=not colour, highlight=False,
                      soft_wrap=False)
    console.print(verdict_table(results, width))
    return out.getvalue().rstrip("\n")


def verdict_table(results: Iterable[ExperimentResult], width: int = 120) -> Table:
    """The table as a rich renderable, for a console that prints it itself (``mesh-harness run``)."""
    rows = verdict_rows(results)
    longest = max((len(r[0]) for r in rows), default=10)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold", expand=False)
    table.add_column("experiment", no_wrap=True, min_width=min(longest, max(12, width // 4)), max_width=width // 4,
                     overflow="ellipsis")
    # The verdict second: on a narrow terminal the right-hand columns are squeezed first.
    table.add_column("verdict", no_wrap=True, min_width=len("inconclusive"))
    table.add_column("expectation", overflow="fold", min_width=min(30, width // 4))
    table.add_column("observed", justify="right", no_wrap=True, min_width=len("observed"))
    table.add_column("interval", overflow="fold")
    table.add_column("samples", justify="right", no_wrap=True, min_width=len("samples"))
    previous = None
    for row in rows:
        # The experiment's name once, on its first row: its expectations follow beneath it.
        name = row[0] if row[0] != previous else ""
        previous = row[0]
        # Text, not markup: an error message or an expectation may hold brackets ([x-harness-trace]).
        table.add_row(Text(name), Text(row[-1], style=_STYLE.get(row[-1], "bold")), *(Text(c) for c in row[1:-1]))
    return table
