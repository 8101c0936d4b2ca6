"""DiMRA's strength (lr, auxiliary data) against fixed unlearned models: swap-label and DiMUM at 1,000 steps."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="attack_strength",
    fixed={"unlearn.steps": 1000, "attack.steps": (0, 250, 500, 1000, 2000)},
    space={"unlearn.method": tune.grid_search(["salun", "dimum"]),
           "attack.lr": tune.grid_search([1e-4, 3e-4, 1e-3]),
           "attack.aux": tune.grid_search(["test", "retain", "generated"])},
    objectives={"ar_dimra_max": "min", "retain_acc": "max"},
    search="grid",
)
