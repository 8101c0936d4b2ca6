"""Where does reversible turn into irreversible? DiMUM, swap-label (SalUn) and gradient ascent over unlearning
steps, log-scale from ~10 to a few thousand, and the stop-when-forgotten rule; objectives: attack success after
DiMRA (min) and FID (min)."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="steps_sweep",
    # 100 samples per retain class keeps a trial to a few minutes on 2 CPU cores; the forget class keeps 200
    fixed={"data.forget_class": 3, "attack.steps": (0, 250, 500, 1000), "eval.n_per_class": 100},
    space={
        "unlearn.method": tune.choice(["dimum", "salun", "ga"]),
        "unlearn.steps": tune.lograndint(10, 2000),
        "unlearn.stop_ar": tune.choice([-1.0, 0.1]),  # -1 = the fixed budget; 0.1 = stop once forgotten
    },
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    # DESIGN.md's feasibility rule: forgot, and kept retain accuracy and FID (a destroyed model is not robust)
    constraints={"ar_mu": ("<=", 0.1), "retain_drop": ("<=", 0.05), "fid_excess": ("<=", 0.0)},
    # every constraint is known after unlearning: a trial that fails one is not attacked (it cannot be on the front)
    attack_feasible_only=True,
    num_samples=8,
    search="optuna",
)
