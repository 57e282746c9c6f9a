"""``slo``: a success rate, error rate, latency quantile or throughput meets a bound, with confidence.

Proportions use the Wilson interval (good coverage near 0 and 1, where SLOs live); latency quantiles use
the distribution-free order-statistic interval, so no shape is assumed for a latency distribution;
throughput uses a Poisson interval on the count. An inconclusive verdict says how many more requests
(or seconds, at the window's rate) would likely settle it (:mod:`harness.assertions.more`).
"""

from __future__ import annotations

import math

from harness.assertions import more, stats
from harness.assertions.base import Outcome, bound_verdict, percent
from harness.assertions.evidence import WindowEvidence, is_success
from harness.model.durations import parse_duration
from harness.model.suite import Slo

__all__ = ["evaluate_slo", "proportion_of", "sidecar_latency_bins"]


def proportion_of(ev: WindowEvidence, scope: str) -> tuple[int, int, str]:
    """(successes, total, description) for a scope: client records, or a service's / edge's sidecars."""
    if scope == "client":
        ok = sum(1 for r in ev.records if is_success(r.status))
        return ok, len(ev.records), "client requests"
    if scope.startswith("service:"):
        name = scope.split(":", 1)[1]
        counts = ev.inbound(name)
        return int(counts.total - counts.xx5), int(counts.total), f"requests received by {name}"
    caller, callee = scope.split(":", 1)[1].split("->")
    counts = ev.answered(caller.strip(), callee.strip())
    return int(counts.total - counts.xx5), int(counts.total), f"requests on {caller}->{callee}"


def sidecar_latency_bins(ev: WindowEvidence, scope: str) -> tuple[list[tuple[float, float, int]], str]:
    """(latency bins in ms, where they were measured) for a ``service:`` or ``edge:`` scope."""
    if scope.startswith("service:"):
        name = scope.split(":", 1)[1]
        return ev.inbound_latency(name), f"at {name}'s sidecars"
    caller, callee = (x.strip() for x in scope.split(":", 1)[1].split("->"))
    return ev.edge_latency(caller, callee), f"on {caller}->{callee}"


def _rate_bounds(exp: Slo) -> tuple[float | None, float | None]:
    low = float(exp.min) if exp.min is not None else None
    high = float(exp.max) if exp.max is not None else None
    return low, high


def evaluate_slo(exp: Slo, ev: WindowEvidence, confidence: float) -> Outcome:
    if exp.signal in ("success_rate", "error_rate"):
        return _proportion(exp, ev, confidence)
    if exp.signal == "latency":
        return _latency(exp, ev, confidence)
    return _throughput(exp, ev, confidence)


def _expected(exp: Slo, unit: str = "") -> str:
    parts = []
    if exp.min is not None:
        parts.append(f">= {exp.min}{unit}")
    if exp.max is not None:
        parts.append(f"<= {exp.max}{unit}")
    what = f"p{exp.quantile * 100:g} latency" if exp.quantile else exp.signal
    return f"{what} ({exp.scope}, {exp.window}) " + " and ".join(parts)


def _proportion(exp: Slo, ev: WindowEvidence, confidence: float) -> Outcome:
    ok, n, what = proportion_of(ev, exp.scope)
    hits = ok if exp.signal == "success_rate" else n - ok
    expected = _expected(exp)
    if n == 0:
        hint = more.more(more.proportion_needed(0, 0, confidence, *_rate_bounds(exp)), 0, None, what)
        return Outcome("slo", "inconclusive", None, None, 0, expected,
                       f"no {what} in the {exp.window} window, so {exp.signal} cannot be judged; at least "
                       f"{hint.requests} {what} are needed to settle it", details=hint.details())
    observed = hits / n
    interval = stats.wilson_interval(hits, n, confidence)
    verdict = bound_verdict(interval, *_rate_bounds(exp))
    sentence = {
        "pass": "meets the bound",
        "fail": "misses the bound",
        "inconclusive": "is too close to the bound to tell with this many samples",
    }[verdict]
    message = (f"{exp.signal} {observed:.4f} over {n} {what} ({percent(confidence)} CI "
               f"{interval[0]:.4f}–{interval[1]:.4f}) {sentence} ({expected})")
    if verdict == "inconclusive":
        span = ev.duration if exp.scope == "client" else ev.counters_duration
        needed = more.proportion_needed(hits, n, confidence, *more.bounds_to_settle(interval, *_rate_bounds(exp)))
        hint = more.more(needed, n, n / span, what,
                         why_not=f"{exp.signal} sits on the bound: more {what} would not settle it")
        return Outcome("slo", verdict, observed, interval, n, expected, f"{message}; {hint.text}",
                       details=hint.details())
    return Outcome("slo", verdict, observed, interval, n, expected, message)


def _latency(exp: Slo, ev: WindowEvidence, confidence: float) -> Outcome:
    expected = _expected(exp)
    assert exp.quantile is not None  # guaranteed by the model
    low = parse_duration(exp.min) * 1000 if isinstance(exp.min, str) else None
    high = parse_duration(exp.max) * 1000 if isinstance(exp.max, str) else None
    if exp.scope != "client":
        return _sidecar_latency(exp, ev, confidence, expected, low, high)
    values = [r.latency_ms for r in ev.records]
    rate = len(values) / ev.duration
    if not values:
        hint = more.more(more.min_quantile_sample(exp.quantile, confidence), 0, None)
        return Outcome("slo", "inconclusive", None, None, 0, expected,
                       f"no client requests in the {exp.window} window; at least {hint.requests} are needed "
                       f"to bound the p{exp.quantile * 100:g} at {percent(confidence)} confidence",
                       details=hint.details())
    point = stats.quantile(values, exp.quantile)
    interval = stats.quantile_interval(values, exp.quantile, confidence)
    if interval is None:
        hint = more.more(more.quantile_needed_values(values, exp.quantile, confidence, low, high), len(values), rate)
        return Outcome("slo", "inconclusive", point, None, len(values), expected,
                       f"{len(values)} requests are too few to bound the p{exp.quantile * 100:g} "
                       f"at {percent(confidence)} confidence; {hint.text}", details=hint.details())
    verdict = bound_verdict(interval, low, high)
    message = (f"p{exp.quantile * 100:g} latency {point:.1f}ms over {len(values)} requests "
               f"({percent(confidence)} CI {interval[0]:.1f}–{interval[1]:.1f}ms): {verdict} against {expected}")
    if verdict == "inconclusive":
        needed = more.quantile_needed_values(values, exp.quantile, confidence,
                                             *more.bounds_to_settle(interval, low, high))
        hint = more.more(needed, len(values), rate, why_not="the quantile sits on the bound: more requests "
                                                            "would not settle it")
        return Outcome("slo", verdict, point, interval, len(values), expected, f"{message}; {hint.text}",
                       details=hint.details())
    return Outcome("slo", verdict, point, interval, len(values), expected, message)


def _sidecar_latency(exp: Slo, ev: WindowEvidence, confidence: float, expected: str,
                     low: float | None, high: float | None) -> Outcome:
    """Latency as a service's inbound sidecar (``service:``) or a caller's outbound sidecar (``edge:``)
    measured it, from Envoy's histogram bins: the order-statistic interval widened to whole bins."""
    assert exp.quantile is not None
    bins, where = sidecar_latency_bins(ev, exp.scope)
    n = sum(c for _, _, c in bins)
    label = f"p{exp.quantile * 100:g} latency {where}"
    rate = n / ev.counters_duration
    if n == 0:
        hint = more.more(more.min_quantile_sample(exp.quantile, confidence), 0, None)
        return Outcome("slo", "inconclusive", None, None, 0, expected,
                       f"no requests {where} in the {exp.window} window; at least {hint.requests} are needed "
                       f"to bound the p{exp.quantile * 100:g} at {percent(confidence)} confidence",
                       details=hint.details())
    point = stats.binned_quantile(bins, exp.quantile)
    interval = stats.binned_quantile_interval(bins, exp.quantile, confidence)
    if interval is None:
        hint = more.more(more.quantile_needed_bins(bins, exp.quantile, confidence, low, high), n, rate)
        return Outcome("slo", "inconclusive", point, None, n, expected,
                       f"{n} requests are too few to bound the {label} at {percent(confidence)} confidence; "
                       f"{hint.text}", details=hint.details())
    verdict = bound_verdict(interval, low, high)
    message = (f"{label} {point:.1f}ms over {n} requests ({percent(confidence)} CI {interval[0]:.1f}–"
               f"{interval[1]:.1f}ms, from Envoy's histogram): {verdict} against {expected}")
    if verdict == "inconclusive":
        needed = more.quantile_needed_bins(bins, exp.quantile, confidence, *more.bounds_to_settle(interval, low, high))
        hint = more.more(needed, n, rate, why_not="the quantile's histogram bin holds the bound: more requests "
                                                  "would not settle it")
        return Outcome("slo", verdict, point, interval, n, expected, f"{message}; {hint.text}",
                       details=hint.details())
    return Outcome("slo", verdict, point, interval, n, expected, message)


def _throughput(exp: Slo, ev: WindowEvidence, confidence: float) -> Outcome:
    expected = _expected(exp, " req/s")
    ok, n, what = proportion_of(ev, exp.scope)
    del ok
    # Client records are counted over the window; sidecar counters over the span between their scrapes.
    span = ev.duration if exp.scope == "client" else ev.counters_duration
    z = stats.normal_ppf(0.5 + confidence / 2)
    lo = max(0.0, n - z * math.sqrt(n)) / span
    hi = (n + z * math.sqrt(n) + z * z) / span
    observed = n / span
    verdict = bound_verdict((lo, hi), *_rate_bounds(exp))
    message = (f"throughput {observed:.1f} req/s ({n} {what} in {span:.1f}s, "
               f"{percent(confidence)} CI {lo:.1f}–{hi:.1f}): {verdict} against {expected}")
    if verdict == "inconclusive":
        needed = more.rate_seconds_needed(n, span, confidence, *more.bounds_to_settle((lo, hi), *_rate_bounds(exp)))
        if needed is None:
            hint = more.More(None, None, "the rate sits on the bound: a longer window would not settle it")
        else:
            extra = needed - span
            hint = more.More(math.ceil(extra * observed), extra,
                             f"a window about {extra:.0f}s longer ({needed:.0f}s in all) would likely settle it")
        return Outcome("slo", verdict, observed, (lo, hi), n, expected, f"{message}; {hint.text}",
                       details=hint.details())
    return Outcome("slo", verdict, observed, (lo, hi), n, expected, message)
