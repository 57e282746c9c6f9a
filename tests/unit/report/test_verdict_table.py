"""The verdict table read at the end of a run: one row per expectation, numbers as a user reads them."""

from __future__ import annotations

from harness.assertions.base import Outcome
from harness.report.table import format_observed, render_table, verdict_rows
from harness.runner.results import ExperimentResult

RESULTS = [
    ExperimentResult("split-holds", "fail", 8.0, expectations=[
        Outcome("traffic-split", "fail", 0.33124, (0.3101, 0.3523), 2800, "split of reviews (fault) 34/33/33", "m"),
        Outcome("slo", "inconclusive", 0.95123, (0.93, 0.97), 500, "success_rate (client, fault) >= 0.95", "m"),
    ]),
    ExperimentResult("rotation", "pass", 8.0, expectations=[
        Outcome("mtls", "pass", 0.0, (0.0, 0.0019), 860, "mtls (fault): at most 0 failed request(s)", "m")]),
    ExperimentResult("unreachable", "error", 1.0, error="the mesh could not be reached"),
]


def test_one_row_per_expectation_and_one_for_an_experiment_without_any() -> None:
    rows = verdict_rows(RESULTS)
    assert [(r[0], r[-1]) for r in rows] == [("split-holds", "fail"), ("split-holds", "inconclusive"),
                                             ("rotation", "pass"), ("unreachable", "error")]
    assert rows[0][1:5] == ("traffic-split: split of reviews (fault) 34/33/33", "0.3312", "0.3101 – 0.3523", "2,800")
    assert rows[2][1] == "mtls (fault): at most 0 failed request(s)", "the kind is not said twice"
    assert rows[3][1] == "the mesh could not be reached"


def test_numbers_are_read_as_numbers() -> None:
    assert [format_observed(v) for v in (None, 0.0, 0.98765, 1234.5, 0.000012)] == [
        "—", "0", "0.9877", "1234", "1.200e-05"]


def test_the_rendered_table_names_each_experiment_once_and_keeps_every_verdict() -> None:
    text = render_table(RESULTS, width=100)
    lines = text.splitlines()
    assert lines[0].split() == ["experiment", "verdict", "expectation", "observed", "interval", "samples"]
    assert sum(line.startswith("split-holds") for line in lines) == 1
    for verdict in ("fail", "inconclusive", "pass", "error"):
        assert verdict in text
    assert all(len(line) <= 100 for line in lines)
    narrow = render_table(RESULTS, width=80)
    assert "inconclusive" in narrow, "the verdict survives a narrow terminal"
    assert "\x1b[" not in text, "no colour codes unless asked for"
    assert "\x1b[" in render_table(RESULTS, width=100, colour=True)
