"""A constraint on a metric trials do not report."""
from ray import tune

import raysweep

experiment = raysweep.Experiment(name="bad", space={"unlearn.steps": tune.choice([5, 10])},
                                 objectives={"ar_dimra_max": "min"}, constraints={"happiness": (">=", 0.5)})
