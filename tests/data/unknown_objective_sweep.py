from ray import tune

import raysweep

experiment = raysweep.Experiment(name="bad", space={"unlearn.steps": tune.choice([1, 2])},
                                 objectives={"happiness": "max"})
