"""Uncertainty for every claim: Wilson intervals over samples, bootstrap intervals over seeds, exact permutation
p-values for rank correlations at small n, and the three-way verdict rule. numpy and scipy only (no torch), so the
study scripts and the report can use it without the model stack. The bootstrap is written here because it is
stratified (by base seed), which scipy's ``bootstrap`` does not do.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import binomtest, permutation_test, rankdata


def wilson(k: float, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion k/n (scipy's); (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    ci = binomtest(int(round(k)), n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def share_interval(share: float, n: int) -> tuple[float, float]:
    """Wilson interval of a share measured on n samples (AR: share of n samples the judge reads as c_u)."""
    return wilson(round(share * n), n)


def bootstrap_mean(values: Sequence[float], strata: Sequence | None = None, resamples: int = 10_000,
                   seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap of the mean over independent units (seeds). With ``strata`` (e.g. the
    base-model seed of each unit) units are resampled within their stratum, so a study with few bases keeps each
    base's share. NaNs are dropped; fewer than two units, or a stratum with a single unit (whose resamples would
    never vary: a zero-width interval that is ignorance, not certainty), give (mean, nan, nan)."""
    x = np.asarray(values, dtype=float)
    keep = np.isfinite(x)
    x = x[keep]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    rng = np.random.default_rng(seed)
    groups = [np.arange(len(x))] if strata is None else [
        np.flatnonzero(np.asarray(strata, dtype=object)[keep] == s) for s in dict.fromkeys(np.asarray(strata, dtype=object)[keep])]
    if any(len(g) < 2 for g in groups):
        return float(x.mean()), math.nan, math.nan
    means = np.zeros(resamples)
    for g in groups:
        draws = rng.integers(0, len(g), size=(resamples, len(g)))
        means += x[g][draws].sum(1)
    means /= len(x)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_difference(a: dict, b: dict, strata: dict | None = None, **kw) -> tuple[float, float, float, int]:
    """Bootstrap of mean(a[k] - b[k]) over the keys (seeds) both have: (mean, lo, hi, n pairs)."""
    keys = [k for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    diffs = [a[k] - b[k] for k in keys]
    mean, lo, hi = bootstrap_mean(diffs, [strata[k] for k in keys] if strata else None, **kw)
    return mean, lo, hi, len(keys)


def spearman(x: Sequence[float], y: Sequence[float], exact_max_n: int = 8, resamples: int = 20_000,
             seed: int = 0) -> tuple[float, float, str]:
    """(rho, two-sided p, how p was computed). p comes from the permutation distribution of rho (scipy's
    ``permutation_test`` over pairings): every permutation for n <= ``exact_max_n`` (exact), else ``resamples``
    random ones. No asymptotic approximation: at n = 3 the smallest possible p is 1/3, and this says so."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, "undefined"
    exact = n <= exact_max_n
    # rho is Pearson's r of the ranks, and ranking commutes with re-pairing: rank once, then every permutation is one
    # vectorized correlation (scipy calling spearmanr per permutation spent 10 s on 20,000 of them)
    ry = rankdata(y) - (n + 1) / 2

    def rho(rx: np.ndarray, axis: int = -1) -> np.ndarray:
        rx = np.moveaxis(rx, axis, -1) - (n + 1) / 2  # the mean rank, with ties averaged too
        return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum())

    res = permutation_test((rankdata(x),), rho, permutation_type="pairings", vectorized=True,
                           n_resamples=np.inf if exact else resamples, rng=np.random.default_rng(seed))
    how = f"exact over {math.factorial(n)} permutations" if exact else f"{resamples} random permutations"
    return float(res.statistic), float(res.pvalue), how


def verdict(lo: float, hi: float, threshold: float, holds_when: str) -> str:
    """``reproduced`` when the whole interval lies on the claim's side of ``threshold`` (``holds_when`` is
    "below" or "above"), ``refuted`` when it lies wholly on the other side, else ``inconclusive``. For an
    equivalence claim (``holds_when`` "within") ``threshold`` is the margin m: reproduced when the interval lies in
    (-m, m), refuted when it lies wholly outside it."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if holds_when == "within":
        return "reproduced" if -threshold < lo and hi < threshold else \
            "refuted" if lo > threshold or hi < -threshold else "inconclusive"
    below, above = hi < threshold, lo > threshold
    if holds_when == "below":
        return "reproduced" if below else "refuted" if above else "inconclusive"
    if holds_when == "above":
        return "reproduced" if above else "refuted" if below else "inconclusive"
    raise ValueError(f"holds_when must be below, above or within, got {holds_when!r}")
