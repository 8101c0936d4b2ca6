"""The fair comparison's tuning sweep: one method's own knobs (steps up to 3,000, lr and its weights, in the
original's units) searched by Optuna's constrained NSGA-II for the lowest attack success among *feasible*
settings (forgot, kept retain accuracy and FID). ``experiments/fair_comparison.py`` runs it for every method;
alone it tunes the method named by FAIR_METHOD (default dimum):

    FAIR_METHOD=salun python -m raysweep.tune experiments/fair_tune.py --report
"""
import os

from ray import tune

import raysweep

# Every trial of the study: 8x8 digits, forget class 3, batches of 32, 10 DDIM steps; 200 samples of the forgotten
# class (Wilson half-width <= 0.07 at any AR; <= 0.02 near 0) and 100 per retained class. Controls run apart.
STUDY = {"data.forget_class": 3, "unlearn.batch_size": 32, "attack.batch_size": 32, "eval.steps": 10,
         "eval.n_forget": 200, "eval.n_per_class": 100, "attack.control": False}
TUNING_SEED = 100  # unlearning, attack and evaluation seed of the tuning trials: none of the confirmation's
FEASIBLE = {"ar_mu": ("<=", 0.1), "retain_drop": ("<=", 0.05), "fid_excess": ("<=", 0.0)}  # = result["feasible"]

STEPS = tune.lograndint(20, 3000)
LR = tune.loguniform(1e-5, 1e-3)
SPACES = {  # each method's own knobs, in its original's units (see raysweep/methods/)
    "ga": {"ga.alpha": tune.loguniform(1e-4, 1e-1)},
    "salun": {"salun.alpha": tune.loguniform(1e-4, 1e-1)},
    "sa": {"sa.lam": tune.loguniform(1e-1, 1e3)},
    "esd": {"esd.eta": tune.uniform(0.5, 10.0)},
    "erasediff": {"erasediff.lam": tune.loguniform(1e-2, 1.0)},
    "dimum": {"dimum.beta": tune.loguniform(0.1, 10.0), "dimum.alternative": tune.choice(["retain", "generated",
                                                                                         "noise"])},
}


def tuning(method: str, num_samples: int = 12) -> raysweep.Experiment:
    return raysweep.Experiment(
        name=f"fair-tune-{method}",
        fixed={**STUDY, "unlearn.method": method, "unlearn.seed": TUNING_SEED, "attack.seed": TUNING_SEED,
              "eval.seed": TUNING_SEED, "attack.steps": (0, 500, 1000), "attack.lr": 1e-4},
        space={"unlearn.steps": STEPS, "unlearn.lr": LR, **SPACES[method]},
        objectives={"ar_dimra_max": "min", "fid_judge": "min"},
        constraints=FEASIBLE,
        num_samples=num_samples,
        cpus_per_trial=1,  # two trials at once on two cores, one thread each
    )


experiment = tuning(os.environ.get("FAIR_METHOD", "dimum"))
