"""Tests for harness.assertions.stats: agreement with scipy, and coverage/size/power by simulation.

Simulation tests use a fixed-seed ``random.Random`` so they are deterministic; their tolerances are
derived from the Monte-Carlo standard error (SE) of a proportion estimated from ``REPS`` draws, so a
correct implementation passes with a wide margin while a wrong one (wrong z, one tail only, halved
p-value, ...) falls outside them.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.assertions import stats

REPS = 2000
HYP = settings(max_examples=80, derandomize=True, database=None, deadline=None,
               suppress_health_check=[HealthCheck.too_slow])


def _mc_se(p: float, reps: int = REPS) -> float:
    return math.sqrt(p * (1.0 - p) / reps)


def _binomial_sampler(n: int, p: float) -> Callable[[random.Random], int]:
    """Inverse-CDF binomial sampler built from lgamma pmfs (independent of the code under test)."""
    cum: list[float] = []
    acc = 0.0
    for k in range(n + 1):
        acc += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                        + k * math.log(p) + (n - k) * math.log1p(-p))
        cum.append(acc)
    total = cum[-1]

    def draw(rng: random.Random) -> int:
        return min(n, bisect.bisect_left(cum, rng.random() * total))

    return draw


def _covers(interval: tuple[float, float], value: float) -> bool:
    return interval[0] <= value <= interval[1]


def _categorical_sampler(probs: list[float]) -> Callable[[random.Random, int], list[int]]:
    cum = [math.fsum(probs[: i + 1]) for i in range(len(probs))]

    def draw(rng: random.Random, n: int) -> list[int]:
        counts = [0] * len(probs)
        top = cum[-1]
        for _ in range(n):
            counts[min(len(probs) - 1, bisect.bisect_left(cum, rng.random() * top))] += 1
        return counts

    return draw


# --------------------------------------------------------------------------------------------------
# Agreement with scipy / closed forms
# --------------------------------------------------------------------------------------------------


def test_normal_ppf_matches_scipy() -> None:
    """normal_ppf agrees with scipy.stats.norm.ppf, including far tails."""
    sp = pytest.importorskip("scipy.stats")
    for p in [1e-300, 1e-12, 1e-6, 0.001, 0.025, 0.3, 0.5, 0.7, 0.975, 0.999, 1 - 1e-12]:
        assert stats.normal_ppf(p) == pytest.approx(float(sp.norm.ppf(p)), rel=1e-12, abs=1e-14)


def test_wilson_matches_textbook_formula() -> None:
    """wilson_interval equals the textbook centre +/- half-width form (scipy's z)."""
    sp = pytest.importorskip("scipy.stats")
    for n in [1, 2, 7, 50, 1000, 10**6]:
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in [0.8, 0.95, 0.99]:
                z = float(sp.norm.ppf(0.5 + conf / 2))
                ph = k / n
                centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
                half = z / (1 + z * z / n) * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
                lo, hi = stats.wilson_interval(k, n, conf)
                assert lo == pytest.approx(max(0.0, centre - half), rel=1e-9, abs=1e-13)
                assert hi == pytest.approx(min(1.0, centre + half), rel=1e-9, abs=1e-13)
    assert stats.wilson_interval(0, 0, 0.95) == (0.0, 1.0)
    assert stats.wilson_interval(0, 10, 0.95)[0] == 0.0
    assert stats.wilson_interval(10, 10, 0.95)[1] == 1.0


def test_clopper_pearson_matches_scipy_beta_ppf() -> None:
    """Clopper-Pearson endpoints equal scipy beta quantiles, from n=1 to n=1e7."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(11)
    for n in [1, 2, 5, 30, 100, 1000, 54321, 10**6, 10**7]:
        ks = sorted({0, 1, 2, n // 2, n - 1, n, rng.randint(0, n), rng.randint(0, min(n, 30))})
        for k in (k for k in ks if 0 <= k <= n):
            for conf in [0.8, 0.95, 0.99, 0.999999]:
                tail = (1 - conf) / 2
                lo, hi = stats.clopper_pearson_interval(k, n, conf)
                want_lo = 0.0 if k == 0 else float(sp.beta.ppf(tail, k, n - k + 1))
                want_hi = 1.0 if k == n else float(sp.beta.isf(tail, k + 1, n - k))
                # scipy's own beta quantile is only good to ~2e-10 for n = 1e7 (checked against
                # mpmath), hence 1e-9 rather than something tighter.
                assert lo == pytest.approx(want_lo, rel=1e-9, abs=1e-300), (k, n, conf)
                assert hi == pytest.approx(want_hi, rel=1e-9), (k, n, conf)


def test_clopper_pearson_is_fast_for_huge_n() -> None:
    """Exact intervals for n = 1e7 take milliseconds, not seconds."""
    start = time.perf_counter()
    for k in [0, 1, 17, 5_000_000, 9_999_999, 10_000_000]:
        stats.clopper_pearson_interval(k, 10**7, 0.99)
    assert time.perf_counter() - start < 2.0


def test_binomial_cdf_sf_match_scipy() -> None:
    """binomial_cdf/binomial_sf agree with scipy.stats.binom, including tiny tails."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(5)
    for n in [0, 1, 3, 10, 100, 1000, 10**4, 10**6]:
        for p in [0.0, 1e-6, 0.001, 0.03, 0.3, 0.5, 0.77, 0.999, 1.0]:
            for k in sorted({-1, 0, 1, n // 3, n // 2, int(n * p), n - 1, n, n + 1, rng.randint(0, n)}):
                want_cdf = float(sp.binom.cdf(k, n, p))
                want_sf = float(sp.binom.sf(k, n, p))
                assert stats.binomial_cdf(k, n, p) == pytest.approx(want_cdf, rel=1e-9, abs=1e-290)
                assert stats.binomial_sf(k, n, p) == pytest.approx(want_sf, rel=1e-9, abs=1e-290)


def test_binomial_test_matches_scipy_binomtest() -> None:
    """binomial_test reproduces scipy.stats.binomtest(...).pvalue (two-sided) up to n = 1e6."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    cases = [(0, 1, 0.5), (1, 1, 0.5), (5, 10, 0.5), (0, 10, 0.0), (3, 10, 0.0), (10, 10, 1.0),
             (9, 10, 1.0), (2, 20, 0.1), (7, 20, 0.35), (500321, 10**6, 0.5), (3, 10**6, 1e-6)]
    for n in [1, 2, 5, 13, 50, 200, 1000, 10**5, 10**6]:
        for p in [1e-4, 0.01, 0.1, 0.3, 0.5, 0.62, 0.9, 0.999]:
            for k in sorted({0, 1, n, rng.randint(0, n), int(n * p), min(n, int(n * p) + 3)}):
                cases.append((k, n, p))
    for k, n, p in cases:
        want = float(sp.binomtest(k, n, p).pvalue)
        got = stats.binomial_test(k, n, p)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (k, n, p)


def test_chi_square_sf_matches_scipy() -> None:
    """chi_square_sf agrees with scipy.stats.chi2.sf over small and huge df and both tails."""
    sp = pytest.importorskip("scipy.stats")
    for df in [1, 2, 3, 4, 7, 30, 100, 1000, 10**5]:
        for x in [0.0, 1e-8, 0.1, 1.0, df / 2, df - 1, df, df + 3 * math.sqrt(2 * df), 2.0 * df, 5 * df + 50]:
            want = float(sp.chi2.sf(x, df))
            assert stats.chi_square_sf(x, df) == pytest.approx(want, rel=1e-10, abs=1e-300), (x, df)
    assert stats.chi_square_sf(-1.0, 3) == 1.0
    assert stats.chi_square_sf(math.inf, 3) == 0.0


def test_chi_square_gof_matches_scipy_chisquare() -> None:
    """chi_square_gof statistic/p-value equal scipy.stats.chisquare with expected = n * probs."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    for _ in range(200):
        k = rng.randint(2, 9)
        raw = [rng.random() + 0.05 for _ in range(k)]
        probs = [r / math.fsum(raw) for r in raw]
        counts = [rng.randint(0, 60) for _ in range(k)]
        if sum(counts) == 0:
            continue
        res = stats.chi_square_gof(counts, probs)
        ref = sp.chisquare(counts, [sum(counts) * p for p in probs])
        assert res.statistic == pytest.approx(float(ref.statistic), rel=1e-10, abs=1e-12)
        assert res.pvalue == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300)
        assert res.df == k - 1
        assert res.min_expected == pytest.approx(sum(counts) * min(probs))


def test_chi_square_gof_zero_probability_categories() -> None:
    """A zero-probability category is dropped when empty and forces p=0 when observed."""
    sp = pytest.importorskip("scipy.stats")
    dropped = stats.chi_square_gof([30, 0, 70], [0.25, 0.0, 0.75])
    ref = sp.chisquare([30, 70], [25.0, 75.0])
    assert dropped.df == 1
    assert dropped.pvalue == pytest.approx(float(ref.pvalue), rel=1e-9)
    hit = stats.chi_square_gof([30, 1, 69], [0.25, 0.0, 0.75])
    assert hit.pvalue == 0.0
    assert hit.statistic == math.inf
    single = stats.chi_square_gof([0, 40], [0.0, 1.0])
    assert (single.df, single.pvalue, single.statistic) == (0, 1.0, 0.0)


def test_two_proportion_tests_match_normal_computation() -> None:
    """Pooled z-test p-values (two-sided and one-sided) equal a direct scipy.stats.norm computation."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(9)
    for _ in range(300):
        n1, n2 = rng.randint(1, 5000), rng.randint(1, 5000)
        k1, k2 = rng.randint(0, n1), rng.randint(0, n2)
        pooled = (k1 + k2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se == 0:
            assert stats.two_proportion_test(k1, n1, k2, n2) == 1.0
            continue
        z = (k2 / n2 - k1 / n1) / se
        assert stats.two_proportion_test(k1, n1, k2, n2) == pytest.approx(
            float(2 * sp.norm.sf(abs(z))), rel=1e-9, abs=1e-300)
        assert stats.one_sided_two_proportion_pvalue(k1, n1, k2, n2) == pytest.approx(
            float(sp.norm.sf(z)), rel=1e-9, abs=1e-300)


def test_one_sided_two_proportion_direction() -> None:
    """A small one-sided p-value means group 2 has the higher (worse) error rate, not group 1."""
    assert stats.one_sided_two_proportion_pvalue(10, 1000, 60, 1000) < 1e-6
    assert stats.one_sided_two_proportion_pvalue(60, 1000, 10, 1000) > 1 - 1e-6
    assert stats.one_sided_two_proportion_pvalue(0, 50, 0, 80) == 1.0


def test_mann_whitney_matches_scipy_asymptotic() -> None:
    """mann_whitney_u equals scipy.stats.mannwhitneyu(method='asymptotic') with and without ties."""
    sp = pytest.importorskip("scipy.stats")
    rng = random.Random(21)
    gens: list[Callable[[], float]] = [rng.random, lambda: float(rng.randint(0, 5)), lambda: rng.expovariate(1)]
    for _ in range(80):
        n1, n2 = rng.randint(1, 60), rng.randint(1, 60)
        gen = rng.choice(gens)
        shift = rng.choice([0.0, 0.0, 0.3, 1.0])
        x = [gen() + shift for _ in range(n1)]
        y = [gen() for _ in range(n2)]
        for alt in ("two-sided", "less", "greater"):
            res = stats.mann_whitney_u(x, y, alt)
            ref = sp.mannwhitneyu(x, y, alternative=alt, method="asymptotic")
            assert res.u == float(ref.statistic)
            assert res.pvalue == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-300), (alt, x, y)
    assert stats.mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0]).pvalue == 1.0


def test_quantile_matches_numpy_linear() -> None:
    """quantile() is numpy's default 'linear' quantile on unsorted input."""
    np = pytest.importorskip("numpy")
    rng = random.Random(4)
    for n in [1, 2, 3, 10, 101]:
        values = [rng.gauss(0, 1) for _ in range(n)]
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0]:
            assert stats.quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-12, abs=1e-15)


def test_quantile_interval_ranks_are_valid_and_shortest() -> None:
    """Chosen order-statistic ranks reach the confidence exactly and no narrower pair does."""
    sp = pytest.importorskip("scipy.stats")
    for n in [*range(2, 40), 100, 200, 333]:
        values = [float(i) for i in range(n)]
        for q in [0.05, 0.25, 0.5, 0.9, 0.99]:
            cdf = [float(c) for c in sp.binom.cdf(range(-1, n + 1), n, q)]  # cdf[i + 1] = P(B <= i)

            def coverage(lo_rank: int, hi_rank: int, cdf: list[float] = cdf) -> float:
                return cdf[hi_rank] - cdf[lo_rank]  # P(lo_rank <= B <= hi_rank - 1)

            for conf in [0.8, 0.95, 0.99]:
                iv = stats.quantile_interval(values, q, conf)
                if iv is None:
                    assert coverage(1, n) < conf, (n, q, conf)
                    continue
                lo_rank, hi_rank = int(iv[0]) + 1, int(iv[1]) + 1
                assert coverage(lo_rank, hi_rank) >= conf, (n, q, conf, lo_rank, hi_rank)
                width = hi_rank - lo_rank
                for lo in range(1, n - width + 2):
                    hi = lo + width - 1
                    if lo < hi <= n:
                        assert coverage(lo, hi) < conf, (n, q, conf, lo, hi)


def test_retry_oracle_closed_forms() -> None:
    """retry_success and geometric_attempts equal the explicit sums, with the p=0/p=1 limits."""
    for p in [0.0, 1e-9, 0.1, 0.5, 0.9, 0.999999, 1.0]:
        for retries in [0, 1, 2, 5, 30]:
            assert stats.retry_success(p, retries) == pytest.approx(1 - p ** (retries + 1), rel=1e-9, abs=1e-15)
            assert stats.geometric_attempts(p, retries) == pytest.approx(
                math.fsum(p**k for k in range(retries + 1)), rel=1e-9)
    assert stats.geometric_attempts(1.0, 3) == 4.0
    # near p = 1 the naive 1 - p**(n+1) loses digits; the oracle must not
    eps = 2.0**-40
    assert stats.retry_success(1 - eps, 0) == pytest.approx(eps, rel=1e-12)
    assert stats.retry_success(1 - eps, 2) == pytest.approx(3 * eps - 3 * eps * eps, rel=1e-9)
    assert stats.geometric_attempts(1 - eps, 3) == pytest.approx(4 - 6 * eps, rel=1e-15)


def test_retry_oracle_matches_simulated_retries() -> None:
    """Simulated retrying clients reproduce the oracle's success rate and mean attempts."""
    rng = random.Random(17)
    p, retries, reqs = 0.4, 2, 20000
    successes = attempts = 0
    for _ in range(reqs):
        for _ in range(retries + 1):
            attempts += 1
            if rng.random() >= p:
                successes += 1
                break
    s = stats.retry_success(p, retries)
    assert abs(successes / reqs - s) < 4 * math.sqrt(s * (1 - s) / reqs)
    assert attempts / reqs == pytest.approx(stats.geometric_attempts(p, retries), abs=0.03)


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (stats.wilson_interval, (5, -1, 0.95)),
        (stats.wilson_interval, (6, 5, 0.95)),
        (stats.wilson_interval, (-1, 5, 0.95)),
        (stats.wilson_interval, (1, 5, 1.0)),
        (stats.clopper_pearson_interval, (1, 5, 0.0)),
        (stats.clopper_pearson_interval, (7, 5, 0.9)),
        (stats.binomial_test, (11, 10, 0.5)),
        (stats.binomial_test, (1, 10, 1.5)),
        (stats.binomial_test, (0, 0, 0.5)),
        (stats.binomial_cdf, (1, -3, 0.5)),
        (stats.binomial_sf, (1, 3, math.nan)),
        (stats.normal_ppf, (1.0,)),
        (stats.quantile, ([1.0, 2.0], 1.5)),
        (stats.quantile, ([], 0.5)),
        (stats.quantile_interval, ([1.0, 2.0], 1.0, 0.9)),
        (stats.quantile_interval, ([1.0, math.nan], 0.5, 0.9)),
        (stats.quantile_interval, ([1.0, 2.0], 0.5, 1.2)),
        (stats.chi_square_sf, (1.0, 0)),
        (stats.chi_square_gof, ([1, 2], [0.5, 0.6])),
        (stats.chi_square_gof, ([1, 2, 3], [0.5, 0.5])),
        (stats.chi_square_gof, ([0, 0], [0.5, 0.5])),
        (stats.chi_square_gof, ([-1, 2], [0.5, 0.5])),
        (stats.two_proportion_test, (1, 0, 1, 5)),
        (stats.one_sided_two_proportion_pvalue, (3, 2, 1, 5)),
        (stats.mann_whitney_u, ([], [1.0])),
        (stats.mann_whitney_u, ([1.0], [2.0], "bigger")),
        (stats.geometric_attempts, (0.5, -1)),
        (stats.retry_success, (1.1, 2)),
    ],
)
def test_nonsense_inputs_raise_value_error(func: Callable[..., object], args: tuple[object, ...]) -> None:
    """Each nonsensical argument combination raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the messages differ per case by design
        func(*args)


@HYP
@given(n=st.integers(1, 10**6), data=st.data(), conf=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_intervals_contain_estimate_and_nest(n: int, data: st.DataObject, conf: float) -> None:
    """Both proportion intervals contain k/n, and grow when the confidence grows."""
    k = data.draw(st.integers(0, n))
    for interval in (stats.wilson_interval, stats.clopper_pearson_interval):
        lo, hi = interval(k, n, conf)
        wide_lo, wide_hi = interval(k, n, 1 - (1 - conf) / 10)
        assert 0.0 <= wide_lo <= lo <= k / n <= hi <= wide_hi <= 1.0
        assert lo < hi


@HYP
@given(n=st.integers(0, 5000), p=st.floats(0.0, 1.0), data=st.data())
def test_binomial_cdf_and_sf_are_complementary(n: int, p: float, data: st.DataObject) -> None:
    """binomial_cdf(k) + binomial_sf(k) == 1 and the cdf is monotone in k."""
    k = data.draw(st.integers(-1, n + 1))
    c, s = stats.binomial_cdf(k, n, p), stats.binomial_sf(k, n, p)
    assert c + s == pytest.approx(1.0, abs=1e-12)
    assert stats.binomial_cdf(k - 1, n, p) <= c + 1e-15


# --------------------------------------------------------------------------------------------------
# Coverage, size and power by simulation
# --------------------------------------------------------------------------------------------------

PROPORTION_CASES = [(50, 0.03), (200, 0.3), (2000, 0.97)]


@pytest.mark.parametrize(("n", "p"), PROPORTION_CASES)
def test_proportion_interval_coverage_by_simulation(n: int, p: float) -> None:
    """Simulated coverage: Clopper-Pearson >= nominal - 3 SE; Wilson >= nominal - 3 SE - known dip.

    Clopper-Pearson is guaranteed to cover at least the nominal level for every p, so its only
    allowance is Monte-Carlo error (3 SE, SE = sqrt(c(1-c)/REPS) ~ 0.005 at c = 0.95).  Wilson is
    *not* guaranteed: its exact coverage oscillates with n and p and dips below nominal (Brown, Cai
    & DasGupta 2001); e.g. (n=50, p=0.03) has exact coverage 0.937 at 95% and 0.983 at 99%, and
    (2000, 0.97) 0.943 at 95%.  So Wilson additionally gets a documented allowance of 2 points at
    95% and 1 point at 99%; a wrong z (e.g. one-sided 1.645) or a Wald interval (~0.78 coverage at
    (50, 0.03)) would still fail.
    """
    rng = random.Random(1000 + n)
    draw = _binomial_sampler(n, p)
    ks = [draw(rng) for _ in range(REPS)]
    for conf, wilson_dip in [(0.95, 0.02), (0.99, 0.01)]:
        floor = conf - 3 * _mc_se(conf)
        # Intervals depend only on k, so compute each distinct one once.
        covers_cp = {k: _covers(stats.clopper_pearson_interval(k, n, conf), p) for k in set(ks)}
        covers_w = {k: _covers(stats.wilson_interval(k, n, conf), p) for k in set(ks)}
        hits_cp = sum(covers_cp[k] for k in ks)
        hits_w = sum(covers_w[k] for k in ks)
        assert hits_cp / REPS >= floor, ("clopper-pearson", conf, hits_cp / REPS)
        assert hits_w / REPS >= floor - wilson_dip, ("wilson", conf, hits_w / REPS)


def test_proportion_interval_exact_coverage() -> None:
    """Exact (enumerated) coverage: Clopper-Pearson never below nominal; Wilson near nominal on average.

    Enumerating all k with their binomial probabilities removes Monte-Carlo error entirely, so the
    Clopper-Pearson guarantee is checked with zero slack (1e-12 for rounding), and Wilson's mean
    coverage over a p-grid must be within 1 point of nominal (its design property).
    """
    sp = pytest.importorskip("scipy.stats")
    for n in [10, 37, 100]:
        for conf in [0.9, 0.95, 0.99]:
            cp = [stats.clopper_pearson_interval(k, n, conf) for k in range(n + 1)]
            wi = [stats.wilson_interval(k, n, conf) for k in range(n + 1)]
            wilson_cov = []
            for i in range(1, 100):
                p = i / 100 + 0.0013
                pmf = sp.binom.pmf(range(n + 1), n, p)
                cov_cp = math.fsum(float(pmf[k]) for k in range(n + 1) if cp[k][0] <= p <= cp[k][1])
                assert cov_cp >= conf - 1e-12, (n, conf, p, cov_cp)
                wilson_cov.append(math.fsum(float(pmf[k]) for k in range(n + 1) if wi[k][0] <= p <= wi[k][1]))
            assert abs(math.fsum(wilson_cov) / len(wilson_cov) - conf) < 0.01, (n, conf)


def test_quantile_interval_coverage_by_simulation() -> None:
    """Order-statistic intervals cover the true 0.5/0.9 quantile >= nominal - 3 SE (exponential, uniform).

    The construction is exact for continuous data (coverage >= nominal for any distribution), so
    the only slack is Monte-Carlo error.  With n = 200 the 0.99 quantile cannot be bounded at 95%
    or 99% (0.99**200 = 0.13 > alpha), so None is required there.
    """
    rng = random.Random(42)
    n = 200
    dists: list[tuple[str, Callable[[], float], Callable[[float], float]]] = [
        ("exponential", lambda: rng.expovariate(1.0), lambda q: -math.log1p(-q)),
        ("uniform", rng.random, lambda q: q),
    ]
    for name, gen, true_quantile in dists:
        hits: dict[tuple[float, float], int] = {}
        for _ in range(REPS):
            sample = [gen() for _ in range(n)]
            for q in (0.5, 0.9):
                for conf in (0.95, 0.99):
                    iv = stats.quantile_interval(sample, q, conf)
                    assert iv is not None
                    hits[(q, conf)] = hits.get((q, conf), 0) + (iv[0] <= true_quantile(q) <= iv[1])
            for conf in (0.95, 0.99):
                assert stats.quantile_interval(sample, 0.99, conf) is None
        for (q, conf), h in hits.items():
            assert h / REPS >= conf - 3 * _mc_se(conf), (name, q, conf, h / REPS)


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


def test_quantile_interval_none_exactly_when_unreachable() -> None:
    """None is returned exactly below the smallest n with q**n + (1-q)**n <= 1 - confidence."""
    for q, conf in [(0.99, 0.95), (0.99, 0.99), (0.9, 0.999), (0.5, 0.99)]:
        n_min = next(n for n in range(2, 10**5) if q**n + (1 - q) ** n <= 1 - conf)
        values = [float(i) for i in range(n_min)]
        assert stats.quantile_interval(values[:-1], q, conf) is None
        iv = stats.quantile_interval(values, q, conf)
        assert iv is not None, (q, conf, n_min)
        assert iv[1] == values[-1]  # the maximum is needed: P(B = n) = q**n nearly exhausts alpha


def test_binomial_test_size_and_power_by_simulation() -> None:
    """Under H0 binomial_test rejects at <= alpha + 3 SE; under p=0.45 vs 0.3 (n=200) nearly always."""
    rng = random.Random(7)
    n, p0, alpha = 200, 0.3, 0.05
    null_draw, alt_draw = _binomial_sampler(n, p0), _binomial_sampler(n, 0.45)
    rejects = {k: stats.binomial_test(k, n, p0) < alpha for k in range(n + 1)}
    size = sum(rejects[null_draw(rng)] for _ in range(REPS)) / REPS
    power = sum(rejects[alt_draw(rng)] for _ in range(REPS)) / REPS
    assert size <= alpha + 3 * _mc_se(alpha), size
    assert size >= 0.01, size  # an always-accepting test would pass the line above
    assert power >= 0.95, power


def test_chi_square_gof_size_and_power_by_simulation() -> None:
    """Under H0 chi_square_gof rejects at <= alpha + 3 SE; against a flat split (n=400) nearly always."""
    rng = random.Random(8)
    n, alpha = 400, 0.05
    h0 = [0.1, 0.2, 0.3, 0.25, 0.15]
    null_draw, alt_draw = _categorical_sampler(h0), _categorical_sampler([0.2] * 5)
    size = sum(stats.chi_square_gof(null_draw(rng, n), h0).pvalue < alpha for _ in range(REPS)) / REPS
    power = sum(stats.chi_square_gof(alt_draw(rng, n), h0).pvalue < alpha for _ in range(500)) / 500
    assert size <= alpha + 3 * _mc_se(alpha), size
    assert size >= 0.02, size
    assert power >= 0.95, power


def test_mann_whitney_size_and_power_by_simulation() -> None:
    """Under equal distributions MWU rejects at <= alpha + 3 SE; under a 0.8-sd shift nearly always."""
    rng = random.Random(9)
    alpha, reps = 0.05, 1000
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
    assert power >= 0.9, power
