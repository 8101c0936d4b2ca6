"""Pareto frontiers of a results table, by Optuna's own non-dominated sorting (``Study.best_trials``), over the
trials that meet the sweep's constraints (``Experiment.constraints``)."""
from __future__ import annotations

import math

import optuna

from .experiment import meets
from .metrics import DIRECTIONS  # noqa: F401  (re-exported: the default direction of every metric)


def usable(row: dict, metrics: list[str]) -> bool:
    return row.get("status") in ("ok", "diverged") and all(
        isinstance(row.get(m), (int, float)) and math.isfinite(row[m]) for m in metrics)


def front(rows: list[dict], objectives: dict[str, str],
          constraints: dict[str, tuple[str, float]] | None = None) -> tuple[list[int], list[int]]:
    """(indices of the non-dominated feasible rows, indices of rows left out: failed, or NaN in an objective).
    Rows that violate a constraint are neither: they are drawn, but cannot be on the front."""
    metrics = list(objectives)
    keep = [i for i, r in enumerate(rows) if usable(r, metrics)]
    dropped = [i for i in range(len(rows)) if i not in set(keep)]
    candidates = [i for i in keep if meets(rows[i], constraints or {})]
    if not candidates:
        return [], dropped
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["minimize" if objectives[m] == "min" else "maximize" for m in metrics]
    study = optuna.create_study(directions=directions)
    study.add_trials([optuna.trial.create_trial(values=[float(rows[i][m]) for m in metrics], params={},
                                                distributions={}, user_attrs={"row": i}) for i in candidates])
    return sorted(t.user_attrs["row"] for t in study.best_trials), dropped
