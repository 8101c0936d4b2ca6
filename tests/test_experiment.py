"""An experiment file's resources are checked before anything starts."""
import math

import pytest

from raysweep.config import ConfigError
from raysweep.experiment import Experiment


def _exp(**kw):
    return Experiment("x", {"unlearn.steps": 10}, {"ar_dimra_max": "min"}, **kw)


def test_gpus_per_worker_is_a_fraction_up_to_one_or_a_whole_number():
    for g in (0, 0.25, 0.5, 1, 2, 4.0):  # four trials packed on a GPU ... whole GPUs per worker
        assert _exp(gpus_per_worker=g).validate().gpus_per_worker == g
    for g in (1.5, -0.25, math.nan, math.inf):
        with pytest.raises(ConfigError, match="gpus_per_worker must be a fraction in \\[0, 1\\]"):
            _exp(gpus_per_worker=g).validate()
    with pytest.raises(ConfigError, match="workers must be >= 0"):
        _exp(workers=-1).validate()


def test_a_trials_cpus_are_shared_by_its_data_parallel_workers():
    from raysweep.tune import WAITING_CPU, cpus_per_worker, threads_per_worker

    for w, cpus in ((1, 2), (2, 2), (4, 2), (2, 8)):
        e = _exp(workers=w, cpus_per_trial=cpus).validate()
        assert WAITING_CPU + w * cpus_per_worker(e) == pytest.approx(cpus)  # Ray reserves what the trial asked for
        assert threads_per_worker(e) == max(1, cpus // w)


def test_only_feasible_trials_are_attacked_when_asked_and_that_needs_constraints():
    from raysweep.experiment import violated_before_attack

    with pytest.raises(ConfigError, match="attack_feasible_only needs constraints"):
        _exp(attack_feasible_only=True).validate()
    cons = _exp(attack_feasible_only=True, constraints={"ar_mu": ("<=", 0.1), "retain_acc": (">=", 0.9),
                                                        "ar_dimra_max": ("<=", 0.5)}).validate().constraints
    # after unlearning: the attack's metric is not measured yet, so not judged; a measured NaN violates
    assert violated_before_attack({"ar_mu": 0.05, "retain_acc": 0.95}, cons) == []
    assert violated_before_attack({"ar_mu": 0.3, "retain_acc": 0.95}, cons) == ["ar_mu <= 0.1"]
    assert violated_before_attack({"ar_mu": 0.3, "retain_acc": math.nan}, cons) == ["ar_mu <= 0.1",
                                                                                     "retain_acc >= 0.9"]
