"""Every method x 3 seeds at one unlearning budget: the table the paper's claims are read from."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="methods_table",
    fixed={"unlearn.steps": 1000, "attack.steps": (0, 250, 500, 1000, 2000)},
    space={"unlearn.method": tune.grid_search(["finetune", "ga", "salun", "sa", "esd", "erasediff", "dimum",
                                               "retrain"]),
           "unlearn.seed": tune.grid_search([0, 1, 2])},
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    search="grid",
)
