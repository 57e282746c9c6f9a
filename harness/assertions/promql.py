"""``promql``: the instant value of a PromQL query at the end of a window meets a bound.

For what the built-in kinds do not name: a user's own recording rule, a metric their application
exports, a Flagger metric template they already trust. The query is evaluated by the environment's
Prometheus at the window's end (once it holds samples past it: the metric source waited for them), with
``{{ interval }}`` replaced by the window's length (Flagger's placeholder), so
``rate(x[{{ interval }}])`` reads exactly the window.

A PromQL value is a number, not a sample: there is no interval and no confidence, and the verdict is
pass or fail against the bound. Every series the query returns must meet it (the worst is reported).
What cannot be judged is inconclusive, with the reason: no series at that instant (nothing scraped, or a
selector that matches nothing), NaN (a ratio of zero requests), a range vector, or a query Prometheus
refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.assertions.base import Outcome
from harness.assertions.evidence import WindowEvidence
from harness.model.suite import PromqlExpectation

__all__ = ["evaluate_promql", "render_query"]


def render_query(query: str, window_s: float) -> str:
    """``query`` with ``{{ interval }}`` (and ``{{interval}}``) as the window's length in milliseconds."""
    duration = f"{max(1, round(window_s * 1000))}ms"
    return query.replace("{{ interval }}", duration).replace("{{interval}}", duration)


def _expected(exp: PromqlExpectation) -> str:
    bounds = [f">= {exp.min:g}" if exp.min is not None else "", f"<= {exp.max:g}" if exp.max is not None else ""]
    return f"{exp.query} {' and '.join(b for b in bounds if b)}"


def _series_name(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}" if inner else "the value"


def _values(result: list[Any]) -> list[tuple[str, float]] | str:
    """(series, value) per element of an instant query's result; a string says why it cannot be judged."""
    try:
        return _parsed(result)
    except (TypeError, ValueError):  # a string result, or a value that is no number
        return f"Prometheus answered {str(result)[:120]}, not a number per series"


def _parsed(result: list[Any]) -> list[tuple[str, float]] | str:
    if len(result) == 2 and isinstance(result[0], int | float) and isinstance(result[1], str):
        return [("the value", float(result[1]))]  # a scalar (or a string, which float() refuses): [time, value]
    out: list[tuple[str, float]] = []
    for item in result:
        if not isinstance(item, dict):
            return f"Prometheus answered {type(item).__name__} where a vector element was expected"
        if "values" in item:
            return ("the query gives a range vector (several samples per series), not one value: wrap it, "
                    "e.g. max_over_time(...) or rate(...)")
        value = item.get("value")
        if not isinstance(value, list) or len(value) != 2:
            return "Prometheus answered a vector element without a value"
        out.append((_series_name(item.get("metric") or {}), float(value[1])))
    return out


def evaluate_promql(exp: PromqlExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    """Ask the window's Prometheus at the window's end; every series must meet the bound (``confidence``
    is unused: a PromQL value is not a sample)."""
    expected = _expected(exp)

    def inconclusive(message: str, samples: int = 0) -> Outcome:
        return Outcome("promql", "inconclusive", None, None, samples, expected, message,
                       details={"query": exp.query, "at": ev.end})

    if ev.promql is None:
        return inconclusive("this window's metric source is not Prometheus, so there is nothing to ask; set "
                            "metrics: {source: prometheus} in the environment")
    query = render_query(exp.query, ev.duration)
    try:
        result = ev.promql(query, ev.end)
    except Exception as exc:  # the client's errors carry Prometheus's own message: show it, do not crash
        return inconclusive(f"Prometheus did not evaluate {query!r}: {exc}")
    values = _values(result)
    if isinstance(values, str):
        return inconclusive(values)
    if not values:
        return inconclusive(f"{query!r} returned no series at the end of the {ev.name} window: nothing matched "
                            "(a metric not scraped, a label that does not exist, or no traffic yet)")
    nan = [name for name, v in values if math.isnan(v)]
    if nan:
        return inconclusive(f"{query!r} is NaN for {nan[0]} (a ratio of zero requests, e.g. no traffic in the "
                            "window)", len(values))

    def distance(value: float) -> float:
        """How far outside the bounds (positive) or inside (negative) a value is."""
        gaps = []
        if exp.min is not None:
            gaps.append(exp.min - value)
        if exp.max is not None:
            gaps.append(value - exp.max)
        return max(gaps)

    worst_name, worst = max(values, key=lambda nv: distance(nv[1]))
    failing = [(n, v) for n, v in values if distance(v) > 0]
    where = f" for {worst_name}" if len(values) > 1 or worst_name != "the value" else ""
    details: dict[str, Any] = {"query": query, "at": ev.end, "series": len(values)}
    if failing:
        others = f" ({len(failing)} of {len(values)} series outside)" if len(values) > 1 else ""
        return Outcome("promql", "fail", worst, None, len(values), expected,
                       f"{query} = {worst:g}{where} at the end of the {ev.name} window, outside "
                       f"{expected.removeprefix(exp.query).strip()}{others}", details=details)
    return Outcome("promql", "pass", worst, None, len(values), expected,
                   f"{query} = {worst:g}{where} at the end of the {ev.name} window (the series nearest the bound"
                   f" of {len(values)})" if len(values) > 1 else
                   f"{query} = {worst:g} at the end of the {ev.name} window, within "
                   f"{expected.removeprefix(exp.query).strip()}", details=details)
