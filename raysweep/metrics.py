"""The one table of what a trial measures: name, direction, kind, meaning (DESIGN.md §Metrics).

The trial, the results table, Pareto fronts, Tune objectives and constraints, MLflow and the report all read it;
a test fails when a trial reports a number that is not listed here.

kind ``scalar``: one number per trial; ``curve``: a mapping attack step -> number (``{step: value}`` in the final
result, ``name/step`` columns in results.parquet); ``progress``: reported at each attack checkpoint while the trial
runs (what a scheduler such as ASHA can stop trials on), not part of the final result.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    direction: str  # min | max: which way is better, the default for objectives and fronts
    kind: str  # scalar | curve
    meaning: str


M = Metric
METRICS: dict[str, Metric] = {
    # forgetting (AR = share of the target's samples the judge reads as the target; Wilson 95 % bounds beside)
    "ar_base": M("max", "scalar", "AR(c_u) of the base model before unlearning"),
    "ar_base_lo": M("max", "scalar", "Wilson 95% lower bound of ar_base"),
    "ar_base_hi": M("max", "scalar", "Wilson 95% upper bound of ar_base"),
    "ar_mu": M("min", "scalar", "AR(c_u) after unlearning, on evaluation noise no stopping rule saw"),
    "ar_mu_lo": M("min", "scalar", "Wilson 95% lower bound of ar_mu"),
    "ar_mu_hi": M("min", "scalar", "Wilson 95% upper bound of ar_mu"),
    # the attack
    "ar_dimra": M("min", "curve", "AR(c_u) after k DiMRA steps (step 0 = ar_mu)"),
    "ar_dimra_lo": M("min", "curve", "Wilson 95% lower bound of ar_dimra"),
    "ar_dimra_hi": M("min", "curve", "Wilson 95% upper bound of ar_dimra"),
    "ar_dimra_final": M("min", "scalar", "AR(c_u) at the last attack checkpoint"),
    "ar_dimra_max": M("min", "scalar", "max AR(c_u) over attack checkpoints k >= 1 (recovery can peak, then drift)"),
    "ar_dimra_max_lo": M("min", "scalar", "Wilson 95% lower bound of AR at the argmax checkpoint"),
    "ar_dimra_max_hi": M("min", "scalar", "Wilson 95% upper bound of AR at the argmax checkpoint"),
    "recovery": M("min", "scalar", "ar_dimra_max - ar_mu: what the attack brought back"),
    "ar_cl": M("max", "scalar", "share of c_u samples (same noise) the judge reads the same after the attack"),
    "ar_cl_curve": M("max", "curve", "ar_cl at each attack checkpoint"),
    "retain_acc_curve": M("max", "curve", "retain_acc at each attack checkpoint (an attack can repair a model)"),
    "fid_curve": M("min", "curve", "FID (the trial's extractor) at each attack checkpoint"),
    "retain_acc_final": M("max", "scalar", "retain_acc at the last attack checkpoint"),
    "ar_dimra_base": M("min", "curve", "control: the same attack on the base model"),
    "ar_attacked": M("min", "progress", "AR(c_u) at the attack checkpoint just reached"),
    "ar_cl_attacked": M("max", "progress", "ar_cl at the attack checkpoint just reached"),
    "retain_acc_attacked": M("max", "progress", "retain_acc at the attack checkpoint just reached"),
    "fid_attacked": M("min", "progress", "FID at the attack checkpoint just reached"),
    "attack_skipped": M("min", "scalar", "1 when the trial was not attacked: it violated a sweep constraint already"),
    "ar_dimra_base_max": M("min", "scalar", "control: max over k >= 1 of ar_dimra_base"),
    # utility, and the feasibility rule of DESIGN.md (forgot, kept retain accuracy and FID)
    "retain_acc": M("max", "scalar", "mean AR over the retained conditions after unlearning"),
    "fid_judge": M("min", "scalar", "Frechet distance to the real test split's retained images, judge features"),
    "fid_inception": M("min", "scalar", "the same in torchmetrics' Inception features"),
    "base_retain_acc": M("max", "scalar", "retain_acc of the base model, mean over the reference eval seeds"),
    "base_fid": M("min", "scalar", "FID of the base model, mean over the reference eval seeds"),
    "fid_delta": M("min", "scalar", "tolerance on FID: fid_delta_noise + fid_retrain_gap"),
    "fid_delta_noise": M("min", "scalar", "2 std of the base's FID over the reference eval seeds"),
    "fid_retrain_gap": M("min", "scalar", "how far the retrained gold standard's FID is above the base's (>= 0)"),
    "retrain_fid": M("min", "scalar", "FID of the retrained gold standard, mean over the reference eval seeds"),
    "retrain_retain_acc": M("max", "scalar", "retain_acc of the retrained gold standard, same seeds"),
    "retain_drop": M("min", "scalar", "base_retain_acc - retain_acc (feasible: <= 0.05)"),
    "fid_excess": M("min", "scalar", "FID - (base_fid + fid_delta) (feasible: <= 0)"),
    "feasible": M("max", "scalar", "1 when ar_mu <= 0.1, retain_drop <= 0.05 and fid_excess <= 0, else 0"),
    # the unlearning run
    "convergence": M("min", "scalar", "relative change of the unlearning term on a fixed probe batch, last 20%"),
    "convergence_floor": M("min", "scalar", "2 standard errors of convergence from the probe's jitter"),
    "unlearn_steps_run": M("min", "scalar", "unlearning steps actually run (the stop rule may end early)"),
    "unlearn_seconds": M("min", "scalar", "wall seconds of unlearning"),
    "attack_seconds": M("min", "scalar", "wall seconds of the attack"),
    # the attacker's budget (budget.py): meaningful for a trial that forgot (ar_mu below τ = 0.5)
    "steps_to_recovery": M("max", "scalar", "first DiMRA checkpoint with AR(c_u) >= 0.5; the budget when never"),
    "steps_to_recovery_censored": M("max", "scalar", "1 when AR never reached 0.5: the attacker needs more"),
    "recovery_auc": M("min", "scalar", "mean AR(c_u) over the attack (trapezoids over its checkpoints)"),
    "attack_images": M("max", "scalar", "images the attacker finetuned on: last checkpoint x attack batch size"),
    "seconds": M("min", "scalar", "wall seconds of the trial"),
    # two-factor datasets (UnlearnCanvas terms)
    "ua": M("max", "scalar", "1 - ar_mu: target samples not read as the target"),
    "ira": M("max", "scalar", "accuracy on the factor the target names, retained conditions"),
    "cra": M("max", "scalar", "accuracy on the other factor, retained conditions"),
    "object_acc": M("max", "scalar", "object accuracy on the retained conditions"),
    "style_acc": M("max", "scalar", "style accuracy on the retained conditions"),
}

SCALARS = [k for k, m in METRICS.items() if m.kind == "scalar"]
PROGRESS = [k for k, m in METRICS.items() if m.kind == "progress"]
CURVES = [k for k, m in METRICS.items() if m.kind == "curve"]
DIRECTIONS = {k: m.direction for k, m in METRICS.items()}

# How a number was measured: recorded beside it in every result (not metrics; never objectives).
SETTINGS = ("sampler", "sampling_steps", "guidance_scale", "n_samples_forget", "n_samples_per_class", "judge_id",
            "judge_test_acc", "judge_object_acc", "judge_style_acc", "fid_extractor", "fid_reference", "eval_seed",
            "stop_noise_seed", "reference_eval_seeds")

FEASIBLE_AR = 0.1  # forgotten: ar_mu at most this
FEASIBLE_RETAIN_DROP = 0.05  # kept: retain_acc at least the base's minus this


def fid_tolerance(base_fids: list[float], retrain_fids: list[float] | None = None) -> tuple[float, float]:
    """δ's two parts (kept: FID ≤ the base's mean + δ): 2 std of the base's FID over the reference's evaluation seeds,
    and how far the retrained gold standard's mean FID lies above the base's (0 without one, or when below)."""
    noise = 2 * statistics.stdev(base_fids) if len(base_fids) > 1 else 0.0
    gap = max(0.0, statistics.mean(retrain_fids) - statistics.mean(base_fids)) if retrain_fids else 0.0
    return noise, gap


def check(name: str, what: str = "metric") -> str:
    """``name`` if it is a scalar metric trials report, else a one-line ConfigError listing them."""
    from .config import ConfigError

    if name not in METRICS or METRICS[name].kind != "scalar":
        raise ConfigError(f"{what} {name!r} is not a metric trials report; choose from {sorted(SCALARS)}")
    return name
