"""``timeout``: calls on an edge that hit the route timeout ended at the declared time, with a 504.

Evidence. The calling apps record how each of their calls to the callee ended (the demo service's
``calls``): a ``timeout`` is Envoy's own 504 "upstream request timeout", with its latency; an ``ok`` call
is a 2xx, with its latency. For the gateway edge the client records serve (a 504 is a timeout). The
edge's route-timeout counter from the callers' sidecars is reported next to them.

Two promises, both needed for a pass:

* **Timed-out calls end at ``at``**: the median ending time of the timed-out calls, with its
  distribution-free order-statistic interval (over the app's 1 ms latency bins), must lie inside
  ``at`` ± max(10%, 20 ms). An interval wholly outside the band fails: the timeout in force is another.
* **Nothing longer than the timeout succeeds**: of the calls that outlasted ``at`` + tolerance or were
  cut (the calls a timeout at ``at`` must end), the share that *succeeded* must be small. Its Wilson
  interval wholly above :data:`MAX_UNCUT` fails (the timeout in force is longer than declared, or
  absent), wholly below it passes; a scheduling hiccup that delays an app's read of a fast answer is
  rare enough not to reach that share.

With no call slower than ``at`` there is no evidence either way: the verdict is inconclusive and says
how many slow calls would settle it (at least :func:`~harness.assertions.more.min_quantile_sample` of
them for a median interval), which a delay fault longer than ``at`` on the callee provides.
"""

from __future__ import annotations

from typing import Any

from harness.assertions import more, stats
from harness.assertions.base import Outcome, VerdictName, bound_verdict, percent
from harness.assertions.evidence import CallOutcomes, WindowEvidence
from harness.metrics.vocabulary import Bins
from harness.model.suite import TimeoutExpectation

__all__ = ["MAX_UNCUT", "evaluate_timeout", "tolerance_ms"]

MAX_UNCUT = 0.1
"""The largest share of the calls a timeout must end that may succeed anyway (measurement noise)."""
GATEWAY = "gateway"
"""The caller name of the gateway, where load enters: it is no app, so its calls are the client's requests."""


def tolerance_ms(at_ms: float) -> float:
    """SUITE-FORMAT §2: a timeout fires at ``at`` ± 10% or 20 ms, whichever is larger."""
    return max(0.1 * at_ms, 20.0)


def _client_calls(ev: WindowEvidence) -> CallOutcomes:
    """The gateway edge as the client saw it: a 504 is a timeout, a 2xx an answer (exact latencies)."""
    latency: dict[str, Bins] = {"timeout": [], "ok": []}
    status: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    for r in ev.records:
        status[r.status] = status.get(r.status, 0) + 1
        kind = "timeout" if r.status == 504 else "ok" if 200 <= r.status < 300 else "failed"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind in latency:
            latency[kind].append((r.latency_ms, 0.0, 1))
    return CallOutcomes(status, outcomes, {k: sorted(v) for k, v in latency.items()}, 1 if ev.records else 0)


def evaluate_timeout(exp: TimeoutExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    caller, callee = exp.route.from_, exp.route.to
    route = f"{caller}->{callee}"
    at_ms = exp.at * 1000
    tol = tolerance_ms(at_ms)
    band = (at_ms - tol, at_ms + tol)
    expected = f"{route}: calls that hit the timeout end at {at_ms:g}ms ±{tol:g}ms with 504"
    counts = ev.edge(caller, callee)
    calls = _client_calls(ev) if caller == GATEWAY else ev.calls(caller, callee)
    span = ev.duration if caller == GATEWAY else ev.counters_duration
    timed_out = calls.latency.get("timeout", [])
    n_t = sum(c for _, _, c in timed_out)
    overlong = sum(c for lo, _, c in calls.latency.get("ok", []) if lo >= band[1])
    details: dict[str, Any] = {
        "timed_out": n_t, "timeouts_counted": int(counts.route_timeouts),
        "per_try_timeouts": int(counts.per_try_timeouts), "band_ms": [band[0], band[1]],
        "overlong_successes": overlong, "calls": calls.total,
        "status": {str(k): v for k, v in sorted(calls.status.items())},
    }
    if calls.reporting == 0:
        why = (f"the mesh counted {int(counts.route_timeouts)} timeouts on {route}, but " if counts.route_timeouts
               else f"no call on {route} was recorded in the {exp.window} window: ")
        return Outcome("timeout", "inconclusive", None, None, 0, expected,
                       why + f"when calls ended is measured only where {caller} is a demo app or the gateway",
                       details=details | {"more_requests": None})

    # Promise 2: nothing that outlasted the timeout succeeded.
    cut = overlong + n_t
    share_iv = stats.wilson_interval(overlong, cut, confidence) if cut else None
    uncut = bound_verdict(share_iv, None, MAX_UNCUT) if share_iv else "inconclusive"
    # Promise 1: timed-out calls ended at `at`.
    point = stats.binned_quantile(timed_out, 0.5) if n_t else None
    interval = stats.binned_quantile_interval(timed_out, 0.5, confidence) if n_t else None
    ending: VerdictName = bound_verdict(interval, *band) if interval else "inconclusive"

    problems = []
    if ending == "fail" and point is not None and interval is not None:
        problems.append(f"{n_t} timed-out calls ended at a median {point:.0f}ms ({percent(confidence)} CI "
                        f"{interval[0]:.0f}–{interval[1]:.0f}ms), outside {band[0]:.0f}–{band[1]:.0f}ms: the "
                        f"timeout in force is about {point:.0f}ms, not {at_ms:g}ms")
    if uncut == "fail":
        slow = [b for b in calls.latency.get("ok", []) if b[0] >= band[1]]
        problems.append(f"{overlong} of the {cut} calls that outlasted {band[1]:.0f}ms or were cut succeeded "
                        f"without a timeout (a median {stats.binned_quantile(slow, 0.5):.0f}ms): the timeout in "
                        f"force is longer than {at_ms:g}ms, or absent")
    if problems:
        return Outcome("timeout", "fail", point, interval, n_t, expected,
                       f"{route} does not time out at {at_ms:g}ms: " + "; ".join(problems), details=details)
    if ending == "pass" and uncut == "pass" and point is not None and interval is not None:
        return Outcome("timeout", "pass", point, interval, n_t, expected,
                       f"{n_t} calls on {route} timed out with 504 at a median {point:.0f}ms ({percent(confidence)} "
                       f"CI {interval[0]:.0f}–{interval[1]:.0f}ms), inside {at_ms:g}ms ±{tol:g}ms, and "
                       f"{overlong} of {cut} calls that a timeout at {at_ms:g}ms must end succeeded", details=details)
    hint = _how_much_more(timed_out, n_t, interval, band, overlong, cut, share_iv, confidence, span)
    return Outcome("timeout", "inconclusive", point, interval, n_t, expected,
                   _undecided(exp, calls.total, n_t, point, interval, overlong, cut, confidence, hint),
                   details=details | hint.details())


def _undecided(exp: TimeoutExpectation, total: int, n_t: int, point: float | None,
               interval: tuple[float, float] | None, overlong: int, cut: int, confidence: float,
               hint: more.More) -> str:
    """Why the verdict is inconclusive, and what would settle it."""
    route, at_ms = f"{exp.route.from_}->{exp.route.to}", exp.at * 1000
    if cut == 0:
        return (f"no call on {route} lasted longer than {at_ms:g}ms in the {exp.window} window ({total} calls), "
                f"so the timeout was never reached; {hint.text} (delay {exp.route.to} by more than {at_ms:g}ms)")
    if point is None or interval is None:
        return (f"only {n_t} calls on {route} timed out, too few to place their ending time at "
                f"{percent(confidence)} confidence; {hint.text}")
    return (f"{n_t} calls on {route} timed out at a median {point:.0f}ms ({percent(confidence)} CI "
            f"{interval[0]:.0f}–{interval[1]:.0f}ms) and {overlong} of {cut} slow calls succeeded: too few to tell "
            f"against {at_ms:g}ms ±{tolerance_ms(at_ms):g}ms; {hint.text}")


def _how_much_more(timed_out: Bins, n_t: int, interval: tuple[float, float] | None, band: tuple[float, float],
                   overlong: int, cut: int, share_iv: tuple[float, float] | None, confidence: float,
                   span: float) -> more.More:
    """More slow calls that would settle both promises, and how long this window's rate of them takes.

    Each promise needs its own calls: timed-out ones to place the ending time, slow ones (cut or not) to
    bound the share that succeeded; the larger need is the answer.
    """
    floor = more.min_quantile_sample(0.5, confidence)
    if cut == 0:
        return more.more(floor, 0, None, "calls slower than the timeout")
    need_t = floor
    if interval is not None:
        ending = more.quantile_needed_bins(timed_out, 0.5, confidence, *more.bounds_to_settle(interval, *band))
        if ending is None:
            return more.More(None, None, "their ending time sits on the edge of the band: more calls would not "
                                         "settle it")
        need_t = max(need_t, ending)
    need_cut = more.proportion_needed(overlong, cut, confidence, *more.bounds_to_settle(share_iv, None, MAX_UNCUT))
    if need_cut is None:
        return more.More(None, None, f"the share of slow calls that succeeded sits at {MAX_UNCUT:.0%}: more "
                                     "calls would not settle it")
    extra_t, extra_cut = max(0, need_t - n_t), max(0, need_cut - cut)
    extra = max(extra_t, extra_cut, 1)
    if extra_t and not n_t:  # no call timed out yet: no rate to extrapolate
        return more.More(extra, None, f"about {extra} more slow calls would likely settle it")
    seconds = max(extra_t * span / n_t if extra_t else 0.0, extra_cut * span / cut)
    return more.More(extra, seconds, f"about {extra} more slow calls (~{seconds:.0f}s more at this window's "
                                     "rate) would likely settle it")
