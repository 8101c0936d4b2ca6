"""DiMUM's memorization weight beta against robustness and utility."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="beta_sweep",
    fixed={"unlearn.method": "dimum", "unlearn.steps": 1000, "attack.steps": (0, 250, 500, 1000)},
    space={"dimum.beta": tune.loguniform(0.1, 10.0)},
    objectives={"ar_dimra_max": "min", "retain_acc": "max"},
    num_samples=8,
)
