"""``circuit-breaker``: the breaker on an edge opens (or stays shut), sheds load fast, and caps concurrency.

Evidence, all of it from the edge itself:

* **Overflow**: requests the callers' sidecars refused because a limit was reached — the pending
  queue's (``max_pending``) and active requests' (``max_requests``) overflows — against the requests
  the mesh answered on the edge (the callers' outbound side). Its share gets a Wilson interval.
* **Fast answers**: an open breaker answers at once, without calling the callee (a 503 with
  ``x-envoy-overloaded``). The calling apps record those answers' latency and that of their successful
  calls; the median of the overloaded answers (order-statistic interval) must lie below
  max(half the callee's median, :data:`FAST_MS`). The callee's median is its successful calls', or
  else what its own sidecars measured.
* **Concurrency**: each sidecar enforces its own limit, so the callee's apps must never have more
  requests in flight inside the window than ``max_concurrency`` (default: the policy's
  min(max_requests, max_connections)) × the number of calling instances.

How much traffic "could have shown it": a breaker that is open sheds at least :data:`MIN_SHED` of the
requests; with n requests and no overflow, an open breaker would have gone unseen with probability
(1 − MIN_SHED)^n. So "never opened" (``opens: true`` fails, ``opens: false`` passes) is concluded once
that probability is below 1 − confidence (459 requests at 99%), and before that the verdict is
inconclusive and says how many more requests are needed. A single overflow is conclusive that the
breaker opened.
"""

from __future__ import annotations

import math
from typing import Any

from harness.assertions import more, stats
from harness.assertions.base import Outcome, VerdictName, bound_verdict, percent
from harness.assertions.evidence import WindowEvidence
from harness.metrics.vocabulary import Bins
from harness.model.suite import CircuitBreakerExpectation

__all__ = ["FAST_MS", "MIN_SHED", "evaluate_circuit_breaker", "requests_to_show"]

MIN_SHED = 0.01
"""The least share of requests an open breaker sheds; below it a breaker is not usefully open."""
FAST_MS = 10.0
"""An overloaded answer this fast is the mesh's own, whatever the callee's latency."""


def requests_to_show(confidence: float) -> int:
    """Requests after which an open breaker would have shown at least one overflow with ``confidence``."""
    return math.ceil(math.log(1 - confidence) / math.log(1 - MIN_SHED))


def _median(bins: Bins, confidence: float) -> tuple[float, tuple[float, float] | None, int]:
    n = sum(c for _, _, c in bins)
    if n == 0:
        return math.nan, None, 0
    return stats.binned_quantile(bins, 0.5), stats.binned_quantile_interval(bins, 0.5, confidence), n


def evaluate_circuit_breaker(exp: CircuitBreakerExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    caller, callee = exp.route.from_, exp.route.to
    route = f"{caller}->{callee}"
    expected = f"{route}: the circuit breaker {'opens' if exp.opens else 'stays closed'}"
    counts = ev.edge(caller, callee)
    answered = ev.answered(caller, callee)
    n = int(answered.total) or int(counts.requests + counts.overflow)
    k = min(int(counts.overflow), n)
    need = requests_to_show(confidence)
    span = ev.counters_duration
    details: dict[str, Any] = {
        "requests": n, "overflow": k, "pending_overflow": int(counts.pending_overflow),
        "active_overflow": int(counts.active_overflow), "connection_overflow": int(counts.connection_overflow),
        "retry_overflow": int(counts.retry_overflow),
    }
    concurrency = _concurrency(exp, ev, details)
    if (why := counts.unattempted(route)) is not None:
        return Outcome("circuit-breaker", "inconclusive", None, None, 0, expected, why,
                       details=details | {"more_requests": None})
    if n == 0:
        hint = more.more(need, 0, None)
        return Outcome("circuit-breaker", "inconclusive", None, None, 0, expected,
                       f"no requests on {route} in the {exp.window} window; {hint.text}",
                       details=details | hint.details())
    share = k / n
    interval = stats.wilson_interval(k, n, confidence)
    shed = (f"{k} of {n} requests overflowed ({100 * share:.1f}%: {int(counts.pending_overflow)} from the pending "
            f"queue, {int(counts.active_overflow)} at max_requests)")
    if k == 0:
        if n < need:
            hint = more.more(need, n, n / span)
            return Outcome("circuit-breaker", "inconclusive", share, interval, n, expected,
                           f"no request on {route} overflowed, but {n} requests are too few to show that an open "
                           f"breaker would have shed at least {MIN_SHED:.0%} of them; {hint.text}",
                           details=details | hint.details())
        if exp.opens:
            return Outcome("circuit-breaker", "fail", share, interval, n, expected,
                           f"the breaker on {route} never opened: none of {n} requests overflowed (an open breaker "
                           f"sheds at least {MIN_SHED:.0%}; it would have shown at {percent(confidence)})"
                           + _limits_text(ev, route), details=details)
        if concurrency.verdict == "fail":
            return Outcome("circuit-breaker", "fail", share, interval, n, expected,
                           f"the breaker on {route} stayed closed but {concurrency.text}", details=details)
        return Outcome("circuit-breaker", "pass", share, interval, n, expected,
                       f"the breaker on {route} stayed closed: none of {n} requests overflowed; "
                       f"{concurrency.text}", details=details)
    if not exp.opens:
        return Outcome("circuit-breaker", "fail", share, interval, n, expected,
                       f"the breaker on {route} opened: {shed}", details=details)
    fast = _fast_answers(ev, caller, callee, confidence, details)
    problems = [c.text for c in (fast, concurrency) if c.verdict == "fail"]
    if problems:
        return Outcome("circuit-breaker", "fail", share, interval, n, expected,
                       f"the breaker on {route} opened ({shed}) but " + "; and ".join(problems), details=details)
    if fast.verdict == "inconclusive":
        return Outcome("circuit-breaker", "inconclusive", share, interval, n, expected,
                       f"the breaker on {route} opened ({shed}); {fast.text}",
                       details=details | (fast.more.details() if fast.more else {}))
    return Outcome("circuit-breaker", "pass", share, interval, n, expected,
                   f"the breaker on {route} opened: {shed}; {fast.text}; {concurrency.text}", details=details)


class _Check:
    """One part of the verdict: its own verdict and the clause that explains it."""

    def __init__(self, verdict: VerdictName, text: str, hint: more.More | None = None) -> None:
        self.verdict = verdict
        self.text = text
        self.more = hint


def _fast_answers(ev: WindowEvidence, caller: str, callee: str, confidence: float,
                  details: dict[str, Any]) -> _Check:
    """The overloaded answers' median latency is far below the callee's."""
    calls = ev.calls(caller, callee)
    over = calls.latency.get("overloaded", [])
    m_over, iv_over, n_over = _median(over, confidence)
    m_ok, iv_ok, n_ok = _median(calls.latency.get("ok", []), confidence)
    source = f"the successful calls to {callee}"
    if iv_ok is None:
        m_ok, iv_ok, n_ok = _median(ev.inbound_latency(callee), confidence)
        source = f"the {callee} sidecars"
    limit = max(0.5 * iv_ok[0], FAST_MS) if iv_ok is not None else FAST_MS
    details |= {"overloaded_answers": n_over, "overloaded_median_ms": None if n_over == 0 else m_over,
                "callee_median_ms": None if n_ok == 0 else m_ok, "fast_limit_ms": limit}
    if calls.reporting == 0:
        return _Check("pass", f"how fast the mesh answered is not measured ({caller} is not a demo app)")
    if iv_over is None:
        need = more.min_quantile_sample(0.5, confidence)
        hint = more.more(need, n_over, n_over / ev.counters_duration if n_over else None, "overloaded answers")
        return _Check("inconclusive", f"{n_over} overloaded answers reached {caller}'s apps, too few to time "
                                      f"them; {hint.text}", hint)
    verdict = bound_verdict(iv_over, None, limit)
    what = (f"the mesh answered overflowed requests in a median {m_over:.1f}ms ({percent(confidence)} CI "
            f"{iv_over[0]:.1f}–{iv_over[1]:.1f}ms) against {m_ok:.0f}ms from {source}")
    if verdict == "fail":
        return _Check("fail", f"{what}: not fast (limit {limit:.0f}ms), so they waited for {callee}")
    if verdict == "inconclusive":
        needed = more.quantile_needed_bins(over, 0.5, confidence, *more.bounds_to_settle(iv_over, None, limit))
        hint = more.more(needed, n_over, n_over / ev.counters_duration, "overloaded answers")
        return _Check("inconclusive", f"{what}: too close to the {limit:.0f}ms limit to tell; {hint.text}", hint)
    return _Check("pass", what)


def _concurrency(exp: CircuitBreakerExpectation, ev: WindowEvidence, details: dict[str, Any]) -> _Check:
    """No callee app had more requests in flight than the limit times the calling instances."""
    caller, callee = exp.route.from_, exp.route.to
    policy = ev.policies.get(f"{caller}->{callee}")
    limit = exp.max_concurrency
    if limit is None and policy is not None:
        limit = min(policy.max_requests, policy.max_connections)
    callers = len(ev.nodes_of(caller))
    peaks = ev.max_inflight(callee)
    # An app counts every request in flight, whoever sent it: the other services that call the callee
    # may each have their own breaker's worth in flight at the same instance.
    others = {edge.split("->", 1)[0]: p for edge, p in ev.policies.items()
              if edge.endswith(f"->{callee}") and edge.split("->", 1)[0] != caller}
    other_allowance = sum(min(p.max_requests, p.max_connections) * len(ev.nodes_of(name)) for name, p in others.items())
    details |= {"max_inflight": peaks, "concurrency_limit": limit, "calling_instances": callers,
                "other_callers_allowance": other_allowance}
    if limit is None or not peaks or callers == 0:
        return _Check("pass", f"the concurrency at the {callee} apps was not measured")
    allowed = limit * callers + other_allowance
    worst_inst, worst = max(peaks.items(), key=lambda item: item[1])
    if worst > allowed:
        also = f" + {other_allowance} allowed to its other callers" if other_allowance else ""
        return _Check("fail", f"{worst_inst} had {worst} requests in flight, more than {limit} × {callers} "
                              f"calling instance{'s' if callers != 1 else ''}{also} = {allowed}")
    return _Check("pass", f"the {callee} apps had at most {worst} request{'s' if worst != 1 else ''} in flight "
                          f"(limit {limit} × {callers} calling instance{'s' if callers != 1 else ''})")


def _limits_text(ev: WindowEvidence, route: str) -> str:
    policy = ev.policies.get(route)
    if policy is None:
        return ""
    return (f"; the limits in force are max_requests {policy.max_requests}, max_pending {policy.max_pending}, "
            f"max_connections {policy.max_connections}")
