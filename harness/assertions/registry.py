"""Dispatch from an expectation's ``kind`` to the module that judges it."""

from __future__ import annotations

from dataclasses import replace

from harness.assertions.base import Outcome
from harness.assertions.circuit_breaker import evaluate_circuit_breaker
from harness.assertions.evidence import Evidence
from harness.assertions.outlier_ejection import evaluate_outlier_ejection
from harness.assertions.retries import evaluate_retries
from harness.assertions.slo import evaluate_slo
from harness.assertions.timeout import evaluate_timeout
from harness.assertions.traffic_split import evaluate_traffic_split
from harness.model.suite import (
    CircuitBreakerExpectation,
    Expectation,
    OutlierEjectionExpectation,
    RetriesExpectation,
    Slo,
    TimeoutExpectation,
    TrafficSplitExpectation,
)

__all__ = ["SUPPORTED_KINDS", "evaluate", "window_of"]

SUPPORTED_KINDS = frozenset({"slo", "retries", "traffic-split", "timeout", "circuit-breaker", "outlier-ejection"})


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
    elif isinstance(exp, TimeoutExpectation):
        out = evaluate_timeout(exp, ev, confidence)
    elif isinstance(exp, CircuitBreakerExpectation):
        out = evaluate_circuit_breaker(exp, ev, confidence)
    elif isinstance(exp, OutlierEjectionExpectation):
        out = evaluate_outlier_ejection(exp, ev, confidence)
    else:  # pragma: no cover - refused at plan time
        raise NotImplementedError(exp.kind)
    return replace(out, id=exp.id or out.id, confidence=confidence)
