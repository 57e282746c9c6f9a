"""Results, goals and the table: the readable side of the benchmarks, unit-tested on fake numbers.

Why ratios: the machine that runs these is shared (other meshes, CI) and has two cores, so an absolute
time moves with whatever else runs. A ratio against a raw baseline measured in the same run cancels most
of that noise; absolute numbers are still shown because the product goal is stated in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Goal", "Result", "exit_code", "format_table", "format_value", "to_json"]

GoalKind = Literal["ratio", "value"]
RatioStyle = Literal["x", "%"]


@dataclass(frozen=True)
class Goal:
    """A bound on the ratio (measured / baseline) or on the measured value itself: an upper bound, or with
    ``at_least`` a lower one (a throughput that must keep up with its baseline).

    ``checked`` goals are what ``--check`` enforces. Goals on absolute times are reported but not
    checked by default: on a shared machine they fail for reasons that have nothing to do with the code.
    """

    limit: float
    kind: GoalKind = "ratio"
    checked: bool = True
    label: str = ""
    at_least: bool = False

    def text(self, unit: str = "") -> str:
        if self.label:
            return self.label
        sign = "≥" if self.at_least else "≤"
        if self.kind == "ratio":
            return f"{sign} {self.limit:g}×"
        return f"{sign} {format_value(self.limit, unit)}"

    def met(self, value: float) -> bool:
        """Whether ``value`` is within the bound (the bound itself is)."""
        return value >= self.limit if self.at_least else value <= self.limit


@dataclass(frozen=True)
class Result:
    """One row of the table. ``error`` replaces the numbers when the benchmark could not run.

    ``given_ratio`` is shown (and judged) instead of measured / baseline: a row of medians over repetitions
    takes the median of each repetition's own ratio, which is not the ratio of the two medians.
    """

    name: str
    measured: float = math.nan
    baseline: float | None = None
    unit: str = "s"
    goal: Goal | None = None
    note: str = ""
    ratio_style: RatioStyle = "x"
    error: str = ""
    given_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        """measured / baseline (or ``given_ratio``); None when there is no baseline (or it is zero or not a number)."""
        if self.error:
            return None
        if self.given_ratio is not None:
            return None if math.isnan(self.given_ratio) else self.given_ratio
        if self.baseline is None or not self.baseline or math.isnan(self.baseline):
            return None
        return self.measured / self.baseline

    @property
    def ok(self) -> bool | None:
        """Whether the goal is met; None for informative rows, False for a row that errored."""
        if self.error:
            return False
        if self.goal is None:
            return None
        value = self.ratio if self.goal.kind == "ratio" else self.measured
        if value is None or math.isnan(value):
            return False
        return self.goal.met(value)


def format_value(value: float | None, unit: str) -> str:
    """Human units, with enough digits to compare two rows by eye."""
    if value is None or math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"
    if unit == "req/s":
        return f"{value:.0f} req/s"
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:g} {unit}".strip()


def _ratio_text(result: Result) -> str:
    ratio = result.ratio
    if ratio is None:
        return "-"
    if result.ratio_style == "%":
        return f"{ratio * 100:.2f}%"
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.1f}×"


def _ok_text(result: Result) -> str:
    if result.error:
        return "ERROR"
    ok = result.ok
    if ok is None:
        return "-"
    if ok:
        return "yes"
    return "NO" if result.goal is not None and result.goal.checked else "no (unchecked)"


HEADERS = ("name", "measured", "baseline", "ratio", "goal", "ok?")


def format_table(results: Sequence[Result]) -> str:
    """The fixed-width table ``python -m bench`` prints, then each row's note or error underneath."""
    rows = [HEADERS]
    for r in results:
        goal = r.goal.text(r.unit) if r.goal else "info"
        if r.error:
            rows.append((r.name, "-", "-", "-", goal, _ok_text(r)))
        else:
            rows.append((r.name, format_value(r.measured, r.unit), format_value(r.baseline, r.unit),
                         _ratio_text(r), goal, _ok_text(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.name}: {'ERROR ' + r.error if r.error else r.note}" for r in results if r.error or r.note]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def exit_code(results: Sequence[Result], check: bool) -> int:
    """0 unless ``check``: then 1 if any checked goal is missed or any benchmark errored."""
    if not check:
        return 0
    failed = [r for r in results if r.error or (r.goal is not None and r.goal.checked and r.ok is False)]
    return 1 if failed else 0


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def to_json(results: Sequence[Result], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The table's rows as the details file (``<stem>.details.json`` beside ``--json FILE``) records them:
    numbers in the row's unit, NaN as null."""
    return {
        "meta": dict(meta or {}),
        "results": [
            {
                "name": r.name, "measured": _num(r.measured), "baseline": _num(r.baseline), "unit": r.unit,
                "ratio": _num(r.ratio),
                "goal": None if r.goal is None else {"limit": r.goal.limit, "kind": r.goal.kind,
                                                     "checked": r.goal.checked, "at_least": r.goal.at_least,
                                                     "text": r.goal.text(r.unit)},
                "ok": r.ok, "note": r.note, "error": r.error or None,
            }
            for r in results
        ],
    }
