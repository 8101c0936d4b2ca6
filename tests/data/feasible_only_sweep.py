"""Two tiny trials, one that meets the sweep's constraint after unlearning and one that does not: only the first is
attacked (Experiment.attack_feasible_only). SMOKE's settings are fixed here, not by --smoke (which attacks all)."""
from ray import tune

import raysweep
from raysweep.experiment import SMOKE

experiment = raysweep.Experiment(
    name="feasible_only",
    fixed={**SMOKE, "unlearn.method": "finetune"},
    space={"unlearn.steps": tune.choice([2, 8])},
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    constraints={"unlearn_steps_run": ("<=", 5)},
    attack_feasible_only=True,
    num_samples=2,
)
