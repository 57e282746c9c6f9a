"""Tests for harness.assertions.stats against references that do not share its code.

The references are: published values (R's ``binom.test``/``wilcox.test`` help examples, Newcombe
1998, Mendel's peas, normal tables), exact brute force with ``fractions.Fraction``/``math.comb`` for
small n, closed forms derived by hand, and seeded simulation of coverage, size and power.  scipy is
the implementation for most of the module, so it is never the reference -- except for
:func:`stats.wilson_interval` and :func:`stats.quantile`, which are written out here and which scipy
and numpy therefore check independently.

Simulation tolerances come from the Monte-Carlo standard error (SE) of a proportion estimated from
the number of draws, so a correct implementation passes with a wide margin while a wrong one (wrong
z, one tail only, halved p-value, ...) falls outside them.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.assertions import stats

HYP = settings(max_examples=80, derandomize=True, database=None, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])

# Standard normal upper-tail probabilities Q(z) = 1 - Phi(z) (Abramowitz & Stegun table 26.1, to
# full double precision) and chi-square(1) quantiles, which are z**2 of the two-sided normal ones.
NORMAL_SF = {1: 0.15865525393145705, 2: 0.022750131948179207, 3: 0.0013498980316300945}
CHI2_1_QUANTILE = {0.90: 2.705543454095404, 0.95: 3.841458820694124, 0.99: 6.634896601021214}


def _mc_se(p: float, reps: int) -> float:
    return math.sqrt(p * (1.0 - p) / reps)


def _exact_pmf(n: int, p: Fraction) -> list[Fraction]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def _binomial_sampler(n: int, p: float) -> Callable[[random.Random], int]:
    """Inverse-CDF binomial sampler built from math.comb pmfs (independent of scipy)."""
    cum: list[float] = []
    acc = 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        cum.append(acc)

    def draw(rng: random.Random) -> int:
        return min(n, bisect.bisect_left(cum, rng.random() * cum[-1]))

    return draw


def _categorical_sampler(probs: list[float]) -> Callable[[random.Random, int], list[int]]:
    cum = [math.fsum(probs[: i + 1]) for i in range(len(probs))]

    def draw(rng: random.Random, n: int) -> list[int]:
        counts = [0] * len(probs)
        for _ in range(n):
            counts[min(len(probs) - 1, bisect.bisect_left(cum, rng.random() * cum[-1]))] += 1
        return counts

    return draw


# --------------------------------------------------------------------------------------------------
# Normal quantile
# --------------------------------------------------------------------------------------------------


def test_normal_ppf_matches_published_quantiles() -> None:
    """normal_ppf gives the tabulated two-sided z values (1.645, 1.960, 2.576, 3.090 to 15 digits)."""
    published = {0.5: 0.0, 0.95: 1.6448536269514722, 0.975: 1.959963984540054,
                 0.995: 2.5758293035489004, 0.999: 3.090232306167813}
    for p, z in published.items():
        assert stats.normal_ppf(p) == pytest.approx(z, rel=1e-14, abs=1e-15)
        assert stats.normal_ppf(1 - p) == pytest.approx(-z, rel=1e-13, abs=1e-15)


def test_normal_ppf_inverts_erfc() -> None:
    """Phi(normal_ppf(p)) == p from 1e-12 to 1 - 1e-9, Phi computed with math.erfc."""
    for p in [1e-12, 1e-6, 0.001, 0.025, 0.3, 0.5, 0.7, 0.9, 0.999, 1 - 1e-9]:
        z = stats.normal_ppf(p)
        assert 0.5 * math.erfc(-z / math.sqrt(2)) == pytest.approx(p, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Binomial test
# --------------------------------------------------------------------------------------------------


def _exact_two_sided_binomial_p(k: int, n: int, p: Fraction) -> Fraction:
    """Sum of the pmf of every outcome no more likely than k, R's rule (relative 1e-7), in exact rationals."""
    pmf = _exact_pmf(n, p)
    limit = pmf[k] * (1 + Fraction(1, 10**7))
    return min(Fraction(1), sum((v for v in pmf if v <= limit), Fraction(0)))


def test_binomial_test_matches_r_binom_test_example() -> None:
    """R's ?binom.test example (Conover 1971): 682 of 925 giant plants against p = 3/4 gives p = 0.3825."""
    assert stats.binomial_test(682, 925, 0.75) == pytest.approx(0.3825, abs=5e-5)
    exact = float(_exact_two_sided_binomial_p(682, 925, Fraction(3, 4)))
    assert stats.binomial_test(682, 925, 0.75) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("p", [Fraction(1, 2), Fraction(1, 3), Fraction(3, 10), Fraction(1, 20), Fraction(9, 10)])
def test_binomial_test_matches_exact_enumeration(p: Fraction) -> None:
    """Every k for n up to 34: the p-value equals the exact rational sum over no-more-likely outcomes."""
    for n in [1, 2, 3, 5, 8, 13, 21, 34]:
        for k in range(n + 1):
            want = float(_exact_two_sided_binomial_p(k, n, p))
            assert stats.binomial_test(k, n, float(p)) == pytest.approx(want, rel=1e-9), (k, n, p)


def test_binomial_test_degenerate_null() -> None:
    """p = 0 or 1 makes a single outcome possible: p-value 1 for it, 0 for anything else."""
    assert stats.binomial_test(0, 10, 0.0) == 1.0
    assert stats.binomial_test(3, 10, 0.0) == 0.0
    assert stats.binomial_test(10, 10, 1.0) == 1.0
    assert stats.binomial_test(9, 10, 1.0) == 0.0


def test_binomial_test_size_and_power_by_simulation() -> None:
    """Under H0 binomial_test rejects at <= alpha + 3 SE; under p=0.45 vs 0.3 (n=200) nearly always."""
    rng = random.Random(7)
    n, p0, alpha, reps = 200, 0.3, 0.05, 2000
    null_draw, alt_draw = _binomial_sampler(n, p0), _binomial_sampler(n, 0.45)
    rejects = {k: stats.binomial_test(k, n, p0) < alpha for k in range(n + 1)}
    size = sum(rejects[null_draw(rng)] for _ in range(reps)) / reps
    power = sum(rejects[alt_draw(rng)] for _ in range(reps)) / reps
    assert size <= alpha + 3 * _mc_se(alpha, reps), size
    assert size >= 0.01, size  # an always-accepting test would pass the line above
    assert power >= 0.95, power


# --------------------------------------------------------------------------------------------------
# Wilson interval
# --------------------------------------------------------------------------------------------------


def test_wilson_matches_newcombe_1998_examples() -> None:
    """The 95% Wilson intervals of Newcombe (1998): 81/263, 15/148, 0/20, 1/29, to the 4 published digits."""
    published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605),
                 (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}
    for (k, n), (lo, hi) in published.items():
        got = stats.wilson_interval(k, n, 0.95)
        assert got[0] == pytest.approx(lo, abs=5e-5), (k, n, got)
        assert got[1] == pytest.approx(hi, abs=5e-5), (k, n, got)


def test_wilson_endpoints_invert_the_score_test() -> None:
    """At each inner endpoint p0 the score statistic (k - n p0)**2 / (n p0 (1 - p0)) is the chi-square(1) quantile."""
    for n in [1, 7, 50, 1000, 10**6]:
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf, crit in CHI2_1_QUANTILE.items():
                lo, hi = stats.wilson_interval(k, n, conf)
                assert (lo == 0.0) == (k == 0)
                assert (hi == 1.0) == (k == n)
                for end in (e for e in (lo, hi) if 0.0 < e < 1.0):
                    p0 = Fraction(end)
                    score = (k - n * p0) ** 2 / (n * p0 * (1 - p0))
                    assert float(score) == pytest.approx(crit, rel=1e-9), (k, n, conf, end)


def test_wilson_agrees_with_scipy_proportion_ci() -> None:
    """scipy's own Wilson (binomtest(...).proportion_ci) agrees to 1e-12 relative, up to n = 1e9."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(5)
    for n in [1, 2, 9, 50, 263, 10**4, 10**7, 10**9]:
        for k in sorted({0, 1, n // 2, n - 1, n, rng.randint(0, n)}):
            for conf in [0.8, 0.95, 0.99, 1 - 1e-6]:
                ci = sp.binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
                lo, hi = stats.wilson_interval(k, n, conf)
                assert lo == pytest.approx(float(ci.low), rel=1e-12, abs=1e-300), (k, n, conf)
                assert hi == pytest.approx(float(ci.high), rel=1e-12), (k, n, conf)


def test_wilson_exact_coverage() -> None:
    """Enumerated coverage: near nominal on average over p, with the documented dip (93.7% at n=50, p=0.03)."""

    def coverage(n: int, p: float, conf: float) -> float:
        intervals = [stats.wilson_interval(k, n, conf) for k in range(n + 1)]
        return math.fsum(math.comb(n, k) * p**k * (1 - p) ** (n - k)
                         for k in range(n + 1) if intervals[k][0] <= p <= intervals[k][1])

    assert coverage(50, 0.03, 0.95) == pytest.approx(0.9372, abs=1e-4)
    assert coverage(50, 0.03, 0.99) == pytest.approx(0.9832, abs=1e-4)
    for n in [10, 37, 100]:
        for conf in [0.9, 0.95, 0.99]:
            mean = math.fsum(coverage(n, i / 50 + 0.0013, conf) for i in range(1, 50)) / 49
            assert abs(mean - conf) < 0.01, (n, conf, mean)


def test_wilson_empty_sample_is_uninformative() -> None:
    """n == 0 gives the whole unit interval instead of an error."""
    assert stats.wilson_interval(0, 0, 0.95) == (0.0, 1.0)


@HYP
@given(n=st.integers(1, 10**6), data=st.data(), conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_contains_estimate_and_nests(n: int, data: st.DataObject, conf: float) -> None:
    """The Wilson interval contains k/n and grows when the confidence grows."""
    k = data.draw(st.integers(0, n))
    lo, hi = stats.wilson_interval(k, n, conf)
    wide_lo, wide_hi = stats.wilson_interval(k, n, 1 - (1 - conf) / 10)
    assert 0.0 <= wide_lo <= lo <= k / n <= hi <= wide_hi <= 1.0
    assert lo < hi


# --------------------------------------------------------------------------------------------------
# Quantiles
# --------------------------------------------------------------------------------------------------


def test_quantile_matches_hyndman_fan_type_7() -> None:
    """quantile() is type 7: the 40th percentile of 15, 20, 35, 40, 50 is 29; q=0/1 are min/max."""
    values = [50.0, 15.0, 40.0, 20.0, 35.0]
    assert stats.quantile(values, 0.4) == pytest.approx(29.0)
    assert stats.quantile(values, 0.5) == 35.0
    assert stats.quantile(values, 0.0) == 15.0
    assert stats.quantile(values, 1.0) == 50.0
    assert stats.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_quantile_matches_numpy_linear() -> None:
    """quantile() equals numpy's default 'linear' quantile on unsorted input."""
    np = pytest.importorskip("numpy")
    rng = random.Random(4)
    for n in [1, 2, 3, 10, 101]:
        values = [rng.gauss(0, 1) for _ in range(n)]
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0]:
            assert stats.quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=1e-15)


def test_median_interval_matches_textbook_ranks() -> None:
    """95% median intervals are [X(2), X(9)] for n = 10 and [X(6), X(15)] for n = 20 (sign-test tables)."""
    assert stats.quantile_interval([float(i) for i in range(1, 11)], 0.5, 0.95) == (2.0, 9.0)
    assert stats.quantile_interval([float(i) for i in range(1, 21)], 0.5, 0.95) == (6.0, 15.0)


def test_quantile_interval_ranks_are_shortest_by_exact_enumeration() -> None:
    """For n <= 40 the ranks reach the confidence in exact arithmetic, no narrower pair does, tails most equal."""
    for n in range(2, 41):
        values = [float(i) for i in range(1, n + 1)]  # X_(r) == r
        for q in [0.05, 0.25, 0.5, 0.9, 0.99]:
            pmf = _exact_pmf(n, Fraction(q))
            cdf = [Fraction(0)]  # cdf[i] = P(B <= i - 1)
            for v in pmf:
                cdf.append(cdf[-1] + v)

            def coverage(lo_rank: int, hi_rank: int, cdf: list[Fraction] = cdf) -> Fraction:
                return cdf[hi_rank] - cdf[lo_rank]  # P(lo_rank <= B <= hi_rank - 1)

            for conf in [0.8, 0.95, 0.99]:
                target = Fraction(conf)
                reaching = [(hi - lo, abs(cdf[lo] - (1 - cdf[hi])))
                            for lo in range(1, n) for hi in range(lo + 1, n + 1) if coverage(lo, hi) >= target]
                iv = stats.quantile_interval(values, q, conf)
                if not reaching:
                    assert iv is None, (n, q, conf)
                    continue
                assert iv is not None, (n, q, conf)
                lo, hi = int(iv[0]), int(iv[1])
                best_width = min(r[0] for r in reaching)
                assert coverage(lo, hi) >= target, (n, q, conf, lo, hi)
                assert hi - lo == best_width, (n, q, conf, lo, hi)
                best_balance = min(r[1] for r in reaching if r[0] == best_width)
                assert float(abs(cdf[lo] - (1 - cdf[hi])) - best_balance) <= 1e-9, (n, q, conf, lo, hi)


def test_quantile_interval_none_exactly_when_unreachable() -> None:
    """None is returned exactly below the smallest n with q**n + (1-q)**n <= 1 - confidence."""
    for q, conf in [(0.99, 0.95), (0.99, 0.99), (0.9, 0.999), (0.5, 0.99)]:
        n_min = next(n for n in range(2, 10**5) if q**n + (1 - q) ** n <= 1 - conf)
        values = [float(i) for i in range(n_min)]
        assert stats.quantile_interval(values[:-1], q, conf) is None
        iv = stats.quantile_interval(values, q, conf)
        assert iv is not None, (q, conf, n_min)
        assert iv[1] == values[-1]  # the maximum is needed: P(B = n) = q**n nearly exhausts alpha


def test_quantile_interval_coverage_by_simulation() -> None:
    """Order-statistic intervals cover the true 0.5/0.9 quantile >= nominal - 3 SE (exponential, uniform, n=200)."""
    # The construction is exact for continuous data, so the only slack is Monte-Carlo error.  With
    # n = 200 the 0.99 quantile cannot be bounded at 95% (0.99**200 = 0.13 > alpha): None is required.
    rng = random.Random(42)
    n, reps = 200, 1000
    dists: list[tuple[str, Callable[[], float], Callable[[float], float]]] = [
        ("exponential", lambda: rng.expovariate(1.0), lambda q: -math.log1p(-q)),
        ("uniform", rng.random, lambda q: q),
    ]
    for name, gen, true_quantile in dists:
        hits: dict[tuple[float, float], int] = {}
        for _ in range(reps):
            sample = [gen() for _ in range(n)]
            for q in (0.5, 0.9):
                for conf in (0.95, 0.99):
                    iv = stats.quantile_interval(sample, q, conf)
                    assert iv is not None
                    hits[(q, conf)] = hits.get((q, conf), 0) + (iv[0] <= true_quantile(q) <= iv[1])
            assert stats.quantile_interval(sample, 0.99, 0.95) is None
        for (q, conf), h in hits.items():
            assert h / reps >= conf - 3 * _mc_se(conf, reps), (name, q, conf, h / reps)


def test_quantile_interval_p99_coverage_when_possible() -> None:
    """With enough samples (n = 700) the p99 interval exists and covers >= nominal - 3 SE."""
    rng = random.Random(43)
    n, reps, q = 700, 1000, 0.99
    truth = -math.log1p(-q)
    hits = {0.95: 0, 0.99: 0}
    for _ in range(reps):
        sample = [rng.expovariate(1.0) for _ in range(n)]
        for conf in hits:
            iv = stats.quantile_interval(sample, q, conf)
            assert iv is not None
            hits[conf] += iv[0] <= truth <= iv[1]
    for conf, h in hits.items():
        assert h / reps >= conf - 3 * _mc_se(conf, reps), (conf, h / reps)


def test_binned_quantile_is_the_middle_of_the_bin_holding_rank_ceil_qn() -> None:
    """Point estimate by hand: 5/90/5 requests in 0-10/10-20/20-30 ms give p5=5, p50=p95=15, p95.1=25."""
    bins = [(20.0, 10.0, 5), (0.0, 10.0, 5), (30.0, 10.0, 0), (10.0, 10.0, 90)]  # unsorted, an empty bin
    assert stats.binned_quantile(bins, 0.05) == 5.0
    assert stats.binned_quantile(bins, 0.5) == 15.0
    assert stats.binned_quantile(bins, 0.95) == 15.0  # rank 95 is the last of the middle bin
    assert stats.binned_quantile(bins, 0.951) == 25.0  # rank ceil(95.1) = 96 is the first of the top bin
    assert stats.binned_quantile(bins, 0.0) == 5.0


def test_binned_median_interval_widens_textbook_ranks_to_their_bins() -> None:
    """One request in each 1 ms bin [r-1, r), n = 20: the 95% median ranks (6, 15) become [5 ms, 15 ms]."""
    bins = [(float(r - 1), 1.0, 1) for r in range(1, 21)]
    assert stats.binned_quantile_interval(bins, 0.5, 0.95) == (5.0, 15.0)


def test_binned_quantile_interval_coverage_with_envoy_like_bins() -> None:
    """With Envoy's two-significant-digit bins the p90 interval covers the truth >= nominal - 3 SE, ends on bounds."""
    rng = random.Random(12)
    # histogram_buckets=detailed: 1.0, 1.1, ..., 9.9, 10, 11, ..., 99, 100, 110, ... (widths grow tenfold)
    bounds = [0.0] + [m * 10.0**e / 10 for e in range(3) for m in range(10, 100)] + [1000.0]
    true_p90 = -8.0 * math.log(0.1)  # exponential with mean 8 ms: 18.4 ms, in the 18-19 bin
    # n = 2000 makes the interval only a few bins wide, so ending it one bin short drops coverage to ~85%.
    n, reps, conf = 2000, 300, 0.95
    hits = 0
    for _ in range(reps):
        counts = [0] * (len(bounds) - 1)
        for _ in range(n):
            counts[min(len(counts) - 1, bisect.bisect_right(bounds, rng.expovariate(1 / 8.0)) - 1)] += 1
        bins = [(lo, hi - lo, c) for lo, hi, c in zip(bounds, bounds[1:], counts, strict=False)]
        iv = stats.binned_quantile_interval(bins, 0.9, conf)
        assert iv is not None
        assert iv[0] in bounds
        assert iv[1] in bounds
        hits += iv[0] <= true_p90 <= iv[1]
    assert hits / reps >= conf - 3 * _mc_se(conf, reps), hits / reps


# --------------------------------------------------------------------------------------------------
# Chi-square goodness of fit
# --------------------------------------------------------------------------------------------------


def _chi2_sf_closed_form(x: float, df: int) -> float:
    """Upper tail of chi-square for df 1-4, from the closed forms of the incomplete gamma."""
    return {
        1: lambda: math.erfc(math.sqrt(x / 2)),
        2: lambda: math.exp(-x / 2),
        3: lambda: math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2),
        4: lambda: math.exp(-x / 2) * (1 + x / 2),
    }[df]()


def test_chi_square_gof_matches_mendel_peas() -> None:
    """Mendel's 315/108/101/32 peas against 9:3:3:1: statistic 196/417 = 0.470, df 3, p = 0.925."""
    res = stats.chi_square_gof([315, 108, 101, 32], [9 / 16, 3 / 16, 3 / 16, 1 / 16])
    assert res.statistic == pytest.approx(196 / 417, rel=1e-12)
    assert res.df == 3
    assert res.pvalue == pytest.approx(0.9254, abs=5e-5)
    assert res.min_expected == pytest.approx(556 / 16)


def test_chi_square_gof_matches_exact_statistic_and_closed_form_tail() -> None:
    """Random counts over 2-5 categories: the statistic equals exact rational arithmetic, p the closed-form tail."""
    rng = random.Random(3)
    for _ in range(200):
        k = rng.randint(2, 5)
        weights = [rng.randint(1, 9) for _ in range(k)]
        probs = [Fraction(w, sum(weights)) for w in weights]
        counts = [rng.randint(0, rng.choice([10, 60, 400])) for _ in range(k)]
        n = sum(counts)
        if n == 0:
            continue
        exact = sum(((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs, strict=True)), Fraction(0))
        res = stats.chi_square_gof(counts, [float(p) for p in probs])
        assert res.statistic == pytest.approx(float(exact), rel=1e-10, abs=1e-12)
        assert res.df == k - 1
        assert res.pvalue == pytest.approx(_chi2_sf_closed_form(float(exact), k - 1), rel=1e-9, abs=1e-300)
        assert res.min_expected == pytest.approx(float(n * min(probs)))


def test_chi_square_gof_zero_probability_categories() -> None:
    """A zero-probability category is dropped when empty and forces p=0 when observed; one category gives p=1."""
    dropped = stats.chi_square_gof([30, 0, 70], [0.25, 0.0, 0.75])
    assert dropped.df == 1
    assert dropped.statistic == pytest.approx(4 / 3)  # (30-25)**2/25 + (70-75)**2/75
    assert dropped.pvalue == pytest.approx(_chi2_sf_closed_form(4 / 3, 1), rel=1e-12)
    hit = stats.chi_square_gof([30, 1, 69], [0.25, 0.0, 0.75])
    assert (hit.pvalue, hit.statistic, hit.min_expected) == (0.0, math.inf, 25.0)
    single = stats.chi_square_gof([0, 40], [0.0, 1.0])
    assert (single.df, single.pvalue, single.statistic) == (0, 1.0, 0.0)


def test_chi_square_gof_size_and_power_by_simulation() -> None:
    """Under H0 chi_square_gof rejects at <= alpha + 3 SE; against a flat split (n=400) nearly always."""
    rng = random.Random(8)
    n, alpha, reps = 400, 0.05, 1000
    h0 = [0.1, 0.2, 0.3, 0.25, 0.15]
    null_draw, alt_draw = _categorical_sampler(h0), _categorical_sampler([0.2] * 5)
    size = sum(stats.chi_square_gof(null_draw(rng, n), h0).pvalue < alpha for _ in range(reps)) / reps
    power = sum(stats.chi_square_gof(alt_draw(rng, n), h0).pvalue < alpha for _ in range(300)) / 300
    assert size <= alpha + 3 * _mc_se(alpha, reps), size
    assert size >= 0.02, size
    assert power >= 0.95, power


# --------------------------------------------------------------------------------------------------
# Two-sample comparisons (for the canary expectation)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "z"),
    [(6, 18, 12, 18, 2), (3, 24, 9, 24, 2), (4, 12, 20, 24, 3), (8, 25, 22, 50, 1)],
)
def test_one_sided_two_proportion_matches_tabulated_normal_tail(k1: int, n1: int, k2: int, n2: int, z: int) -> None:
    """Counts whose pooled z is exactly 1, 2 or 3 (checked in rationals) give the tabulated Q(z); reversed 1 - Q(z)."""
    pooled = Fraction(k1 + k2, n1 + n2)
    diff = Fraction(k2, n2) - Fraction(k1, n1)
    assert diff**2 / (pooled * (1 - pooled) * (Fraction(1, n1) + Fraction(1, n2))) == z * z  # the case is exact
    assert stats.one_sided_two_proportion_pvalue(k1, n1, k2, n2) == pytest.approx(NORMAL_SF[z], rel=1e-12)
    assert stats.one_sided_two_proportion_pvalue(k2, n2, k1, n1) == pytest.approx(1 - NORMAL_SF[z], rel=1e-12)


def test_one_sided_two_proportion_direction() -> None:
    """A small one-sided p-value means group 2 has the higher (worse) error rate, not group 1."""
    assert stats.one_sided_two_proportion_pvalue(10, 1000, 60, 1000) < 1e-6
    assert stats.one_sided_two_proportion_pvalue(60, 1000, 10, 1000) > 1 - 1e-6
    assert stats.one_sided_two_proportion_pvalue(0, 50, 0, 80) == 1.0
    assert stats.one_sided_two_proportion_pvalue(50, 50, 80, 80) == 1.0


HW_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
HW_Y = [1.15, 0.88, 0.90, 0.74, 1.21]


def test_mann_whitney_matches_r_wilcox_test_example() -> None:
    """R's ?wilcox.test example (Hollander & Wolfe): W = 35, and the normal approximation R's p = 0.1103 pins."""
    # R reports p = 0.1103 for exact = FALSE, correct = FALSE, i.e. Q((35 - 25) / sqrt(10*5*16/12)), which
    # pins mean and variance; ours adds the continuity correction of 0.5 (R's correct = TRUE).
    sd = math.sqrt(10 * 5 * 16 / 12)
    assert 0.5 * math.erfc((35 - 25) / sd / math.sqrt(2)) == pytest.approx(0.1103, abs=5e-5)  # R's number
    res = stats.mann_whitney_u(HW_X, HW_Y, "greater")
    assert res.u == 35.0
    assert res.pvalue == pytest.approx(0.5 * math.erfc((35 - 25 - 0.5) / sd / math.sqrt(2)), rel=1e-12)
    two = stats.mann_whitney_u(HW_X, HW_Y)
    assert two.pvalue == pytest.approx(2 * res.pvalue, rel=1e-12)
    assert stats.mann_whitney_u(HW_X, HW_Y, "less").pvalue == pytest.approx(
        0.5 * math.erfc(-(35 - 25 + 0.5) / sd / math.sqrt(2)), rel=1e-12)


def test_mann_whitney_tie_correction_by_hand() -> None:
    """With ties, U counts ties as 1/2 and the variance drops by sum(t**3 - t) / (N (N - 1)), computed by hand."""
    x, y = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    assert u == 3.0
    n1, n2, big_n = 4, 5, 9
    ties = (3**3 - 3) + (3**3 - 3)  # three 2s and three 3s
    sd = math.sqrt(n1 * n2 / 12 * ((big_n + 1) - ties / (big_n * (big_n - 1))))
    res = stats.mann_whitney_u(x, y, "less")
    assert res.u == u
    assert res.pvalue == pytest.approx(0.5 * math.erfc((n1 * n2 / 2 - u - 0.5) / sd / math.sqrt(2)), rel=1e-12)
    assert stats.mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0]).pvalue == 1.0  # all tied: no evidence


def test_mann_whitney_size_and_power_by_simulation() -> None:
    """Under equal distributions MWU rejects at <= alpha + 3 SE; under a 0.8-sd shift nearly always."""
    rng = random.Random(9)
    alpha, reps = 0.05, 600
    size = sum(
        stats.mann_whitney_u([rng.gauss(0, 1) for _ in range(40)], [rng.gauss(0, 1) for _ in range(40)]).pvalue
        < alpha
        for _ in range(reps)
    ) / reps
    power = sum(
        stats.mann_whitney_u([rng.gauss(0, 1) for _ in range(40)], [rng.gauss(0.8, 1) for _ in range(40)],
                             "less").pvalue
        < alpha
        for _ in range(reps)
    ) / reps
    assert size <= alpha + 3 * _mc_se(alpha, reps), size
    assert size >= 0.01, size
    assert power >= 0.9, power


# --------------------------------------------------------------------------------------------------
# Retry oracle
# --------------------------------------------------------------------------------------------------


def test_geometric_attempts_matches_exact_sum() -> None:
    """geometric_attempts equals sum_{k<=retries} p**k in exact rationals, with the p=0/p=1 limits."""
    for p in [0.0, 1e-9, 0.1, 0.5, 0.9, 0.999999, 1.0]:
        for retries in [0, 1, 2, 5, 30]:
            exact = sum((Fraction(p) ** k for k in range(retries + 1)), Fraction(0))
            assert stats.geometric_attempts(p, retries) == pytest.approx(float(exact), rel=1e-12)
    assert stats.geometric_attempts(1.0, 3) == 4.0
    assert stats.geometric_attempts(0.0, 3) == 1.0
    eps = 2.0**-40  # near p = 1 the naive (1 - p**(n+1)) / (1 - p) loses digits; the oracle must not
    assert stats.geometric_attempts(1 - eps, 3) == pytest.approx(4 - 6 * eps, rel=1e-15)


def test_geometric_attempts_matches_simulated_retries() -> None:
    """Simulated retrying clients make as many attempts per request as the oracle predicts."""
    rng = random.Random(17)
    p, retries, reqs = 0.4, 2, 20000
    attempts = 0
    for _ in range(reqs):
        for _ in range(retries + 1):
            attempts += 1
            if rng.random() >= p:
                break
    assert attempts / reqs == pytest.approx(stats.geometric_attempts(p, retries), abs=0.03)


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (stats.wilson_interval, (5, -1, 0.95)),
        (stats.wilson_interval, (6, 5, 0.95)),
        (stats.wilson_interval, (-1, 5, 0.95)),
        (stats.wilson_interval, (1, 5, 1.0)),
        (stats.binomial_test, (11, 10, 0.5)),
        (stats.binomial_test, (1, 10, 1.5)),
        (stats.binomial_test, (0, 0, 0.5)),
        (stats.normal_ppf, (1.0,)),
        (stats.quantile, ([1.0, 2.0], 1.5)),
        (stats.quantile, ([], 0.5)),
        (stats.quantile_interval, ([1.0, 2.0], 1.0, 0.9)),
        (stats.quantile_interval, ([1.0, math.nan], 0.5, 0.9)),
        (stats.quantile_interval, ([1.0, 2.0], 0.5, 1.2)),
        (stats.binned_quantile, ([(0.0, 1.0, 0)], 0.5)),
        (stats.chi_square_gof, ([1, 2], [0.5, 0.6])),
        (stats.chi_square_gof, ([1, 2, 3], [0.5, 0.5])),
        (stats.chi_square_gof, ([0, 0], [0.5, 0.5])),
        (stats.chi_square_gof, ([-1, 2], [0.5, 0.5])),
        (stats.one_sided_two_proportion_pvalue, (1, 0, 1, 5)),
        (stats.one_sided_two_proportion_pvalue, (3, 2, 1, 5)),
        (stats.mann_whitney_u, ([], [1.0])),
        (stats.mann_whitney_u, ([1.0], [2.0], "bigger")),
        (stats.geometric_attempts, (0.5, -1)),
        (stats.geometric_attempts, (1.1, 2)),
    ],
)
def test_nonsense_inputs_raise_value_error(func: Callable[..., object], args: tuple[object, ...]) -> None:
    """Each nonsensical argument combination raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per case by design
        func(*args)
