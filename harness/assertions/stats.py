"""Statistics that turn collected evidence into verdicts.

Distributions, tests and intervals come from :mod:`scipy.stats`; what stays hand-written here is the
mesh-specific part (the retry oracle, quantiles of Envoy's binned histograms, the choice of
order-statistic ranks), the Wilson interval (for speed, measured), and the edge cases verdicts rely
on, which scipy either rejects or answers with NaN (``n == 0``, an impossible category that was
observed, a single category).

Which tool is used where:

* **Rates** (SLO success/error rate, retry success, per-version traffic shares) use
  :func:`wilson_interval`: short, and its coverage averaged over p is close to nominal, but for
  particular ``(n, p)`` -- notably small ``n * p`` -- it can dip a point or two below nominal (exact
  93.7% instead of 95% at n=50, p=0.03).  It is the one interval written out here although scipy
  has it: scipy's costs ~300x more per call (see its docstring), and rates are re-judged at every
  look of an adaptive phase.
* **Rates where the guarantee itself matters** (a claim built on ``k = 0`` failures out of a few
  hundred requests, tiny n, or a release gate that must never be optimistic) should use the exact
  Clopper-Pearson interval, ``scipy.stats.binomtest(k, n).proportion_ci(c, method="exact")``:
  coverage >= nominal for every p, at the cost of width.  No expectation needs it yet, so there is
  no wrapper here.
* **Latency percentiles** use :func:`quantile_interval`: a distribution-free interval built from
  order statistics (latencies are skewed and heavy-tailed, so no parametric model is trusted).  It
  returns ``None`` when the sample is too small to support the requested confidence; callers report
  that as *inconclusive* rather than pass/fail.  Sidecar latency, which Envoy only reports as a
  histogram, uses :func:`binned_quantile_interval`: the same ranks, widened to whole bins.
* **"Is the canary worse than the baseline"** (the ``canary`` expectation): errors by
  :func:`one_sided_two_proportion_pvalue` with the difference of the two rates bounded by
  :func:`newcombe_interval`; latency by :func:`mann_whitney_bins`, the Mann-Whitney U test computed
  straight from Envoy's histogram bins, whose effect size (the common-language effect size) is bounded
  by :func:`rank_effect_interval`.
* **"Does the observed rate match the configured one"** (fault-injection percentage, traffic split)
  uses :func:`binomial_test` (``scipy.stats.binomtest``) for one proportion and
  :func:`chi_square_gof` (``scipy.stats.chisquare``) for a multi-way split.
* **"Did the after-fault group get worse"** on raw samples: :func:`mann_whitney_u`
  (``scipy.stats.mannwhitneyu``; rank based, robust to outliers), the reference that
  :func:`mann_whitney_bins` is checked against.
* :func:`geometric_attempts` is the closed-form retry oracle the measured amplification is compared
  against; :func:`normal_ppf` is the z behind the throughput interval.

scipy.stats takes about half a second to import.  Only verdict code imports this module; processes
that start often (the demo services, the locustfile) must not import it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, SupportsIndex

from scipy import stats as sps

__all__ = [
    "Bucket",
    "GofResult",
    "MannWhitneyResult",
    "RankComparison",
    "binned_quantile",
    "binned_quantile_interval",
    "binomial_test",
    "chi_square_gof",
    "geometric_attempts",
    "mann_whitney_bins",
    "mann_whitney_u",
    "newcombe_interval",
    "normal_cdf",
    "normal_ppf",
    "one_sided_two_proportion_pvalue",
    "quantile",
    "quantile_interval",
    "quantile_ranks",
    "rank_effect_interval",
    "wilson_interval",
]


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GofResult:
    """Outcome of a chi-square goodness-of-fit test.

    ``min_expected`` is reported so callers can flag the asymptotic approximation as doubtful
    (the usual rule of thumb wants every expected count >= 5).
    """

    statistic: float
    df: int
    pvalue: float
    min_expected: float


@dataclass(frozen=True, slots=True)
class MannWhitneyResult:
    """Outcome of a Mann-Whitney U test; ``u`` is the statistic of the *first* sample (as scipy)."""

    u: float
    pvalue: float


@dataclass(frozen=True, slots=True)
class RankComparison:
    """A Mann-Whitney U test of two binned samples, with its effect size (:func:`mann_whitney_bins`).

    ``effect`` is the common-language effect size of the first sample over the second,
    P(X > Y) + ½·P(X = Y) = U / (n_x·n_y) (Vargha and Delaney's A); ``se`` is DeLong's nonparametric
    standard error of it (0 when a sample has fewer than two values).
    """

    u: float
    pvalue: float
    effect: float
    se: float
    n_x: int
    n_y: int


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _as_int(value: SupportsIndex, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _check_n_k(successes: SupportsIndex, n: SupportsIndex) -> tuple[int, int]:
    k = _as_int(successes, "successes")
    m = _as_int(n, "n")
    if m < 0:
        raise ValueError(f"n must be >= 0, got {m}")
    if not 0 <= k <= m:
        raise ValueError(f"successes must be in [0, n={m}], got {k}")
    return k, m


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return c


def _check_prob(p: float, name: str = "p") -> float:
    v = float(p)
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


def _check_values(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{name} must not be empty")
    if any(math.isnan(v) for v in out):
        raise ValueError(f"{name} must not contain NaN")
    return out


# --------------------------------------------------------------------------------------------------
# One proportion
# --------------------------------------------------------------------------------------------------


def normal_ppf(p: float) -> float:
    """Standard normal quantile (``scipy.stats.norm.ppf``); the z of the throughput interval."""
    v = float(p)
    if not 0.0 < v < 1.0:
        raise ValueError(f"p must be strictly between 0 and 1, got {p!r}")
    return float(sps.norm.ppf(v))


def normal_cdf(x: float) -> float:
    """Standard normal distribution function (``scipy.stats.norm.cdf``)."""
    return float(sps.norm.cdf(float(x)))


def binomial_test(k: SupportsIndex, n: SupportsIndex, p: float) -> float:
    """Exact two-sided binomial test p-value for H0: success probability == p (``scipy.stats.binomtest``).

    Used to check that an injected fault rate or a two-way traffic split matches its configuration.
    The two-sided p-value is the probability of all outcomes no more likely than the observed one
    (within a relative 1e-7, as R's ``binom.test``).  ``n == 0`` raises: there is nothing to test.
    """
    kk, nn = _check_n_k(k, n)
    pp = _check_prob(p)
    if nn == 0:
        raise ValueError("binomial_test needs n >= 1")
    return float(sps.binomtest(kk, nn, pp).pvalue)


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval for a binomial proportion.

    The default rate interval: short, and its coverage averaged over p is near nominal even for
    small n or extreme p (unlike the Wald interval).  It is *not* guaranteed to reach nominal
    coverage for every (n, p); see the module docstring for the exact interval.

    Why not ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``: it gives the same
    interval (to ~1e-13 relative) but costs ~300 µs a call against ~1 µs here, because binomtest
    first searches for a two-sided p-value this does not need; adaptive phases re-evaluate rates at
    every look, and the optional-stopping simulation in ``tests/unit/runner`` makes ~40,000 calls
    (11 s instead of 0.5 s).  The endpoint nearer 0 (or 1) is obtained from the product of the
    quadratic's roots to avoid cancellation.  ``n == 0`` carries no information and yields
    ``(0.0, 1.0)``.
    """
    k, m = _check_n_k(successes, n)
    conf = _check_confidence(confidence)
    if m == 0:
        return 0.0, 1.0
    z = _two_sided_z(conf)
    z2 = z * z
    denom = 1.0 + z2 / m

    def near_zero_side(count: int) -> tuple[float, float]:
        ph = count / m
        center = (ph + z2 / (2.0 * m)) / denom
        half = z * math.sqrt(ph * (1.0 - ph) / m + z2 / (4.0 * m * m)) / denom
        upper = center + half
        return ph * ph / (denom * upper), upper  # lower * upper == ph**2 / denom

    if 2 * k <= m:
        lo, hi = near_zero_side(k)
    else:
        f_lo, f_hi = near_zero_side(m - k)
        lo, hi = 1.0 - f_hi, 1.0 - f_lo
    return max(0.0, lo), min(1.0, hi)


@lru_cache(maxsize=64)
def _two_sided_z(confidence: float) -> float:
    """z with P(|Z| <= z) = confidence; cached because a scipy.stats call costs ~30 µs."""
    return normal_ppf(0.5 + 0.5 * confidence)


# --------------------------------------------------------------------------------------------------
# Quantiles
# --------------------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Point estimate of the q-quantile, numpy's default ``'linear'`` method (Hyndman-Fan type 7).

    Interpolates between order statistics at position ``(n - 1) * q``; chosen because it is what
    engineers get from numpy/pandas when they re-check a report by hand (scipy only has it from 1.15
    on, and this runs on every abort tick, so it stays a few lines of plain Python).  ``q`` may be
    0 or 1 (minimum / maximum).  Input need not be sorted.
    """
    qq = float(q)
    if not 0.0 <= qq <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    xs = sorted(_check_values(values, "values"))
    h = (len(xs) - 1) * qq
    i = math.floor(h)
    if i >= len(xs) - 1:
        return xs[-1]
    frac = h - i
    return xs[i] + frac * (xs[i + 1] - xs[i])


@lru_cache(maxsize=512)
def _quantile_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the shortest order-statistic interval with coverage >= confidence.

    With B ~ Binomial(n, q) the number of observations below the true quantile, the interval
    [X_(l), X_(u)] covers it with probability P(l <= B <= u - 1) (at least that for discrete data).
    Among rank pairs reaching the confidence, the one with the smallest u - l is taken, ties broken
    by the most equal excluded tails.  scipy has no such interval, so only the choice is made here;
    the binomial cdf comes from ``scipy.stats.binom``, evaluated on a window around the mode that
    leaves out less than ``alpha / 1000`` of the mass (a shortest interval never starts there), so
    the work is O(sqrt(n)) even for the tens of millions of requests an Envoy histogram can hold.
    """
    if n < 2:
        return None
    dist = sps.binom(n, q)
    # Best achievable: l = 1, u = n, coverage P(1 <= B <= n - 1) = 1 - P(B = 0) - P(B = n).
    if float(dist.sf(0)) - float(dist.pmf(n)) < confidence:
        return None
    alpha = 1.0 - confidence
    mode = min(n, math.floor((n + 1) * q))
    sd = math.sqrt(n * q * (1.0 - q))
    half = math.ceil((float(sps.norm.isf(alpha / 8.0)) + 4.0) * sd) + 10
    while True:
        w0, w1 = max(0, mode - half), min(n, mode + half)
        if float(dist.cdf(w0 - 1)) + float(dist.sf(w1)) <= alpha * 1e-3 or (w0 == 0 and w1 == n):
            break
        half *= 2
    # cdf[i - w0 + 1] = P(B <= i) for i in [w0 - 1, w1]
    cdf: list[float] = dist.cdf(range(w0 - 1, w1 + 1)).tolist()

    def cdf_at(i: int) -> float:
        return cdf[i - w0 + 1]

    j_lo = max(0, w0 - 1)
    m_max = min(n - 1, w1)
    # Preference: smallest width, then the most equal excluded tails (compared with a tolerance so
    # float noise cannot decide between mirror images), then the rank midpoint nearest (n + 1) q,
    # then the lower rank.
    best: tuple[int, float, float, int, int] | None = None
    target_mid = 2.0 * (n + 1) * q
    m = j_lo + 1
    for j in range(j_lo, m_max):
        m = max(m, j + 1)
        cj = cdf_at(j)
        while m <= m_max and cdf_at(m) - cj < confidence:
            m += 1
        if m > m_max:
            break
        cand = (m - j, abs(cj - (1.0 - cdf_at(m))), abs(j + m + 2 - target_mid), j, m)
        if best is None or cand[0] < best[0]:
            best = cand
        elif cand[0] == best[0]:
            if abs(cand[1] - best[1]) > 1e-9:
                if cand[1] < best[1]:
                    best = cand
            elif cand[2:] < best[2:]:
                best = cand
    if best is None:
        return None
    return best[3] + 1, best[4] + 1


def quantile_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    """The 1-based ranks (l, u) behind :func:`quantile_interval` for n values, or None when n is too
    small; for planning how many samples an interval needs (:mod:`harness.assertions.more`)."""
    if not 0.0 < float(q) < 1.0:
        raise ValueError(f"q must be strictly between 0 and 1, got {q!r}")
    return _quantile_ranks(int(n), float(q), _check_confidence(confidence)) if n >= 2 else None


def quantile_interval(values: Sequence[float], q: float, confidence: float) -> tuple[float, float] | None:
    """Distribution-free two-sided confidence interval for the q-quantile (e.g. p99 latency).

    Uses order statistics [X_(l), X_(u)] whose ranks come from Binomial(n, q), so the coverage
    guarantee holds for any continuous distribution (and is conservative for discrete/tied data)
    without assuming a latency model.  Ranks are the shortest pair reaching ``confidence``.
    Returns ``None`` when even [min, max] cannot reach the confidence (roughly when
    ``q**n > 1 - confidence``), which callers should report as *inconclusive*, never as pass.
    """
    qq = float(q)
    if not 0.0 < qq < 1.0:
        raise ValueError(f"q must be strictly between 0 and 1, got {q!r}")
    conf = _check_confidence(confidence)
    xs = sorted(_check_values(values, "values"))
    ranks = _quantile_ranks(len(xs), qq, conf)
    if ranks is None:
        return None
    return xs[ranks[0] - 1], xs[ranks[1] - 1]


Bucket = tuple[float, float, int]
"""A histogram bin: (lower bound, width, count), as Envoy's admin reports ``histogram_buckets=detailed``."""


def _value_at_rank(buckets: Sequence[Bucket], rank: int, upper: bool) -> float:
    seen = 0
    for lower, width, count in buckets:
        seen += count
        if seen >= rank:
            return lower + width if upper else lower
    lower, width, _ = buckets[-1]
    return lower + width


def binned_quantile(buckets: Sequence[Bucket], q: float) -> float:
    """Point estimate of the q-quantile of binned data: the middle of the bin holding rank ceil(q·n)."""
    ordered = sorted(b for b in buckets if b[2] > 0)
    n = sum(b[2] for b in ordered)
    if n == 0:
        raise ValueError("no observations")
    rank = max(1, math.ceil(q * n))
    lo, hi = _value_at_rank(ordered, rank, upper=False), _value_at_rank(ordered, rank, upper=True)
    return (lo + hi) / 2


def binned_quantile_interval(buckets: Sequence[Bucket], q: float, confidence: float) -> tuple[float, float] | None:
    """Distribution-free CI for the q-quantile of binned data (a sidecar's latency histogram).

    The same order-statistic ranks as :func:`quantile_interval`, widened to the bins that hold them:
    the lower end is the lower bound of the bin holding rank l, the upper end the upper bound of the
    bin holding rank u, so the coverage guarantee survives the binning. None when n is too small.
    """
    ordered = sorted(b for b in buckets if b[2] > 0)
    n = sum(b[2] for b in ordered)
    ranks = _quantile_ranks(n, float(q), float(confidence)) if n >= 2 else None
    if ranks is None:
        return None
    return _value_at_rank(ordered, ranks[0], upper=False), _value_at_rank(ordered, ranks[1], upper=True)


# --------------------------------------------------------------------------------------------------
# Chi-square
# --------------------------------------------------------------------------------------------------


def chi_square_gof(counts: Sequence[int], probs: Sequence[float]) -> GofResult:
    """Pearson chi-square goodness-of-fit of observed category counts to expected probabilities.

    Used for multi-way checks such as weighted traffic splits; the statistic and p-value are
    ``scipy.stats.chisquare``'s.  What scipy cannot express is handled here: a category with
    probability 0 is impossible under H0, so if it was observed the p-value is 0.0 (statistic
    ``inf``) -- a 0% version that answered is a conclusive failure -- and otherwise it is dropped
    (it carries no information and would divide by zero); a single remaining category gives p = 1.
    ``probs`` must sum to 1 within 1e-6 and are renormalised.  ``min_expected`` lets the caller flag
    the asymptotic approximation as unreliable (rule of thumb: < 5).
    """
    if len(counts) != len(probs):
        raise ValueError(f"counts and probs differ in length ({len(counts)} != {len(probs)})")
    if len(counts) < 1:
        raise ValueError("need at least one category")
    obs = [_as_int(c, "counts[i]") for c in counts]
    if any(c < 0 for c in obs):
        raise ValueError("counts must be non-negative")
    ps = [float(p) for p in probs]
    if any(not (0.0 <= p <= 1.0) for p in ps):
        raise ValueError("probs must be probabilities in [0, 1]")
    total_p = math.fsum(ps)
    if abs(total_p - 1.0) > 1e-6:
        raise ValueError(f"probs must sum to 1, got {total_p!r}")
    n = sum(obs)
    if n == 0:
        raise ValueError("counts are all zero; nothing to test")
    kept = [(c, n * p / total_p) for c, p in zip(obs, ps, strict=True) if p > 0.0]
    impossible = any(c > 0 for c, p in zip(obs, ps, strict=True) if p == 0.0)
    df = len(kept) - 1
    min_expected = min(e for _, e in kept)
    if impossible:
        return GofResult(statistic=math.inf, df=df, pvalue=0.0, min_expected=min_expected)
    if df == 0:  # scipy answers NaN for one category; every count is then the expected one
        return GofResult(statistic=0.0, df=0, pvalue=1.0, min_expected=min_expected)
    res = sps.chisquare([c for c, _ in kept], [e for _, e in kept])
    return GofResult(statistic=float(res.statistic), df=df, pvalue=float(res.pvalue), min_expected=min_expected)


# --------------------------------------------------------------------------------------------------
# Two-sample comparisons (for the coming ``canary`` expectation)
# --------------------------------------------------------------------------------------------------


def one_sided_two_proportion_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided pooled z-test p-value for H0: p2 <= p1 against H1: p2 > p1.

    The ``canary`` expectation's test of error rates (canary vs baseline).
    scipy has no two-proportion z test, so the pooled z is formed here and its tail is
    ``scipy.stats.norm.sf``; it equals R's ``prop.test(..., correct = FALSE)`` one-sided.  The pooled
    variance is the one implied by H0, which keeps the test's size honest for the sample sizes
    traffic runs produce.

    Direction: ``k`` counts the *bad* outcome (errors, timeouts).  Group 1 is the baseline,
    group 2 the candidate (canary, post-fault period).  H0 is "group 2 is not worse than group 1";
    a *small* p-value is evidence that group 2's error rate is higher, i.e. that it is worse.
    A large p-value is absence of evidence, not proof of equivalence.  Both groups all-0 or all-1
    carry no evidence of a difference and give 1.0.
    """
    a, m1 = _check_n_k(k1, n1)
    b, m2 = _check_n_k(k2, n2)
    if m1 == 0 or m2 == 0:
        raise ValueError("both groups need n >= 1")
    pooled = (a + b) / (m1 + m2)
    var = pooled * (1.0 - pooled) * (1.0 / m1 + 1.0 / m2)
    if var <= 0.0:
        return 1.0
    return float(sps.norm.sf((b / m2 - a / m1) / math.sqrt(var)))


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Literal["two-sided", "less", "greater"] = "two-sided",
) -> MannWhitneyResult:
    """Mann-Whitney U test, ``scipy.stats.mannwhitneyu`` with the normal approximation.

    For raw samples; the ``canary`` expectation reads Envoy's bins with :func:`mann_whitney_bins`.
    Rank based, so a handful of pathological latency outliers cannot dominate the verdict.  The
    asymptotic method with tie and continuity corrections is forced (``method='asymptotic'``):
    latencies in whole milliseconds tie constantly, where the exact method does not apply, and one
    method for every sample size keeps verdicts comparable.  ``u`` is U of ``x`` (pairs with
    x > y, ties counting 1/2); ``alternative='greater'`` means "x tends to be larger than y".
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    xs = _check_values(x, "x")
    ys = _check_values(y, "y")
    res = sps.mannwhitneyu(xs, ys, use_continuity=True, alternative=alternative, method="asymptotic")
    return MannWhitneyResult(u=float(res.statistic), pvalue=float(res.pvalue))


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Two-sided interval for the difference of two proportions, p2 − p1: Newcombe's hybrid score
    interval (Newcombe 1998, method 10), built from each proportion's Wilson interval.

    Group 1 is the baseline and group 2 the candidate, as in :func:`one_sided_two_proportion_pvalue`,
    so a positive difference means the candidate errs more.  With (l_i, u_i) the Wilson interval of
    p_i at the same confidence, the bounds are
    d − √((p2 − l2)² + (u1 − p1)²) and d + √((u2 − p2)² + (p1 − l1)²).

    Why this interval: error rates in a mesh are small (often 0 errors out of thousands), where the
    Wald interval of a difference collapses to a point at 0/n vs 0/n and covers badly; Newcombe's
    keeps near-nominal coverage there, never leaves [−1, 1], and inherits the Wilson interval's
    behaviour at 0 and n.  It is written out because scipy has no interval for a difference of
    proportions (statsmodels' ``confint_proportions_2indep(method="newcomb")`` is the same interval,
    but not a dependency of this project).  A group with n == 0 contributes the whole [0, 1].
    """
    a, m1 = _check_n_k(k1, n1)
    b, m2 = _check_n_k(k2, n2)
    conf = _check_confidence(confidence)
    l1, u1 = wilson_interval(a, m1, conf)
    l2, u2 = wilson_interval(b, m2, conf)
    p1 = a / m1 if m1 else 0.5
    p2 = b / m2 if m2 else 0.5
    d = p2 - p1
    lower = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    upper = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def _merged_counts(x: Sequence[Bucket], y: Sequence[Bucket]) -> list[tuple[int, int]]:
    """Per distinct bin, in increasing order: (count of x, count of y).

    A bin is identified by its (lower bound, width); Envoy's detailed histogram bins come from one
    fixed log-linear scheme on every sidecar, so the bins of two versions are the same bins or
    disjoint ones, and ordering by lower bound orders the values they hold.
    """
    merged: dict[tuple[float, float], list[int]] = {}
    for side, bins in ((0, x), (1, y)):
        for lower, width, count in bins:
            c = _as_int(count, "bin count")
            if c < 0:
                raise ValueError(f"bin counts must be non-negative, got {count!r}")
            if math.isnan(float(lower)) or math.isnan(float(width)):
                raise ValueError("bins must not contain NaN")
            merged.setdefault((float(lower), float(width)), [0, 0])[side] += c
    return [(a, b) for _, (a, b) in sorted(merged.items()) if a + b > 0]


def mann_whitney_bins(
    x: Sequence[Bucket],
    y: Sequence[Bucket],
    alternative: Literal["two-sided", "less", "greater"] = "greater",
) -> RankComparison:
    """Mann-Whitney U test of two samples given as histogram bins, every value in a bin tied.

    The same statistic, tie correction, continuity correction and normal tail as
    :func:`mann_whitney_u` (scipy's asymptotic method), computed from the bin counts in O(bins)
    instead of from the values: an Envoy histogram holds millions of requests in a few hundred bins.
    ``alternative='greater'`` means "x tends to be larger than y" (for latency: x is slower).

    Why ranking binned latencies is valid: binning maps each latency to its bin by a non-decreasing
    function, so if the two versions' latencies have one distribution (H0), so have their bins, and
    the rank test of the binned values has its stated size; it compares bins only by their order, so
    no value inside a bin is ever assumed.  Every value in one bin is one tied value: it gets the
    midrank of the bin, and U counts a tied pair as ½.  The **tie correction** is the exact null
    variance of U given those ties: n_x·n_y/12 · ((N + 1) − Σ(t³ − t)/(N(N − 1))) over the bins' total
    counts t.  Without it the variance would be the untied one, too large, and the test needlessly
    conservative (ties make midranks vary less); with it the p-value is calibrated however coarse the
    bins.  What binning costs is power, not validity: a shift that keeps a value inside its bin (less
    than Envoy's ~10% bin width) is invisible.

    ``effect`` is U / (n_x·n_y) = P(X > Y) + ½·P(X = Y); ``se`` is DeLong's estimate of its standard
    error, from the placement values (each x's share of y below it, ties ½, and each y's share of x
    above it): Var = S_x/n_x + S_y/n_y with S the placements' sample variances (DeLong, DeLong and
    Clarke-Pearson 1988).  Unlike the null variance, it holds when the samples differ.  Both samples
    all in one bin (nothing to rank) give p = 1.  Empty samples raise.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    cells = _merged_counts(x, y)
    nx = sum(a for a, _ in cells)
    ny = sum(b for _, b in cells)
    if nx == 0 or ny == 0:
        raise ValueError("both samples need at least one value")
    n = nx + ny
    # U of x: for each bin, x's values beat every y below and tie with the y in the bin.
    u = 0.0
    ties = 0.0
    y_below = 0
    for a, b in cells:
        u += a * (y_below + 0.5 * b)
        y_below += b
        t = a + b
        ties += float(t) ** 3 - t
    effect = u / (nx * ny)
    mu = nx * ny / 2.0
    var0 = nx * ny / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if alternative == "greater":
        stat, factor = u, 1.0
    elif alternative == "less":
        stat, factor = nx * ny - u, 1.0
    else:
        stat, factor = max(u, nx * ny - u), 2.0
    # All values in one bin: nothing to rank, no evidence either way.
    pvalue = 1.0 if var0 <= 0.0 else min(1.0, factor * float(sps.norm.sf((stat - mu - 0.5) / math.sqrt(var0))))
    return RankComparison(u=u, pvalue=pvalue, effect=effect, se=_delong_se(cells, nx, ny, effect),
                          n_x=nx, n_y=ny)


def _delong_se(cells: Sequence[tuple[int, int]], nx: int, ny: int, effect: float) -> float:
    """DeLong's standard error of P(X > Y) + ½·P(X = Y), from the placements of each bin's values."""
    if nx < 2 or ny < 2:
        return 0.0
    x_above = nx
    y_below = 0
    ss_x = ss_y = 0.0
    for a, b in cells:
        x_above -= a
        place_x = (y_below + 0.5 * b) / ny  # an x here: share of y below it, ties 1/2
        place_y = (x_above + 0.5 * a) / nx  # a y here: share of x above it, ties 1/2
        ss_x += a * (place_x - effect) ** 2
        ss_y += b * (place_y - effect) ** 2
        y_below += b
    return math.sqrt(ss_x / (nx - 1) / nx + ss_y / (ny - 1) / ny)


def rank_effect_interval(result: RankComparison, confidence: float) -> tuple[float, float]:
    """Two-sided confidence interval for the effect P(X > Y) + ½·P(X = Y) of a :class:`RankComparison`.

    DeLong's standard error on the logit scale (the interval stays inside (0, 1) and is the one Qin
    and Hotilovac 2008 found to cover best among the simple ones for this effect, the AUC of ROC
    analysis).  Where DeLong's estimate degenerates -- an effect of exactly 0 or 1 (no overlap at all)
    or a zero standard error -- it is replaced by the distribution-free bound
    Var ≤ θ(1 − θ)/min(n_x, n_y) (Birnbaum and McCarty 1958), solved for θ as a Wilson interval, so
    that three fast requests never prove anything with certainty.
    """
    conf = _check_confidence(confidence)
    z = _two_sided_z(conf)
    theta = result.effect
    if 0.0 < theta < 1.0 and result.se > 0.0:
        centre = math.log(theta / (1.0 - theta))
        half = z * result.se / (theta * (1.0 - theta))
        return _expit(centre - half), _expit(centre + half)
    m = min(result.n_x, result.n_y)
    p = min(1.0, max(0.0, theta))
    z2 = z * z
    denom = 1.0 + z2 / m
    centre_w = (p + z2 / (2.0 * m)) / denom
    half_w = z * math.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
    return max(0.0, centre_w - half_w), min(1.0, centre_w + half_w)


def _expit(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


# --------------------------------------------------------------------------------------------------
# Retry oracle
# --------------------------------------------------------------------------------------------------


def geometric_attempts(p: float, retries: int) -> float:
    """Expected attempts per request: ``sum_{k=0..retries} p**k = (1 - p**(retries+1)) / (1 - p)``.

    Upstream load amplification caused by retries under an independent per-attempt failure
    probability ``p``; equals ``retries + 1`` at ``p = 1`` (every attempt fails and all are used).
    Computed with ``expm1`` so that p close to 1 does not lose the digits ``1 - p**(retries+1)``
    would.
    """
    pp = _check_prob(p, "p (per-attempt failure probability)")
    r = _as_int(retries, "retries")
    if r < 0:
        raise ValueError(f"retries must be >= 0, got {r}")
    if pp == 1.0:
        return float(r + 1)
    if pp == 0.0:
        return 1.0
    return -math.expm1((r + 1) * math.log(pp)) / (1.0 - pp)
