"""A grid whose trials end in each possible way: ok, diverged (loss bound 1e-6), error (cifar10 without a root)."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="outcomes",
    fixed={"unlearn.method": "finetune"},
    space={"data.dataset": tune.grid_search(["digits", "cifar10"]),
           "unlearn.max_abs_loss": tune.grid_search([1e4, 1e-6])},
    objectives={"ar_dimra_max": "min", "retain_acc": "max"},
    search="grid",
)
