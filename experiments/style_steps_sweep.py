"""The steps sweep on a *feature*: forget the style "inverted" of digits-styles (every digit drawn in 4 styles,
conditioned on (digit, style)). DiMUM (other styles relabelled as the target style) and swap-label (SalUn: the
next style) over unlearning steps and the stop-when-forgotten rule; objectives: the style's recovery under DiMRA
(min) and FID on the retained (digit, style) pairs (min). UA = 1 - ar_mu, IRA and CRA are in every row."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(
    name="style_steps_sweep",
    fixed={"data.dataset": "digits-styles", "data.target": "style=inverted", "pretrain.steps": 3000,
          "attack.steps": (0, 250, 500, 1000), "eval.n_per_class": 25},
    space={
        "unlearn.method": tune.choice(["dimum", "salun"]),
        "unlearn.steps": tune.lograndint(10, 2000),
        "unlearn.stop_ar": tune.choice([-1.0, 0.1]),  # -1 = the fixed budget; 0.1 = stop once forgotten
    },
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    num_samples=8,
    search="optuna",
)
