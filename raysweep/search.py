"""Optuna inside Ray Tune, with feasibility constraints (imported only when a sweep starts: it pulls in Ray)."""
from __future__ import annotations

import os

import optuna
from ray.tune.search.optuna import OptunaSearch

from .experiment import violations

MOVED_TO: str | None = None  # set while a moved sweep is restored (tune._restored_here)


class SweepStorage(optuna.storages.RDBStorage):
    """The sweep's Optuna study in SQLite. Tune pickles the searcher, and this storage with it, at the path it was
    made with; unpickled while ``MOVED_TO`` is set it opens the study there instead, where a moved or copied sweep
    has it now (unpickling the plain storage would open, or create, a database at the old path)."""

    def __setstate__(self, state: dict) -> None:
        if MOVED_TO and state["url"].startswith("sqlite:///"):
            state = {**state, "url": "sqlite:///" + os.path.join(MOVED_TO, os.path.basename(state["url"]))}
        super().__setstate__(state)


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that gives a finished trial its constraint values (Optuna's ``Trial.set_constraint``, one per
    constrained metric, <= 0 = holds) before ``tell``: NSGA-II then ranks by constrained domination. Ray's
    OptunaSearch passes only the objectives. A trial with no result (failed) violates every constraint; one that was
    not attacked (``Experiment.attack_feasible_only``) is told as pruned."""

    def __init__(self, *args, constraints: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._constraints = constraints or {}

    def on_trial_complete(self, trial_id, result=None, error=False):
        ot = self._ot_trials.get(trial_id)
        fresh = ot is not None and trial_id not in self._completed_trials
        if fresh and self._closed(ot):
            return self._record_resumed(trial_id, ot, result, error)
        if fresh and self._constraints:
            for name, value in self._values(result).items():
                ot.set_constraint(name, value)
        if fresh and _not_attacked(result):
            # not attacked (it violated a constraint already): no robustness objective, so no place in NSGA-II's
            # populations, which hold finished trials only; its constraint values stay on it for the record
            self._ot_study.tell(ot, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def _values(self, result: dict | None) -> dict[str, float]:
        return dict(zip(self._constraints, violations(result or {}, self._constraints)))

    def _closed(self, ot) -> bool:
        """The Optuna trial was closed (FAIL) when an interrupt stopped the sweep; Tune resumed it since."""
        return self._ot_study._storage.get_trial(ot._trial_id).state.is_finished()

    def _record_resumed(self, trial_id, ot, result, error) -> None:
        """The resumed trial's result, as a new COMPLETE trial with the interrupted one's parameters (a finished
        Optuna trial cannot be told again). Constraint values go where the constrained sampler reads them."""
        old = self._ot_study._storage.get_trial(ot._trial_id)
        values = [result.get(m) for m in self.metric] if result and isinstance(self.metric, list) else \
            (result or {}).get(self.metric) if result else None
        if error or values is None or (isinstance(values, list) and None in values):
            self._completed_trials.add(trial_id)
            return
        told = {"state": optuna.trial.TrialState.PRUNED} if _not_attacked(result) else \
            {"values": values} if isinstance(values, list) else {"value": values}
        self._ot_study.add_trial(optuna.trial.create_trial(
            params=old.params, distributions=old.distributions, user_attrs={"resumed_from_trial": old.number},
            constraints=self._values(result) if self._constraints else None, **told))
        self._completed_trials.add(trial_id)


def _not_attacked(result: dict | None) -> bool:
    """A trial ``Experiment.attack_feasible_only`` left unattacked: no robustness objective to tell Optuna."""
    return bool(result) and result.get("attack_skipped") == 1
