"""``traffic-split``: does traffic to a service divide across its versions as declared?

Evidence is the client's own: every response carries ``x-harness-trace``, which names the version of
each service that answered, so the split is counted where it matters (what users got), independent of
the mesh's own counters. Without ``tolerance`` the test is a multinomial goodness-of-fit (chi-square) at
the suite's confidence: it fails when the observed shares are incompatible with the declared ones.
With ``tolerance`` (percentage points) it is an equivalence test: it passes only when every version's
share interval lies within ±tolerance of the declared share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from harness.assertions import more, stats
from harness.assertions.base import Outcome, VerdictName
from harness.assertions.evidence import WindowEvidence
from harness.model.suite import TrafficSplitExpectation

__all__ = ["count_versions", "evaluate_traffic_split"]


def count_versions(ev: WindowEvidence, service: str, declared: Iterable[str] = ()) -> dict[str, int]:
    prefix = f"{service}-"
    known = set(declared) | {n.version for n in ev.nodes.values() if n.service == service}
    counts: dict[str, int] = {}
    for record in ev.records:
        for hop in record.trace.split(","):
            version = hop[len(prefix):]
            if hop.startswith(prefix) and (version in known or "-" not in version):
                counts[version] = counts.get(version, 0) + 1
    return counts


def evaluate_traffic_split(exp: TrafficSplitExpectation, ev: WindowEvidence, confidence: float) -> Outcome:
    counts = count_versions(ev, exp.service, exp.split)
    versions = sorted(set(exp.split) | set(counts))
    observed = [counts.get(v, 0) for v in versions]
    n = sum(observed)
    declared = ", ".join(f"{v}: {exp.split.get(v, 0):g}%" for v in versions)
    expected = f"{exp.service} split {declared}"
    answered = [r for r in ev.records if 0 < r.status < 500]
    if n == 0 and answered and not any(r.trace for r in answered):
        return Outcome("traffic-split", "inconclusive", None, None, 0, expected,
                       f"none of the {len(answered)} answers in the {ev.name} window carries x-harness-trace, the "
                       "header the harness's demo services set to name the versions that answered: the split of "
                       f"{exp.service} cannot be counted at the client for these workloads")
    if n == 0:
        hint = more.more(_enough_for_gof(exp.split.values()), 0, None)
        return Outcome("traffic-split", "inconclusive", None, None, 0, expected,
                       f"no request reached {exp.service} in the {ev.name} window; at least {hint.requests} "
                       "are needed to test the split", details=hint.details())
    shares = ", ".join(f"{v}: {100 * c / n:.1f}%" for v, c in zip(versions, observed, strict=True))
    probs = [exp.split.get(v, 0) / 100 for v in versions]
    details: dict[str, Any] = {"counts": dict(zip(versions, observed, strict=True))}
    if exp.tolerance is not None:
        return _equivalence(exp, versions, observed, n, confidence, expected, shares, details, n / ev.duration)
    gof = stats.chi_square_gof(observed, probs)
    alpha = 1 - confidence
    if len(versions) == 2 and 0 < probs[0] < 1:
        # Two versions: the exact binomial test, no large-sample approximation needed.
        pvalue, test, min_expected = stats.binomial_test(observed[0], n, probs[0]), "binomial", gof.min_expected
    else:
        pvalue, test, min_expected = gof.pvalue, "chi-square", gof.min_expected
    if min_expected < 5:
        # The chi-square approximation is not trusted with fewer than 5 expected in a version; exact
        # binomial tests of each version's share (Bonferroni over the versions) can still show that the
        # split is wrong (a 0% version that answered, 80 requests where 4 were expected), never that it holds.
        exact = min(1.0, len(versions) * min(stats.binomial_test(c, n, p) for c, p in zip(observed, probs,
                                                                                        strict=True)))
        if exact >= alpha:
            hint = more.more(_enough_for_gof(exp.split.values()), n, n / ev.duration)
            return Outcome("traffic-split", "inconclusive", pvalue, None, n, expected,
                           f"{n} requests are too few to test the split (fewer than 5 expected in a version); "
                           f"{hint.text}", details=details | hint.details())
        pvalue, test = exact, "exact binomial per version"
    verdict: VerdictName = "pass" if pvalue >= alpha else "fail"
    how = "agrees with" if verdict == "pass" else "contradicts"
    message = (f"observed {shares} over {n} requests {how} the declared split "
               f"({test} test p={pvalue:.3g}, alpha={alpha:.3g})")
    return Outcome("traffic-split", verdict, pvalue, None, n, expected, message, details=details)


def _enough_for_gof(percents: Iterable[float]) -> int:
    """Requests at which every declared version expects 5, the chi-square test's usual minimum."""
    smallest = min((p for p in percents if p > 0), default=100.0)
    return math.ceil(5 * 100 / smallest)


def _equivalence(exp: TrafficSplitExpectation, versions: list[str], observed: list[int], n: int,
                 confidence: float, expected: str, shares: str, details: dict[str, Any], rate: float) -> Outcome:
    assert exp.tolerance is not None
    tol = exp.tolerance / 100
    # Bonferroni across versions so the joint statement holds at the suite's confidence.
    per = 1 - (1 - confidence) / len(versions)
    verdict: VerdictName = "pass"
    worst = ""
    needed: int | None = n
    for version, count in zip(versions, observed, strict=True):
        want = exp.split.get(version, 0) / 100
        lo, hi = stats.wilson_interval(count, n, per)
        if hi < want - tol or lo > want + tol:
            verdict = "fail"
            worst = f"{version} at {100 * count / n:.1f}% is outside {100 * want:g}±{exp.tolerance:g}"
            break
        if lo < want - tol or hi > want + tol:
            verdict = "inconclusive"
            worst = (f"{version}'s interval {100 * lo:.1f}–{100 * hi:.1f}% is not within "
                     f"{100 * want:g}±{exp.tolerance:g}")
            # Each straddled edge of the band must be excluded: the share inside it, the interval clear of it.
            inside = more.proportion_needed(count, n, per, *more.bounds_to_settle((lo, hi), want - tol, None))
            below = more.proportion_needed(count, n, per, *more.bounds_to_settle((lo, hi), None, want + tol))
            needed = None if needed is None or inside is None or below is None else max(needed, inside, below)
    message = f"observed {shares} over {n} requests: " + (
        f"every version within ±{exp.tolerance:g} points of the declared split" if verdict == "pass" else worst)
    if verdict == "inconclusive":
        hint = more.more(needed, n, rate, why_not="a share sits on the edge of its tolerance: more requests would "
                                                  "not settle it")
        message = f"{message}; {hint.text}"
        details = details | hint.details()
    return Outcome("traffic-split", verdict, None, None, n, expected + f" ±{exp.tolerance:g}", message,
                   details=details)
