from ray import tune

import raysweep

experiment = raysweep.Experiment(name="bad", space={"unlearn.stepz": tune.choice([1, 2])},
                                 objectives={"ar_dimra_max": "min"})
