"""``promql``: a query's instant value at the window's end against a bound, able to fail."""

from __future__ import annotations

from typing import Any

import pytest

from harness.assertions import evaluate
from harness.assertions.evidence import Evidence, WindowEvidence
from harness.assertions.promql import render_query
from harness.metrics.snapshot import Snapshot
from harness.model.suite import PromqlExpectation


def judge(answer: Any, *, min: float | None = None, max: float | None = None,
          query: str = "sum(rate(x[{{ interval }}]))") -> tuple[str, str, list[tuple[str, float]]]:
    asked: list[tuple[str, float]] = []

    def promql(q: str, at: float) -> list[Any]:
        asked.append((q, at))
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    ev = WindowEvidence("fault", 100.0, 112.5, [], Snapshot(112.5), {}, promql=promql)
    exp = PromqlExpectation.model_validate({"kind": "promql", "query": query, "min": min, "max": max})
    out = evaluate(exp, Evidence({"fault": ev}, 0.95))
    return out.verdict, out.message, asked


def vector(*values: float) -> list[dict[str, Any]]:
    return [{"metric": {"__name__": "x", "pod": f"p{i}"}, "value": [112.5, str(v)]} for i, v in enumerate(values)]


def test_a_value_within_the_bound_passes_and_the_window_is_substituted() -> None:
    """Evaluated at the window's end, with {{ interval }} as the window's length."""
    verdict, message, asked = judge(vector(0.998), min=0.99)
    assert verdict == "pass"
    assert asked == [("sum(rate(x[12500ms]))", 112.5)]  # evaluated at the window's end, over the window
    assert "0.998" in message


def test_a_bound_that_cannot_hold_fails() -> None:
    """The kind can fail: a value outside the bound is a fail, with the value in the message."""
    verdict, message, _ = judge(vector(0.9), min=0.99)
    assert verdict == "fail"
    assert "0.9" in message


def test_every_series_must_meet_the_bound_and_the_worst_is_named() -> None:
    """One series outside is a fail, and the message names it and counts how many were outside."""
    verdict, message, _ = judge(vector(10, 250, 20), max=100)
    assert verdict == "fail"
    assert "250" in message
    assert 'pod="p1"' in message
    assert "1 of 3" in message


def test_a_scalar_is_judged() -> None:
    """A scalar result ([time, value]) is one value."""
    assert judge([112.5, "3"], max=2)[0] == "fail"
    assert judge([112.5, "1"], max=2)[0] == "pass"


@pytest.mark.parametrize(("answer", "says"), [
    ([], "no series"),
    (vector(float("nan")), "NaN"),
    ([{"metric": {}, "values": [[1, "1"], [2, "2"]]}], "range vector"),
    (RuntimeError('HTTP Status Code 400 (b\'{"error":"parse error"}\')'), "parse error"),
    ([112.5, "hello"], "not a number"),
    ([{"metric": {}, "value": [1, "NaNa"]}], "not a number"),
])
def test_what_cannot_be_judged_is_inconclusive_with_the_reason(answer: Any, says: str) -> None:
    """Nothing, NaN, a range vector, a refused query or a string: inconclusive, never a crash."""
    verdict, message, _ = judge(answer, min=0.5)
    assert verdict == "inconclusive"
    assert says in message


def test_without_prometheus_it_is_inconclusive_not_a_crash() -> None:
    """A window with no Prometheus to ask (refused at validation; defended here too)."""
    ev = WindowEvidence("fault", 0.0, 1.0, [], Snapshot(1.0), {})
    exp = PromqlExpectation.model_validate({"kind": "promql", "query": "up", "min": 1})
    assert evaluate(exp, Evidence({"fault": ev}, 0.95)).verdict == "inconclusive"


def test_render_query_accepts_flaggers_spellings() -> None:
    """{{ interval }} with and without spaces, every occurrence."""
    assert render_query("rate(x[{{interval}}]) + rate(y[{{ interval }}])", 2.0) == "rate(x[2000ms]) + rate(y[2000ms])"
