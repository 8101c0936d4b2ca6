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
    """(indices of the non-dominated feasible rows, indices of rows left out: failed, or NaN in an objective of a
    row that meets the constraints). A finished row that violates a constraint is neither, whatever its objectives
    (e.g. a trial not attacked because it already violated one): drawn where they are finite, never on the front."""
    metrics = list(objectives)
    finished = {i for i, r in enumerate(rows) if r.get("status") in ("ok", "diverged")}
    feasible = {i for i in finished if meets(rows[i], constraints or {})}
    dropped = [i for i in range(len(rows)) if i not in finished or i in feasible and not usable(rows[i], metrics)]
    candidates = [i for i in sorted(feasible) if usable(rows[i], metrics)]
    if not candidates:
        return [], dropped
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["minimize" if objectives[m] == "min" else "maximize" for m in metrics]
    study = optuna.create_study(directions=directions)
    study.add_trials([optuna.trial.create_trial(values=[float(rows[i][m]) for m in metrics], params={},
                                                distributions={}, user_attrs={"row": i}) for i in candidates])
    return sorted(t.user_attrs["row"] for t in study.best_trials), dropped
