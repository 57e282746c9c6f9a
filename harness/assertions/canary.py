"""``canary``: the canary version of a service is not worse than its baseline version.

Kayenta's judgement (a Mann-Whitney comparison of canary and baseline per metric), done so that every
verdict keeps a stated error rate: each signal is a one-sided test ("the canary is worse") *and* an
effect size with a confidence interval against a margin, so that a verdict says both whether the canary
is worse and by how much it could be.

**Evidence.** The service may sit deep in the call graph, where the client's records cannot say which
version answered an inner call; so both versions are read from their own sidecars: each version's
inbound listener (completed requests, 5xx as errors, as everywhere in this project) and its inbound
latency histogram (Envoy's detailed bins), each summed bin by bin over the version's instances. Latency
is that of every answered request, errors included (Envoy keeps one histogram per listener): a canary
that fails fast looks fast, and is caught by the errors signal.

**Errors** (``errors``; ``error_rate`` and ``success_rate`` name the same comparison): the one-sided
pooled two-proportion z test of H0 "canary error rate ≤ baseline error rate", and the difference of the
rates (canary − baseline) with Newcombe's hybrid score interval.

* fail: the test rejects at the signal's α *and* the interval excludes 0 (the canary errs more);
* pass: the interval lies below the margin max(1 percentage point, half the baseline's error rate),
  :data:`ERROR_MARGIN_POINTS` and :data:`ERROR_MARGIN_SHARE` (an equivalence margin: "not worse" can
  only ever be shown up to some difference, and this one is stated);
* inconclusive otherwise. A canary shown to err more fails even when by less than the margin: the
  margin only says when the *absence* of a difference is shown well enough to pass.

**Latency**: the Mann-Whitney U test on the two histograms, every value in a bin tied
(:func:`harness.assertions.stats.mann_whitney_bins`, which says why that is valid), one-sided "the
canary tends to be slower"; the effect is the common-language effect size A = P(canary > baseline) +
½·P(tie), with DeLong's interval (logit scale), and the difference of the medians read from the bins.

* fail: the test rejects at the signal's α *and* A's interval lies above :data:`LATENCY_MARGIN`
  (0.56, Vargha and Delaney's "small" effect): slower in a way that matters, not just detectably;
* pass: A's interval lies below 0.56;
* inconclusive otherwise, or with fewer than :data:`MIN_RANK_SAMPLES` requests at a version (DeLong's
  variance is a large-sample estimate).

**Overall**: fail if any signal fails, pass if all pass, else inconclusive. The suite's error budget
1 − confidence is split evenly over the signals (Bonferroni): each signal's test runs at
α = (1 − confidence)/k and its interval at confidence 1 − α, so a canary equal to its baseline fails
with probability at most 1 − confidence over all signals together. An inconclusive verdict says how many
more requests to the two versions (at their present shares) would likely settle it, in the manner of
:mod:`harness.assertions.more`: the observed effect is taken as the truth, moved towards the margin by
the standard error that 80% of windows would show, and the interval must clear the margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.assertions import more, stats
from harness.assertions.base import Outcome, VerdictName, percent
from harness.assertions.evidence import WindowEvidence
from harness.model.suite import CanaryExpectation

__all__ = [
    "ERROR_MARGIN_POINTS",
    "ERROR_MARGIN_SHARE",
    "LATENCY_MARGIN",
    "MIN_RANK_SAMPLES",
    "canary_signals",
    "error_margin",
    "evaluate_canary",
]

ERROR_MARGIN_POINTS = 0.01
"""The least difference of error rates (1 percentage point) a pass must exclude: at the error rates a
mesh lives at, showing a difference below 1 point takes tens of thousands of requests."""
ERROR_MARGIN_SHARE = 0.5
"""With a baseline that errs often, the margin is half the baseline's own error rate instead (a canary
may not err 1.5 times as much): the margin is max(:data:`ERROR_MARGIN_POINTS`, this × baseline rate)."""
LATENCY_MARGIN = 0.56
"""The common-language effect size a slower canary must exceed to fail and a pass must exclude:
Vargha and Delaney's (2000) threshold of a "small" effect (0.64 medium, 0.71 large). 0.56 is a canary
slower than the baseline in 56 of 100 random pairs of requests, ties counted half; a 30% slower canary
with a typical latency spread is at about 0.65."""
MIN_RANK_SAMPLES = 20
"""Fewest requests per version for a latency verdict: below it DeLong's standard error is not trusted."""

_SIGNAL_NAMES = {"errors": "errors", "error_rate": "errors", "success_rate": "errors", "latency": "latency"}


def canary_signals(exp: CanaryExpectation) -> list[str]:
    """The distinct signals compared, in the order given: ``error_rate`` and ``success_rate`` are the
    same comparison as ``errors`` (one is 1 − the other), and counted once in the error budget."""
    out: list[str] = []
    for name in exp.signals:
        signal = _SIGNAL_NAMES[name]
        if signal not in out:
            out.append(signal)
    return out


def error_margin(baseline_rate: float) -> float:
    """The equivalence margin of the errors signal for a baseline error rate (see the module)."""
    return max(ERROR_MARGIN_POINTS, ERROR_MARGIN_SHARE * baseline_rate)


@dataclass(frozen=True)
class _Judged:
    """One signal's verdict, the numbers behind it, and what would settle it."""

    signal: str
    verdict: VerdictName
    observed: float | None
    interval: tuple[float, float] | None
    text: str
    details: dict[str, Any] = field(default_factory=dict)
    needed: int | None = None
    """Total requests to the two versions at which the signal would likely settle (if inconclusive)."""
    why_not: str = ""


def evaluate_canary(exp: CanaryExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    """Judge each signal at its share of the error budget, then combine (see the module docstring).

    The outcome's observed value and interval are those of the signal that decided the verdict
    (``details["observed_signal"]``): A for latency, the difference of error rates for errors.
    """
    signals = canary_signals(exp)
    alpha = (1 - confidence) / len(signals)
    per = 1 - alpha
    svc, base, can = exp.service, exp.baseline, exp.canary
    expected = f"{svc} {can} not worse than {base} on {' and '.join(signals)}"
    counts = {v: ev.version_inbound(svc, v) for v in (base, can)}
    bins = {v: ev.version_inbound_latency(svc, v) for v in (base, can)}
    seen = {v: max(int(counts[v].total), sum(c for _, _, c in bins[v])) for v in (base, can)}
    details: dict[str, Any] = {"service": svc, "baseline": base, "canary": can, "window": ev.name,
                               "confidence_per_signal": per, "requests": dict(seen)}
    absent = [v for v in (base, can) if not ev.nodes_of(svc, v)]
    if absent:
        known = ", ".join(ev.versions_of(svc)) or "none"
        return Outcome("canary", "inconclusive", None, None, sum(seen.values()), expected,
                       f"no instance of {svc} {' or '.join(absent)} is in the {ev.name} window's evidence "
                       f"(versions seen: {known}), so {can} cannot be compared with {base}",
                       details=details | {"more_requests": None})
    idle = [v for v in (base, can) if seen[v] == 0]
    if idle:
        who = " and ".join(f"{'canary' if v == can else 'baseline'} {v}" for v in idle)
        return Outcome("canary", "inconclusive", None, None, sum(seen.values()), expected,
                       f"{who} of {svc} received no requests in the {ev.name} window, so {can} cannot be "
                       f"compared with {base}; route traffic to {' and '.join(idle)} (is its share of the "
                       "split 0?)", details=details | {"more_requests": None})
    judged: list[_Judged] = []
    for signal in signals:
        if signal == "errors":
            judged.append(_errors(counts[base].total, counts[base].xx5, counts[can].total, counts[can].xx5,
                                  alpha, per, base, can))
        else:
            judged.append(_latency(bins[base], bins[can], alpha, per, base, can))
    details["signals"] = {j.signal: {"verdict": j.verdict, **j.details} for j in judged}
    verdicts = {j.verdict for j in judged}
    verdict: VerdictName = "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    decider = next(j for j in judged if j.verdict == verdict)
    details["observed_signal"] = decider.signal
    samples = seen[base] + seen[can]
    parts = f"over {seen[can]} requests at {can} and {seen[base]} at {base}: " + "; ".join(j.text for j in judged)
    if verdict == "fail":
        worse = " and ".join(j.signal for j in judged if j.verdict == "fail")
        message = f"{svc} {can} is worse than {base} on {worse}, {parts}"
    elif verdict == "pass":
        message = f"{svc} {can} is not worse than {base}, {parts}"
    else:
        open_ = [j for j in judged if j.verdict == "inconclusive"]
        estimates = [j.needed for j in open_ if j.needed is not None]
        needed = max(estimates) if estimates else None
        rate = samples / ev.counters_duration
        hint = more.more(needed, samples, rate, f"requests to {base} and {can}",
                         why_not="; ".join(j.why_not for j in open_ if j.why_not))
        message = (f"cannot tell yet whether {svc} {can} is worse than {base} at {percent(confidence)} "
                   f"confidence, {parts}; {hint.text}")
        details |= hint.details()
    return Outcome("canary", verdict, decider.observed, decider.interval, samples, expected, message,
                   details=details)


# -------------------------------------------------------------------------------------------- errors
def _errors(total_b: float, errors_b: float, total_c: float, errors_c: float, alpha: float, per: float,
            base: str, can: str) -> _Judged:
    n1, n2 = int(total_b), int(total_c)
    k1, k2 = min(int(errors_b), n1), min(int(errors_c), n2)
    if n1 == 0 or n2 == 0:  # requests in the histogram but none completed at the listener
        idle = base if n1 == 0 else can
        return _Judged("errors", "inconclusive", None, None, f"errors: no completed request at {idle}",
                       {"baseline": {"requests": n1, "errors": k1}, "canary": {"requests": n2, "errors": k2}},
                       None, f"{idle} completed no request")
    p1, p2 = k1 / n1, k2 / n2
    diff = p2 - p1
    margin = error_margin(p1)
    pvalue = stats.one_sided_two_proportion_pvalue(k1, n1, k2, n2)
    lo, hi = stats.newcombe_interval(k1, n1, k2, n2, per)
    verdict: VerdictName
    if pvalue < alpha and lo > 0:
        verdict, word = "fail", "so it errs more"
    elif hi < margin:
        verdict, word = "pass", f"within the {100 * margin:.3g}-point margin"
    else:
        verdict, word = "inconclusive", f"neither shown worse nor within the {100 * margin:.3g}-point margin"
    text = (f"errors: {_pct(p2)} vs {_pct(p1)} (difference {100 * diff:+.2f} points, {percent(per)} CI "
            f"{100 * lo:+.2f} to {100 * hi:+.2f}, one-sided p={pvalue:.2g}), {word}")
    details = {
        "test": "one-sided pooled two-proportion z test; Newcombe hybrid score interval of the difference",
        "pvalue": pvalue, "alpha": alpha, "effect": diff, "interval": [lo, hi], "margin": margin,
        "baseline": {"requests": n1, "errors": k1, "error_rate": p1},
        "canary": {"requests": n2, "errors": k2, "error_rate": p2},
    }
    needed = _errors_needed(k1, n1, k2, n2, per, margin) if verdict == "inconclusive" else None
    return _Judged("errors", verdict, diff, (lo, hi), text, details, needed,
                   "" if needed is not None or verdict != "inconclusive" else
                   "the error rates sit where more requests would not settle it")


def _wilson_real(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson interval of a share ``p`` (a real number, for planning) over n (real) at this z."""
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _newcombe_real(p1: float, n1: float, p2: float, n2: float, z: float) -> tuple[float, float]:
    l1, u1 = _wilson_real(p1, n1, z)
    l2, u2 = _wilson_real(p2, n2, z)
    d = p2 - p1
    return d - math.hypot(p2 - l2, u1 - p1), d + math.hypot(u2 - p2, p1 - l1)


def _errors_needed(k1: int, n1: int, k2: int, n2: int, per: float, margin: float) -> int | None:
    """Total requests to both versions (at their present shares) at which the errors verdict settles in
    :data:`~harness.assertions.more.POWER` of the windows, if the rates are the observed ones: the
    canary's rate moved towards the undecided side by 0.84 standard errors of the difference, the
    Newcombe interval clears 0 (fail) or the margin (pass)."""
    p1, p2 = k1 / n1, k2 / n2
    diff = p2 - p1
    z, zp = stats.normal_ppf(0.5 + per / 2), stats.normal_ppf(more.POWER)
    share = n1 / (n1 + n2)

    def settles(m: int) -> bool:
        m1, m2 = share * m, (1 - share) * m
        se = math.sqrt(p1 * (1 - p1) / m1 + p2 * (1 - p2) / m2)
        if diff > 0 and _newcombe_real(p1, m1, max(0.0, p2 - zp * se), m2, z)[0] > 0:
            return True
        return diff < margin and _newcombe_real(p1, m1, min(1.0, p2 + zp * se), m2, z)[1] < margin

    return more.smallest(settles, n1 + n2)


# ------------------------------------------------------------------------------------------- latency
def _latency(bins_b: list[tuple[float, float, int]], bins_c: list[tuple[float, float, int]], alpha: float,
             per: float, base: str, can: str) -> _Judged:
    n1, n2 = sum(c for _, _, c in bins_b), sum(c for _, _, c in bins_c)
    if n1 == 0 or n2 == 0:
        idle = base if n1 == 0 else can
        return _Judged("latency", "inconclusive", None, None, f"latency: no request timed at {idle}",
                       {"baseline": {"requests": n1}, "canary": {"requests": n2}}, None,
                       f"{idle}'s sidecars timed no request")
    test = stats.mann_whitney_bins(bins_c, bins_b, "greater")
    lo, hi = stats.rank_effect_interval(test, per)
    med_b, med_c = stats.binned_quantile(bins_b, 0.5), stats.binned_quantile(bins_c, 0.5)
    details: dict[str, Any] = {
        "test": "one-sided Mann-Whitney U on the histogram bins (ties corrected); effect "
                "P(canary > baseline) + 0.5 P(tie) with DeLong's interval",
        "pvalue": test.pvalue, "alpha": alpha, "u": test.u, "effect": test.effect, "interval": [lo, hi],
        "margin": LATENCY_MARGIN, "median_difference_ms": med_c - med_b,
        "baseline": {"requests": n1, "median_ms": med_b},
        "canary": {"requests": n2, "median_ms": med_c},
    }
    verdict: VerdictName
    if min(n1, n2) < MIN_RANK_SAMPLES:
        verdict, word = "inconclusive", f"too few requests to rank (at least {MIN_RANK_SAMPLES} at each version)"
    elif test.pvalue < alpha and lo > LATENCY_MARGIN:
        verdict, word = "fail", "so it is slower"
    elif hi < LATENCY_MARGIN:
        verdict, word = "pass", f"below the {LATENCY_MARGIN:.0%} margin"
    else:
        verdict, word = "inconclusive", f"neither shown slower nor below the {LATENCY_MARGIN:.0%} margin"
    text = (f"latency: {can} slower in {test.effect:.1%} of request pairs ({percent(per)} CI {lo:.1%}–{hi:.1%}, "
            f"Mann-Whitney one-sided p={test.pvalue:.2g}), median {med_c:.3g}ms vs {med_b:.3g}ms, {word}")
    needed = _latency_needed(test, per) if verdict == "inconclusive" else None
    return _Judged("latency", verdict, test.effect, (lo, hi), text, details, needed,
                   "" if needed is not None or verdict != "inconclusive" else
                   f"the effect sits on the {LATENCY_MARGIN:g} margin: more requests would not settle it")


def _latency_needed(test: stats.RankComparison, per: float) -> int | None:
    """Total requests to both versions (at their present shares) at which A's interval clears the
    margin in :data:`~harness.assertions.more.POWER` of the windows, if A is the observed one: on the
    logit scale the distance to the margin must reach (z + z_0.8) standard errors, which shrink as
    1/√n; and each version needs :data:`MIN_RANK_SAMPLES`."""
    n = test.n_x + test.n_y
    theta = test.effect
    if theta == LATENCY_MARGIN:
        return None
    z, zp = stats.normal_ppf(0.5 + per / 2), stats.normal_ppf(more.POWER)
    se = test.se
    if se <= 0.0 or not 0.0 < theta < 1.0:
        # DeLong's estimate is degenerate (no overlap, or too few values): the null spread stands in.
        se = math.sqrt((n + 1) / (12.0 * test.n_x * test.n_y))
        theta = min(max(theta, 0.01), 0.99)
    distance = math.log(theta / (1 - theta)) - math.log(LATENCY_MARGIN / (1 - LATENCY_MARGIN))
    scale = ((z + zp) * se / (theta * (1 - theta)) / distance) ** 2
    scale = max(scale, 1.0, MIN_RANK_SAMPLES / min(test.n_x, test.n_y))
    return math.ceil(scale * n) if scale * n < 1e10 else None


# ------------------------------------------------------------------------------------------- helpers
def _pct(rate: float) -> str:
    return f"{100 * rate:.2f}%"
