"""What the attack cost: from a trial's AR-vs-DiMRA-steps curve, how many steps the attacker needed to bring the
class back (``steps_to_recovery`` at a threshold τ, censored at the budget when never reached), how much of the
budget the class spent recovered (``recovery_auc``), and the attacker's compute. Pure functions of the recorded
curve, so a report can recompute them at another τ without rerunning anything."""
from __future__ import annotations

TAU = 0.5  # the class counts as back when half of its samples are read as it again


def steps_to_recovery(curve: dict, tau: float = TAU) -> tuple[int, bool]:
    """(first attack checkpoint with AR >= tau, censored). Never reached: (the last checkpoint, True) — the
    attacker needs more than the budget, by an unknown amount (a right-censored time, not a value)."""
    points = sorted((int(k), v) for k, v in curve.items() if int(k) > 0)
    if not points:
        return 0, True
    return next(((k, False) for k, v in points if v >= tau), (points[-1][0], True))


def recovery_auc(curve: dict) -> float:
    """Mean AR(c_u) over the attack: the trapezoid area under AR vs steps from step 0 to the last checkpoint,
    divided by that budget. 0 = never recovered at any checkpoint, 1 = fully back from the start."""
    points = sorted((int(k), float(v)) for k, v in curve.items())
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return float("nan")
    area = sum((k1 - k0) * (v0 + v1) / 2 for (k0, v0), (k1, v1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])


def budget_metrics(curve: dict, batch_size: int, seconds: float, tau: float = TAU) -> dict:
    """The trial's budget columns (METRICS in metrics.py)."""
    steps, censored = steps_to_recovery(curve, tau)
    last = max((int(k) for k in curve), default=0)
    return {"steps_to_recovery": steps, "steps_to_recovery_censored": int(censored),
            "recovery_auc": recovery_auc(curve), "attack_images": last * batch_size, "attack_seconds": seconds}
