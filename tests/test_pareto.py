import math
import random

import pytest

from raysweep.pareto import front


def brute_force(rows, objectives):
    sign = {m: (1 if d == "min" else -1) for m, d in objectives.items()}
    ok = [i for i, r in enumerate(rows) if r["status"] in ("ok", "diverged")
          and all(math.isfinite(r[m]) for m in objectives)]

    def dominates(a, b):
        va = [sign[m] * rows[a][m] for m in objectives]
        vb = [sign[m] * rows[b][m] for m in objectives]
        return all(x <= y for x, y in zip(va, vb)) and any(x < y for x, y in zip(va, vb))

    return sorted(i for i in ok if not any(dominates(j, i) for j in ok if j != i))


@pytest.mark.parametrize("seed", range(12))
def test_front_equals_brute_force(seed):
    rng = random.Random(seed)
    metrics = ["a", "b", "c"][: rng.choice([2, 3])]
    objectives = {m: rng.choice(["min", "max"]) for m in metrics}
    rows = []
    for _ in range(rng.randint(5, 40)):
        row = {m: float(rng.randint(0, 6)) for m in metrics}  # small integers: many ties
        row["status"] = rng.choice(["ok", "ok", "ok", "diverged", "error"])
        if rng.random() < 0.15:
            row[rng.choice(metrics)] = math.nan
        rows.append(row)
    got, dropped = front(rows, objectives)
    assert got == brute_force(rows, objectives)
    assert set(dropped) == {i for i, r in enumerate(rows) if r["status"] == "error"
                            or any(math.isnan(r[m]) for m in metrics)}
    assert not set(got) & set(dropped)


def test_front_of_a_known_table():
    rows = [{"x": 1.0, "y": 5.0, "status": "ok"}, {"x": 2.0, "y": 2.0, "status": "ok"},
            {"x": 3.0, "y": 3.0, "status": "ok"}, {"x": 0.5, "y": 9.0, "status": "error"},
            {"x": 2.0, "y": 2.0, "status": "diverged"}]
    assert front(rows, {"x": "min", "y": "min"}) == ([0, 1, 4], [3])
    assert front(rows, {"x": "max", "y": "max"}) == ([0, 2], [3])  # (1, 5) and (3, 3) trade off


def test_a_row_that_violates_a_constraint_is_infeasible_not_left_out_whatever_its_objectives():
    nan = math.nan
    rows = [{"x": 1.0, "y": nan, "c": 0.0, "status": "ok"},  # feasible, an objective NaN: left out
            {"x": 2.0, "y": nan, "c": 5.0, "status": "ok"},  # violates c (e.g. not attacked): infeasible
            {"x": 3.0, "y": 3.0, "c": 0.0, "status": "ok"},
            {"x": 4.0, "y": 1.0, "c": 5.0, "status": "error"}]
    assert front(rows, {"x": "min", "y": "min"}, {"c": ("<=", 1.0)}) == ([2], [0, 3])
