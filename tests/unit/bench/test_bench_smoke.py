"""Smoke test of ``python -m bench``'s table on fake numbers: imports, ratio and goal logic, table, rows as JSON,
exit code. The figures, the ``--json`` file and the CLI are tested in ``test_figures.py``.

No mesh and no timing here (project rule: speed goals live in the benchmarks, never in tests); the real
benchmarks are run with ``python -m bench``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("bench") is None:  # `pytest` run from elsewhere than the repository root
    sys.path.insert(0, str(REPO))

bench = importlib.import_module("bench")
Goal, Result = bench.Goal, bench.Result


def test_ratio_is_measured_over_baseline() -> None:
    assert Result("x", 6.0, 2.0).ratio == pytest.approx(3.0)
    assert Result("x", 6.0).ratio is None
    assert Result("x", 6.0, 0.0).ratio is None
    assert Result("x", 6.0, math.nan).ratio is None
    assert Result("x", 6.0, 2.0, error="boom").ratio is None


@pytest.mark.parametrize(
    ("result", "ok"),
    [
        (Result("ratio met", 8.0, 1.0, goal=Goal(8)), True),  # the bound itself is within the goal
        (Result("ratio missed", 8.1, 1.0, goal=Goal(8)), False),
        (Result("value met", 4.0, goal=Goal(10, kind="value", checked=False)), True),
        (Result("value missed", 11.0, goal=Goal(10, kind="value", checked=False)), False),
        (Result("no baseline", 1.0, goal=Goal(8)), False),
        (Result("info", 1.0, 2.0), None),
        (Result("errored", goal=Goal(8), error="mesh did not start"), False),
    ],
    ids=lambda v: v.name if isinstance(v, Result) else str(v),
)
def test_ok(result: Any, ok: bool | None) -> None:
    assert result.ok is ok


def test_format_value_units() -> None:
    fv = bench.format_value
    assert fv(0.0297, "s") == "29.7 ms"
    assert fv(6.861, "s") == "6.86 s"
    assert fv(1.934, "ms") == "1.93 ms"
    assert fv(193.6, "ms") == "193.6 ms"
    assert fv(2290.4, "req/s") == "2290 req/s"
    assert fv(None, "s") == "-"
    assert fv(math.nan, "s") == "-"


def fake_results() -> list[Any]:
    return [
        Result("mesh start-up", 6.86, 1.94, goal=Goal(8), note="median of 1"),
        Result("mesh start-up (absolute)", 6.86, goal=Goal(10, kind="value", checked=False,
                                                           label="≤ 10 s (stretch 5 s)")),
        Result("request path: throughput", 700.0, 2300.0, unit="req/s"),
        Result("scrape: one scrape()", 0.0297, 0.0019, goal=Goal(50)),
        Result("scrape: CPU share", 0.0558, 3.0, goal=Goal(0.05, label="≤ 5% of a core"), ratio_style="%"),
    ]


def test_table_has_every_row_aligned_with_ratio_goal_and_verdict() -> None:
    table = bench.format_table(fake_results())
    lines = table.splitlines()
    assert lines[0].split() == ["name", "measured", "baseline", "ratio", "goal", "ok?"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    rows = {line.split("  ")[0]: line for line in lines[2:7]}
    assert "3.54×" in rows["mesh start-up"]
    assert "≤ 8×" in rows["mesh start-up"]
    assert rows["mesh start-up"].rstrip().endswith("yes")
    assert "≤ 10 s (stretch 5 s)" in rows["mesh start-up (absolute)"]
    assert "0.30×" in rows["request path: throughput"]
    assert "info" in rows["request path: throughput"]
    assert "15.6×" in rows["scrape: one scrape()"]
    assert "1.86%" in rows["scrape: CPU share"]
    # Columns line up: every row starts its "measured" cell where the header does.
    column = lines[0].index("measured")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[2:7])
    assert "notes:" in table
    assert "mesh start-up: median of 1" in table


def test_error_rows_show_the_error_instead_of_numbers() -> None:
    table = bench.format_table([Result("scrape", goal=Goal(50), error="ConnectError: refused")])
    assert "ERROR" in table.splitlines()[2]
    assert "scrape: ERROR ConnectError: refused" in table


def test_exit_code_reports_unless_check() -> None:
    missed = [*fake_results(), Result("slow start", 9.0, 1.0, goal=Goal(8))]
    assert bench.exit_code(missed, check=False) == 0
    assert bench.exit_code(missed, check=True) == 1
    assert bench.exit_code(fake_results(), check=True) == 0
    # An absolute goal is shown but not enforced; an errored benchmark is, under --check.
    unchecked = [Result("abs", 12.0, goal=Goal(10, kind="value", checked=False))]
    assert bench.exit_code(unchecked, check=True) == 0
    assert bench.exit_code([Result("x", error="boom")], check=True) == 1


def test_json_is_plain_and_nan_free() -> None:
    data = bench.to_json([*fake_results(), Result("broken", error="boom")], {"quick": True})
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["meta"] == {"quick": True}
    rows = {r["name"]: r for r in data["results"]}
    assert rows["mesh start-up"]["ratio"] == pytest.approx(6.86 / 1.94)
    assert rows["mesh start-up"]["goal"] == {"limit": 8, "kind": "ratio", "checked": True, "at_least": False,
                                             "text": "≤ 8×"}
    assert rows["request path: throughput"]["goal"] is None
    assert rows["request path: throughput"]["ok"] is None
    assert rows["broken"]["measured"] is None
    assert rows["broken"]["error"] == "boom"


@pytest.mark.parametrize(
    ("result", "ok"),
    [
        (Result("ratio at the bound", 90.0, 100.0, goal=Goal(0.9, at_least=True)), True),
        (Result("ratio below", 89.0, 100.0, goal=Goal(0.9, at_least=True)), False),
        (Result("value above", 2.0, goal=Goal(1, kind="value", at_least=True)), True),
        (Result("value below", 0.5, goal=Goal(1, kind="value", at_least=True)), False),
    ],
    ids=lambda v: v.name if isinstance(v, Result) else str(v),
)
def test_at_least_goals_are_lower_bounds(result: Any, ok: bool) -> None:
    assert result.ok is ok
    assert result.goal.text(result.unit).startswith("≥")


def test_a_given_ratio_is_shown_and_judged_instead_of_measured_over_baseline() -> None:
    # Medians over repetitions: the median of the per-repetition ratios is not the ratio of the medians.
    row = Result("load", 100.0, 100.0, unit="req/s", goal=Goal(0.9, at_least=True), given_ratio=0.85)
    assert row.ratio == pytest.approx(0.85)
    assert row.ok is False
    assert "0.85×" in bench.format_table([row])
    missing = Result("load", 100.0, 100.0, goal=Goal(0.9, at_least=True), given_ratio=math.nan)
    assert missing.ratio is None
    assert missing.ok is False


def test_mib_are_shown_whole() -> None:
    assert bench.format_value(532.4, "MiB") == "532 MiB"
