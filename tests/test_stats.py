"""Intervals and tests of raysweep.stats against cases whose answer is known."""
import math

import pytest

from raysweep.stats import bootstrap_mean, paired_difference, share_interval, spearman, verdict, wilson


def test_wilson_matches_the_textbook_values():
    # Wilson 95 % for 0/200 and 10/100 (Newcombe 1998, Table I)
    lo, hi = wilson(0, 200)
    assert lo == 0.0 and hi == pytest.approx(0.01884, abs=2e-5)
    lo, hi = wilson(10, 100)
    assert (lo, hi) == pytest.approx((0.05523, 0.17437), abs=2e-5)
    assert share_interval(0.1, 100) == pytest.approx((lo, hi))
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_bootstrap_interval_of_constant_values_is_a_point_and_covers_the_mean():
    assert bootstrap_mean([0.2] * 6) == pytest.approx((0.2, 0.2, 0.2))
    mean, lo, hi = bootstrap_mean([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert mean == pytest.approx(0.25) and lo < 0.25 < hi and 0.0 <= lo and hi <= 0.5
    assert math.isnan(bootstrap_mean([0.3])[1])


def test_stratified_bootstrap_keeps_each_strata_share():
    # two bases: base 0 always 0, base 1 always 1 -> every stratified resample has mean exactly 0.5
    assert bootstrap_mean([0, 0, 0, 1, 1, 1], strata=[0, 0, 0, 1, 1, 1]) == pytest.approx((0.5, 0.5, 0.5))
    _, lo, hi = bootstrap_mean([0, 0, 0, 1, 1, 1])
    assert lo < 0.5 < hi  # unstratified, the share of each base varies


def test_paired_difference_uses_only_shared_keys():
    a = {(0, 0): 0.5, (0, 1): 0.6, (1, 2): 0.7, (1, 3): float("nan")}
    b = {(0, 0): 0.1, (0, 1): 0.2, (1, 2): 0.3, (9, 9): 0.0}
    mean, lo, hi, n = paired_difference(a, b)
    assert n == 3 and mean == pytest.approx(0.4) and lo == pytest.approx(0.4) and hi == pytest.approx(0.4)


def test_exact_spearman_p_at_n3_is_one_third_not_zero():
    rho, p, how = spearman([1, 2, 3], [3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(1 / 3) and "exact" in how
    rho, p, _ = spearman([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])
    assert p == pytest.approx(2 / 720)  # only the identity and its reverse are as extreme
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5])[0])


@pytest.mark.parametrize("n", [7, 12])  # exact, and random permutations
def test_spearman_permutation_p_is_scipys_spearmanr_per_permutation(n):
    """The vectorized statistic (Pearson's r of ranks) gives scipy's own answer, ties included."""
    import numpy as np
    from scipy.stats import permutation_test, spearmanr

    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=n))  # ties in both
    y = np.round(2 * (x + rng.normal(size=n))) / 2
    rho, p, _ = spearman(x, y, resamples=2_000)
    ref = permutation_test((x,), lambda a: spearmanr(a, y).statistic, permutation_type="pairings",
                           n_resamples=np.inf if n <= 8 else 2_000, rng=np.random.default_rng(0))
    assert rho == pytest.approx(ref.statistic, abs=1e-12) and p == ref.pvalue


def test_verdict_needs_the_whole_interval_on_one_side():
    assert verdict(0.02, 0.08, 0.1, "below") == "reproduced"
    assert verdict(0.12, 0.3, 0.1, "below") == "refuted"
    assert verdict(0.05, 0.15, 0.1, "below") == "inconclusive"  # a knife edge: 0.093 vs 0.1 is not a verdict
    assert verdict(0.6, 0.9, 0.5, "above") == "reproduced"
    assert verdict(float("nan"), float("nan"), 0.5, "above") == "inconclusive"
    assert verdict(-0.02, 0.03, 0.05, "within") == "reproduced"  # equivalence within a margin of 0.05
    assert verdict(0.06, 0.2, 0.05, "within") == "refuted"
    assert verdict(-0.01, 0.07, 0.05, "within") == "inconclusive"


def test_a_stratum_of_one_unit_gives_no_interval():
    import math

    from raysweep.stats import bootstrap_mean

    mean, lo, hi = bootstrap_mean([0.2, 0.6], strata=[0, 1])  # one replicate per base seed: nothing to resample
    assert mean == 0.4 and math.isnan(lo) and math.isnan(hi)
    mean, lo, hi = bootstrap_mean([0.2, 0.3, 0.6, 0.7], strata=[0, 0, 1, 1])
    assert 0.25 <= lo < mean == 0.45 < hi <= 0.65
