"""Dispatch from an expectation's ``kind`` to the module that judges it."""

from __future__ import annotations

from dataclasses import replace

from harness.assertions.base import Outcome
from harness.assertions.canary import evaluate_canary
from harness.assertions.circuit_breaker import evaluate_circuit_breaker
from harness.assertions.evidence import Evidence
from harness.assertions.mtls import evaluate_mtls
from harness.assertions.outlier_ejection import evaluate_outlier_ejection
from harness.assertions.promql import evaluate_promql
from harness.assertions.retries import evaluate_retries
from harness.assertions.slo import evaluate_slo
from harness.assertions.timeout import evaluate_timeout
from harness.assertions.traffic_split import evaluate_traffic_split
from harness.model.suite import (
    CanaryExpectation,
    CircuitBreakerExpectation,
    Expectation,
    MtlsExpectation,
    OutlierEjectionExpectation,
    PromqlExpectation,
    RetriesExpectation,
    Slo,
    TimeoutExpectation,
    TrafficSplitExpectation,
)

__all__ = ["SUPPORTED_KINDS", "evaluate", "window_name", "window_of"]

SUPPORTED_KINDS = frozenset({"slo", "retries", "traffic-split", "timeout", "circuit-breaker", "outlier-ejection",
                             "canary", "mtls", "promql"})


def window_name(exp: Expectation) -> str:
    """The name of the window an expectation reads in :attr:`Evidence.windows`.

    ``step: N`` reads step N of the fault phase's traffic shift, kept by the runner as ``"step N"``;
    otherwise ``window:`` (``fault`` when a kind leaves it unset). One function for every kind, so
    that the runner (which judges a step as it ends) and the evaluators agree on the name.
    """
    step = getattr(exp, "step", None)
    if step is not None:
        return f"step {step}"
    window = getattr(exp, "window", None)
    return str(window) if window is not None else "fault"


window_of = window_name
"""The former name of :func:`window_name`."""


def evaluate(exp: Expectation, evidence: Evidence) -> Outcome:
    """Judge one expectation on its window; the caller has checked the kind is supported.

    A step window that is absent (the shift was halted or aborted before that step, so it never ran)
    gives an inconclusive verdict that says so, rather than an error.
    """
    window = window_name(exp)
    confidence = evidence.confidence_for(window)
    if window not in evidence.windows and window.startswith("step "):
        ran = sorted((w for w in evidence.windows if w.startswith("step ")), key=lambda w: int(w.split()[1]))
        done = f"only {', '.join(ran)} ran" if ran else "no step ran"
        return Outcome(exp.kind, "inconclusive", None, None, 0, f"{exp.kind} at {window}",
                       f"{window} of the traffic shift never ran ({done}: the shift was halted or aborted "
                       f"before {window}, or has fewer steps), so there is no evidence to judge",
                       id=exp.id, details={"more_requests": None}, confidence=confidence)
    ev = evidence.window(window)
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
    elif isinstance(exp, CanaryExpectation):
        out = evaluate_canary(exp, ev, confidence)
    elif isinstance(exp, MtlsExpectation):
        out = evaluate_mtls(exp, ev, confidence)
    elif isinstance(exp, PromqlExpectation):
        out = evaluate_promql(exp, ev, confidence)
    else:  # pragma: no cover - refused at plan time
        raise NotImplementedError(exp.kind)
    return replace(out, id=exp.id or out.id, confidence=confidence)
