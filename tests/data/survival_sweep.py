"""Tiny trials long enough to be interrupted mid-unlearning (hundreds of steps, a loop state every 20)."""
from ray import tune

import raysweep
from raysweep.experiment import SMOKE

experiment = raysweep.Experiment(
    name="survival",
    fixed={**SMOKE, "unlearn.method": "salun", "unlearn.steps": 120,
          "unlearn.checkpoint_every": 20, "unlearn.batch_size": 16, "attack.batch_size": 16,
          "attack.steps": (0, 20, 40)},
    space={"unlearn.seed": tune.randint(0, 1000)},
    objectives={"ar_dimra_max": "min", "fid_judge": "min"},
    num_samples=3,
)
