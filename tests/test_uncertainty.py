"""Seeds as an axis: replicates grouped by setting, intervals over them, dominance as a probability."""
import math

import numpy as np
import pytest

from raysweep.uncertainty import dominance, dominance_table, replicate_groups, summarize, varying


def _row(steps, seed, ar, fid):
    return {"unlearn.steps": steps, "unlearn.seed": seed, "eval.seed": 1234 + seed, "ar_dimra_max": ar,
            "fid_judge": fid, "ar_dimra/250": ar}


def test_trials_that_differ_only_in_seeds_are_one_setting():
    rows = [_row(10, 0, 0.5, 1.0), _row(100, 0, 0.1, 2.0), _row(10, 1, 0.4, 1.1), _row(100, 1, 0.2, 2.1)]
    assert replicate_groups(rows, [0, 1, 2, 3]) == [[0, 2], [1, 3]]
    groups = [summarize(rows, g, {"ar_dimra_max": "min", "fid_judge": "min"}, {"ar_dimra_max": ("<=", 0.3)})
              for g in replicate_groups(rows, [0, 1, 2, 3])]
    assert groups[0]["n"] == 2 and groups[0]["ar_dimra_max"][0] == pytest.approx(0.45)
    lo, hi = groups[0]["ar_dimra_max"][1:]
    assert 0.4 <= lo <= 0.45 <= hi <= 0.5
    assert [g["feasible"] for g in groups] == [False, True]  # the means meet the constraint, or not
    assert varying(rows, groups) == ["unlearn.steps"]


def test_dominance_probability_on_cases_whose_answer_is_known():
    zeros, ones = np.zeros((3, 2)), np.ones((3, 2))
    assert dominance(zeros, ones, ["min", "min"]) == 1.0 and dominance(ones, zeros, ["min", "min"]) == 0.0
    assert dominance(ones, zeros, ["max", "max"]) == 1.0
    assert dominance(zeros, zeros, ["min", "min"]) == 0.0  # equal is not better
    # one objective, both settings {0, 1}: resampled means 0, 1/2, 1 with 1/4, 1/2, 1/4, so
    # P(mean_a < mean_b) = 1/4 * 3/4 + 1/2 * 1/4 = 5/16
    two = np.array([[0.0], [1.0]])
    assert dominance(two, two, ["min"], resamples=40_000) == pytest.approx(5 / 16, abs=0.01)
    # a trade-off (better in one objective, worse in the other) is never domination
    assert dominance(np.array([[0.0, 1.0]] * 2), np.array([[1.0, 0.0]] * 2), ["min", "min"]) == 0.0


def test_dominance_table_is_over_ordered_pairs():
    rows = [_row(10, s, 0.0, 1.0) for s in range(3)] + [_row(20, s, 0.5, 2.0) for s in range(3)]
    groups = [summarize(rows, g, {"ar_dimra_max": "min", "fid_judge": "min"}, {})
              for g in replicate_groups(rows, list(range(6)))]
    table = dominance_table(rows, groups, {"ar_dimra_max": "min", "fid_judge": "min"})
    assert math.isnan(table[0][0]) and table[0][1] == 1.0 and table[1][0] == 0.0
