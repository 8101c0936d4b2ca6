"""A constraint that is not (op, value)."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(name="bad", space={"unlearn.steps": tune.choice([5, 10])},
                                 objectives={"ar_dimra_max": "min"}, constraints={"retain_acc": ("about", 0.9)})
