"""Pareto frontiers of a results table, by Optuna's own non-dominated sorting (``Study.best_trials``)."""
from __future__ import annotations

import math

import optuna

# Default direction of each metric a trial reports (anything else must be given as name:min|max).
DIRECTIONS = {"ar_base": "min", "ar_mu": "min", "ar_dimra_final": "min", "ar_dimra_max": "min", "ar_cl": "max",
              "retain_acc": "max", "fid_judge": "min", "fid_inception": "min", "convergence": "min",
              "unlearn_steps_run": "min", "unlearn_seconds": "min", "attack_seconds": "min", "seconds": "min"}


def usable(row: dict, metrics: list[str]) -> bool:
    return row.get("status") in ("ok", "diverged") and all(
        isinstance(row.get(m), (int, float)) and math.isfinite(row[m]) for m in metrics)


def front(rows: list[dict], objectives: dict[str, str]) -> tuple[list[int], list[int]]:
    """(indices of the non-dominated rows, indices of rows left out: failed, or NaN in an objective)."""
    metrics = list(objectives)
    keep = [i for i, r in enumerate(rows) if usable(r, metrics)]
    dropped = [i for i in range(len(rows)) if i not in set(keep)]
    if not keep:
        return [], dropped
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["minimize" if objectives[m] == "min" else "maximize" for m in metrics]
    study = optuna.create_study(directions=directions)
    dists = {}
    study.add_trials([optuna.trial.create_trial(values=[float(rows[i][m]) for m in metrics], params={},
                                                distributions=dists, user_attrs={"row": i}) for i in keep])
    return sorted(t.user_attrs["row"] for t in study.best_trials), dropped
