"""Optuna inside Ray Tune, with feasibility constraints (imported only when a sweep starts: it pulls in Ray)."""
from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from .experiment import violations


def constraint_values(trial) -> list[float]:
    """Optuna's constraints_func: what ``ConstrainedOptunaSearch`` stored with the trial (<= 0 = holds)."""
    return trial.user_attrs.get("constraints", [1.0])


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that hands a finished trial's constraint values to Optuna before ``tell``: the sampler's
    ``constraints_func`` reads them from the trial (Ray's OptunaSearch passes only the objectives). A trial with
    no result (failed) violates every constraint."""

    def __init__(self, *args, constraints: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._constraints = constraints or {}

    def on_trial_complete(self, trial_id, result=None, error=False):
        if self._constraints and trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._ot_trials[trial_id].set_user_attr("constraints", violations(result or {}, self._constraints))
        super().on_trial_complete(trial_id, result, error)
