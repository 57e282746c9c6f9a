"""How much more evidence would settle an inconclusive verdict.

An inconclusive verdict is only useful if it says what to do next: run longer, or change the
experiment. Every estimate here takes the window's observed value as the truth and asks at what sample
size the interval the verdict uses would no longer straddle the bound *in at least* :data:`POWER` *of
the windows of that size* (a plain "the interval around this estimate just excludes the bound" size
settles only half the time, since the next estimate falls on either side of this one). That is the
ordinary sample-size calculation of a test of the bound at the suite's confidence with 80% power: at a
candidate size m, the estimate is moved towards the bound by z_power standard errors (what a window of
size m shows with 80% probability at least), and the verdict's own interval, at the verdict's own
confidence, must exclude the bound:

* a **rate** (Wilson interval) at share p̂: the Wilson interval of p̂ − z_p·√(p̂(1−p̂)/m) clears the
  bound — about m = (z_c + z_p)² p̂(1−p̂) / (p̂ − b)², i.e. n·(half-width / distance)² with the margin;
* a **quantile** (order-statistic interval) with a share F̂(b) of the values at or below the bound b:
  the interval lies below b once its upper rank u(m) (exact, from the binomial) is at most the count
  of values below b that m samples show with 80% probability, m·F̂ − z_p·√(m F̂(1−F̂)) (above b, the
  mirror image with the lower rank) — about (z_c√(q(1−q)) + z_p√(F̂(1−F̂)))² / (F̂ − q)². For Envoy's
  bins, F̂ is the share certainly below b or possibly below it, whichever way the verdict would go;
* a **Poisson rate** (throughput): the window length at which the count's interval, around the count
  moved z_p standard deviations towards the bound, excludes it.

When the observed value sits on the bound no amount of the same traffic settles it, and the estimate is
``None``; the verdict then says so instead of a number.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.assertions import stats

__all__ = [
    "POWER",
    "More",
    "bounds_to_settle",
    "min_quantile_sample",
    "more",
    "proportion_needed",
    "quantile_needed_bins",
    "quantile_needed_values",
    "rate_seconds_needed",
    "smallest",
]

POWER = 0.8
"""The chance that the suggested amount settles the verdict, if the truth is what was observed."""
_CAP = 10**10


def bounds_to_settle(interval: tuple[float, float] | None, low: float | None,
                     high: float | None) -> tuple[float | None, float | None]:
    """The bounds an interval still straddles (the rule of :func:`~harness.assertions.base.bound_verdict`);
    without an interval, both."""
    if interval is None:
        return low, high
    lo, hi = interval
    return (low if low is not None and lo < low <= hi else None,
            high if high is not None and lo <= high < hi else None)


def _z(confidence: float) -> tuple[float, float]:
    """z of the verdict's two-sided interval, and the one-sided z of :data:`POWER`."""
    return stats.normal_ppf(0.5 + confidence / 2), stats.normal_ppf(POWER)


def smallest(settles: Callable[[int], bool], start: int) -> int | None:
    """The smallest n >= start with ``settles(n)`` (monotone in n), or None beyond 10^10."""
    n = max(1, start)
    if settles(n):
        return n
    lo = n
    while not settles(n):
        lo = n
        n *= 2
        if n > _CAP:
            return None
    while n - lo > 1:
        mid = (lo + n) // 2
        if settles(mid):
            n = mid
        else:
            lo = mid
    return n


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    """The Wilson interval of an observed share ``p`` (a real number) over n at this z."""
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z2 / (4 * n * n)) / denom
    return center - half, center + half


def proportion_needed(k: int, n: int, confidence: float, low: float | None, high: float | None) -> int | None:
    """Total samples at which the Wilson interval of the verdict excludes every bound it straddles now,
    in :data:`POWER` of the windows if the share is k/n. With n == 0, the fewest samples with which it
    could pass at all (every one a success against ``low`` alone, every one a failure against ``high``
    alone, the middle share between both)."""
    z, zp = _z(confidence)
    if n == 0:
        best = 1.0 if high is None else 0.0 if low is None else (low + high) / 2

        def could_pass(m: int) -> bool:
            lo_m, hi_m = _wilson(best, m, z)
            return (low is None or lo_m >= low) and (high is None or hi_m <= high)

        return smallest(could_pass, 1) if (low is None or low < 1) and (high is None or high > 0) else None
    p = k / n
    need = n
    for b in (x for x in (low, high) if x is not None):
        lo, hi = stats.wilson_interval(k, n, confidence)
        if lo > b or hi < b:
            continue  # this bound is settled already
        if p == b:
            return None

        def excludes(m: int, b: float) -> bool:
            shift = zp * math.sqrt(p * (1 - p) / m)
            if p > b:
                return _wilson(max(0.0, p - shift), m, z)[0] > b
            return _wilson(min(1.0, p + shift), m, z)[1] < b

        found = smallest(functools.partial(excludes, b=b), n)
        if found is None:
            return None
        need = max(need, found)
    return need


def _quantile_needed(share: float, q: float, confidence: float, upper: bool) -> int | None:
    """Samples at which the order-statistic interval for the q-quantile lies wholly below a bound
    (``upper``: its upper rank within the values below it) or wholly above it (its lower rank beyond
    them), a share ``share`` of the values lying at or below the bound; in :data:`POWER` of the windows.
    Exact ranks; beyond ten million samples the normal approximation, which is then exact enough."""
    gap = share - q if upper else q - share
    if gap <= 0:
        return None
    z, zp = _z(confidence)
    spread = zp * math.sqrt(share * (1 - share))
    approx = math.ceil(((z * math.sqrt(q * (1 - q)) + spread) / gap) ** 2)
    if approx > 10**7:
        return approx

    def settles(m: int) -> bool:
        ranks = stats.quantile_ranks(m, q, confidence)
        if ranks is None:
            return False
        low_rank, high_rank = ranks
        if upper:  # values below the bound that m samples show in POWER of the windows
            return high_rank <= m * share - spread * math.sqrt(m)
        return low_rank > m * share + spread * math.sqrt(m)

    return smallest(settles, 2)


def quantile_needed_values(values: Sequence[float], q: float, confidence: float,
                           low: float | None, high: float | None) -> int | None:
    """Total samples at which the q-quantile's interval would exclude each bound it straddles now,
    at the spread of ``values``."""
    n = len(values)
    need = max(n, min_quantile_sample(q, confidence))
    if n == 0:
        return need
    for b in (x for x in (low, high) if x is not None):
        at_or_below = sum(1 for v in values if v <= b) / n
        below = sum(1 for v in values if v < b) / n
        # The quantile lies at or below b when more than q of the values do, else above it.
        found = (_quantile_needed(at_or_below, q, confidence, upper=True) if at_or_below > q
                 else _quantile_needed(below, q, confidence, upper=False))
        if found is None:
            return None
        need = max(need, found)
    return need


def quantile_needed_bins(bins: Sequence[tuple[float, float, int]], q: float, confidence: float,
                         low: float | None, high: float | None) -> int | None:
    """As :func:`quantile_needed_values` for histogram bins: values in the bin holding the bound could
    lie on either side of it, so the share is taken on the side the verdict would settle to."""
    n = sum(c for _, _, c in bins)
    need = max(n, min_quantile_sample(q, confidence))
    if n == 0:
        return need
    for b in (x for x in (low, high) if x is not None):
        surely_below = sum(c for lo, w, c in bins if lo + w <= b) / n
        maybe_below = sum(c for lo, _, c in bins if lo < b) / n
        if surely_below > q:
            found = _quantile_needed(surely_below, q, confidence, upper=True)
        elif maybe_below < q:
            found = _quantile_needed(maybe_below, q, confidence, upper=False)
        else:
            found = None  # the quantile's own bin holds the bound: more samples cannot separate them
        if found is None:
            return None
        need = max(need, found)
    return need


def min_quantile_sample(q: float, confidence: float) -> int:
    """The fewest samples with any order-statistic interval for the q-quantile at ``confidence``
    (e.g. 459 for a p99 at 99%, 8 for a median)."""
    found = smallest(lambda m: stats.quantile_ranks(m, q, confidence) is not None, 2)
    return found if found is not None else _CAP


def rate_seconds_needed(n: int, span: float, confidence: float, low: float | None,
                        high: float | None) -> float | None:
    """Total window length (s) at which the throughput verdict's Poisson interval excludes each bound
    it straddles now, in :data:`POWER` of the windows if the rate is n/span."""
    rate = n / span
    z, zp = _z(confidence)
    need = span

    def interval(t: float, towards: float) -> tuple[float, float]:
        mean = rate * t
        count = max(0.0, mean + math.copysign(zp * math.sqrt(mean), towards - rate))
        return max(0.0, count - z * math.sqrt(count)) / t, (count + z * math.sqrt(count) + z * z) / t

    for b in (x for x in (low, high) if x is not None):
        if rate == b:
            return None

        def excludes(centis: int, b: float) -> bool:
            lo_t, hi_t = interval(centis / 100, b)  # hundredths of a second, so the integer search applies
            return lo_t > b if rate > b else hi_t < b

        found = smallest(functools.partial(excludes, b=b), max(1, int(span * 100)))
        if found is None:
            return None
        need = max(need, found / 100)
    return need


@dataclass(frozen=True)
class More:
    """An estimate of what would settle a verdict, for its message and its ``details``."""

    requests: int | None
    seconds: float | None
    text: str

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"more_requests": self.requests}
        if self.seconds is not None:
            out["more_seconds"] = round(self.seconds, 1)
        return out


def more(needed: int | None, have: int, rate_per_s: float | None, what: str = "requests",
         why_not: str = "") -> More:
    """How many more ``what`` (and how many more seconds at the window's rate of them) reach ``needed``.

    ``needed`` None means the same traffic cannot settle it; ``why_not`` then says what would.
    """
    if needed is None:
        return More(None, None, why_not or f"more {what} of the same kind would not settle it")
    extra = max(1, needed - have)
    if rate_per_s is not None and rate_per_s > 0:
        seconds = extra / rate_per_s
        return More(extra, seconds, f"about {extra} more {what} (~{_seconds(seconds)} more at this window's "
                                    f"rate of {rate_per_s:.3g}/s) would likely settle it")
    return More(extra, None, f"about {extra} more {what} would likely settle it")


def _seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f}s" if s >= 1 else f"{s:.1f}s"
    if s < 5400:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"
