"""Two smoke trials and ASHA on a metric that ranks them for sure: the longer unlearning run is pruned."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="pruned",
    fixed={"unlearn.method": "finetune"},
    space={"unlearn.steps": tune.grid_search([5, 20])},
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    search="grid",
    prune={"metric": "unlearn_steps_run", "mode": "min", "grace_period": 2, "reduction_factor": 2},
)
