"""What every trial is compared with, measured on the base model once and cached in the store:

- the utility reference: the base's retain accuracy and FID over several evaluation seeds, and the retrained
  gold standard's FID, which set the feasibility thresholds (``retain_acc >= base - 0.05``,
  ``fid <= base_fid + fid_delta``);
- the control attack: DiMRA on the untouched base, so recovery is told apart from plain finetuning drift.
"""
from __future__ import annotations

import copy
import statistics

from . import store
from .attack import dimra
from .bases import Bases, get_retrain
from .config import Config
from .evaluate import DiffusionGenerator
from .keys import (control_key, eval_key, judge_key, model_key, reference_key, reference_seeds, retrain_seed,
                   utility_key)
from .metrics import FEASIBLE_AR, FEASIBLE_RETAIN_DROP, fid_tolerance
from .target import Target


def reference(cfg: Config, bases: Bases, target: Target, root: str, progress: bool = False,
              device: str = "cpu") -> dict:
    """The base's utility, and how far a model may fall from it and still count as having kept it.

    The base and the retrained gold standard (``get_retrain``, unlearning seed 0) are evaluated on the target's
    retained conditions with ``eval.reference_seeds`` evaluation seeds. ``base_retain_acc`` and ``base_fid`` are
    the base's means; ``fid_delta`` = 2 standard deviations of the base's FID over those seeds (what sampling
    noise alone moves it by) + the retrained model's mean FID above the base's, if any: a model trained
    without the target from scratch is the gold standard, so falling as far as it does is not a loss of utility.
    (A tolerance from sampling noise alone refuses even that gold standard: measured on the embedded default,
    2 std = 0.16 while retraining costs more.) Stable Diffusion presets cannot be retrained here: noise only.
    """
    key = reference_key(cfg, target)
    uri = store.artefact(root, "reference", key, "json")
    if store.exists(uri):
        return store.read_json(uri)["reference"]
    base = utility(cfg, bases, target, root, "base", progress, device)
    accs, fids = base["retain_acc"], base["fid"]
    r = utility(cfg, bases, target, root, "retrain", progress, device) if key["retrain"] else None
    noise, gap = fid_tolerance(fids, r["fid"] if r else None)
    ref = {"base_retain_acc": statistics.mean(accs), "base_fid": statistics.mean(fids), "fid_delta_noise": noise,
           "fid_retrain_gap": gap, "reference_eval_seeds": base["seeds"], "base_fid_by_seed": fids,
           "base_retain_acc_by_seed": accs}
    if r:
        ref.update(retrain_fid=statistics.mean(r["fid"]), retrain_retain_acc=statistics.mean(r["retain_acc"]))
    ref["fid_delta"] = ref["fid_delta_noise"] + ref["fid_retrain_gap"]
    store.write_json(uri, {"reference": ref, "key": key})
    return ref


def utility(cfg: Config, bases: Bases, target: Target, root: str, model: str, progress: bool = False,
            device: str = "cpu") -> dict:
    """Retain accuracy and FID of the base (``model="base"``) or of the retrained gold standard (``"retrain"``,
    unlearning seed 0) over the ``eval.reference_seeds`` evaluation seeds: half of the reference, each cached on
    its own so that a sweep can build the two side by side (raysweep/shared.py)."""
    uri = store.artefact(root, "utility", utility_key(cfg, target, model), "json")
    if store.exists(uri):
        return store.read_json(uri)
    m = bases.model if model == "base" else get_retrain(cfg, bases.ds, target, root, retrain_seed(cfg, 0), progress,
                                                        device)[0]
    seeds = reference_seeds(cfg)
    gen = DiffusionGenerator(m, cfg.eval, cfg.schedule)
    runs = [bases.evaluator.evaluate(gen, target, seed=s) for s in seeds]
    out = {"model": model, "seeds": seeds, "retain_acc": [r["retain_acc"] for r in runs],
           "fid": [r[f"fid_{cfg.eval.fid_extractor}"] for r in runs]}
    store.write_json(uri, out)
    return out


def base_ar(cfg: Config, bases: Bases, target: Target, root: str) -> float:
    """AR of the target on the untouched base, on the trial's evaluation noise: the same for every trial of a sweep,
    so measured once and cached per (base, judge, evaluation settings, target)."""
    key = {"base": model_key(cfg), "judge": judge_key(cfg), "eval": {**eval_key(cfg), "seed": cfg.eval.seed},
           "target": target.spec}
    uri = store.artefact(root, "ar-base", key, "json")
    if store.exists(uri):
        return store.read_json(uri)["ar_base"]
    ar = bases.evaluator.ar(DiffusionGenerator(bases.model, cfg.eval, cfg.schedule), target)
    store.write_json(uri, {"ar_base": ar, "key": key})
    return ar


def feasibility(ar_mu: float, retain_acc: float, fid: float, ref: dict) -> dict:
    """DESIGN.md's rule: forgot (ar_mu <= 0.1) and kept its utility (retain accuracy within 0.05 of the base's,
    FID within fid_delta of the base's). The two margins are reported so a sweep can constrain on them."""
    drop = ref["base_retain_acc"] - retain_acc
    excess = fid - (ref["base_fid"] + ref["fid_delta"])
    reasons = [why for why, bad in (("not forgotten", ar_mu > FEASIBLE_AR),
                                    ("retain accuracy lost", drop > FEASIBLE_RETAIN_DROP),
                                    ("FID above the base's", excess > 0)) if bad]
    return {"retain_drop": drop, "fid_excess": excess, "feasible": 0 if reasons else 1,
            "infeasible_because": ", ".join(reasons)}


def control_curve(cfg: Config, bases: Bases, target: Target, root: str, progress: bool = False) -> dict[str, float]:
    """The trial's attack on the untouched base model: AR(c_u) by attack step. Cached per (base, judge, eval,
    attack, target)."""
    key = control_key(cfg, target)
    uri = store.artefact(root, "control", key, "json")
    if store.exists(uri):
        return store.read_json(uri)["ar"]
    model = copy.deepcopy(bases.model)
    labels = bases.evaluator.judge_labels(DiffusionGenerator(model, cfg.eval, cfg.schedule), target)
    res = dimra(model, cfg, bases.ds, target, bases.evaluator, {"labels": labels}, progress=progress,
                utility=False)
    curve = {str(k): v for k, v in res.ar.items()}
    store.write_json(uri, {"ar": curve, "key": key})
    return curve
