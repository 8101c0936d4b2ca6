"""The attacker's budget on curves whose answer is known by hand."""
import math

import pytest

from raysweep.budget import budget_metrics, recovery_auc, steps_to_recovery


def test_steps_to_recovery_is_the_first_checkpoint_at_tau_and_censored_when_never_reached():
    curve = {"0": 0.0, "250": 0.2, "500": 0.6, "1000": 0.9}
    assert steps_to_recovery(curve) == (500, False)
    assert steps_to_recovery(curve, tau=0.9) == (1000, False)
    assert steps_to_recovery(curve, tau=0.95) == (1000, True)  # beyond the budget
    assert steps_to_recovery({"0": 0.7, "100": 0.1}) == (100, True)  # step 0 (before the attack) does not count
    assert steps_to_recovery({"0": 0.0}) == (0, True)


def test_recovery_auc_is_the_mean_ar_over_the_budget():
    # trapezoids: 250*(0+0.2)/2 + 250*(0.2+0.6)/2 + 500*(0.6+0.9)/2 = 25 + 100 + 375 = 500 over 1000 steps
    assert recovery_auc({"0": 0.0, "250": 0.2, "500": 0.6, "1000": 0.9}) == pytest.approx(0.5)
    assert recovery_auc({"0": 1.0, "10": 1.0}) == 1.0 and recovery_auc({0: 0.0, 5: 0.0, 20: 0.0}) == 0.0
    assert math.isnan(recovery_auc({"0": 0.3}))


def test_budget_metrics_count_the_attackers_images():
    m = budget_metrics({"0": 0.0, "250": 0.1, "500": 0.7}, batch_size=64, seconds=12.5)
    assert m == {"steps_to_recovery": 500, "steps_to_recovery_censored": 0,
                 "recovery_auc": pytest.approx((250 * 0.05 + 250 * 0.4) / 500), "attack_images": 32000,
                 "attack_seconds": 12.5}
