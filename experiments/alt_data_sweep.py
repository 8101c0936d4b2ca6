"""Which alternative data D'_u should DiMUM memorize? Every choice x a few unlearning budgets, exhaustively."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="alt_data_sweep",
    fixed={"unlearn.method": "dimum", "attack.steps": (0, 250, 500, 1000)},
    space={"dimum.alternative": tune.grid_search(["retain", "class:0", "generated", "noise"]),
           "unlearn.steps": tune.grid_search([100, 1000])},
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    search="grid",
)
