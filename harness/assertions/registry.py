"""Dispatch from an expectation's ``kind`` to the module that judges it."""

from __future__ import annotations

from dataclasses import replace

from harness.assertions.base import Outcome
from harness.assertions.evidence import Evidence
from harness.assertions.retries import evaluate_retries
from harness.assertions.slo import evaluate_slo
from harness.assertions.traffic_split import evaluate_traffic_split
from harness.model.suite import Expectation, RetriesExpectation, Slo, TrafficSplitExpectation

__all__ = ["SUPPORTED_KINDS", "evaluate", "window_of"]

SUPPORTED_KINDS = frozenset({"slo", "retries", "traffic-split"})


def window_of(exp: Expectation) -> str:
    if isinstance(exp, TrafficSplitExpectation):
        return exp.effective_window
    return str(getattr(exp, "window", "fault"))


def evaluate(exp: Expectation, evidence: Evidence) -> Outcome:
    """Judge one expectation on its window; the caller has checked the kind is supported."""
    window = window_of(exp)
    ev = evidence.window(window)
    confidence = evidence.confidence_for(window)
    if isinstance(exp, Slo):
        out = evaluate_slo(exp, ev, confidence)
    elif isinstance(exp, RetriesExpectation):
        out = evaluate_retries(exp, ev, confidence)
    elif isinstance(exp, TrafficSplitExpectation):
        out = evaluate_traffic_split(exp, ev, confidence)
    else:  # pragma: no cover - refused at plan time
        raise NotImplementedError(exp.kind)
    return replace(out, id=exp.id or out.id, confidence=confidence)
