"""Seeds as an axis of a sweep: trials whose configs differ only in their seeds are replicates of one setting.
A setting's point on a Pareto plot is the mean over its replicates with a 95 % percentile-bootstrap interval per
objective; whether one setting beats another is a probability — the share of bootstrap resamples (each setting's
replicates resampled independently) in which its mean dominates the other's — not a yes/no read off two means."""
from __future__ import annotations

import json
import math

import numpy as np

from .experiment import meets
from .stats import bootstrap_mean

SEED_KEYS = ("unlearn.seed", "attack.seed", "eval.seed", "pretrain.seed", "judge.seed")


def setting_keys(row: dict) -> list[str]:
    """The row's config columns other than seeds (config columns are the dotted ones; curves are ``name/step``)."""
    return [k for k in row if "." in k and "/" not in k and k not in SEED_KEYS]


def setting_of(row: dict) -> str:
    """The row's config without its seeds."""
    return json.dumps({k: row[k] for k in setting_keys(row)}, sort_keys=True, default=str)


def replicate_groups(rows: list[dict], idx: list[int]) -> list[list[int]]:
    """The rows ``idx`` grouped by setting, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i in idx:
        groups.setdefault(setting_of(rows[i]), []).append(i)
    return list(groups.values())


def summarize(rows: list[dict], group: list[int], objectives: dict[str, str], constraints: dict) -> dict:
    """n, and per objective the mean with its bootstrap interval; feasible when the means meet the constraints."""
    out = {"rows": group, "n": len(group)}
    for m in {*objectives, *constraints}:
        out[m] = bootstrap_mean([rows[i][m] for i in group], resamples=2000)
    out["feasible"] = meets({m: out[m][0] for m in constraints}, constraints)
    return out


def dominance(a: np.ndarray, b: np.ndarray, modes: list[str], resamples: int = 2000, seed: int = 0) -> float:
    """P(a's mean dominates b's): ``a``, ``b`` are (replicates × objectives) arrays. Dominates = at least as good
    in every objective and better in one, in each objective's direction."""
    rng = np.random.default_rng(seed)
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])  # turn every objective into "smaller is better"
    ma = a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1) * sign
    mb = b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1) * sign
    return float(((ma <= mb).all(axis=1) & (ma < mb).any(axis=1)).mean())


def dominance_table(rows: list[dict], groups: list[dict], objectives: dict[str, str]) -> list[list[float]]:
    """P(group i dominates group j) for every ordered pair (nan on the diagonal)."""
    names = list(objectives)
    data = [np.array([[float(rows[i][m]) for m in names] for i in g["rows"]]) for g in groups]
    modes = [objectives[m] for m in names]
    return [[math.nan if i == j else dominance(data[i], data[j], modes, seed=i * len(groups) + j)
             for j in range(len(groups))] for i in range(len(groups))]


def varying(rows: list[dict], groups: list[dict]) -> list[str]:
    """The config keys whose values differ between the groups: what names a setting."""
    keys = sorted({k for g in groups for k in setting_keys(rows[g["rows"][0]])})
    return [k for k in keys if len({json.dumps(rows[g["rows"][0]].get(k), default=str) for g in groups}) > 1]
