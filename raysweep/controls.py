"""What every trial is compared with, measured on the base model once and cached in the store:

- the utility reference: the base's retain accuracy and FID over several evaluation seeds, and the retrained
  gold standard's FID, which set the feasibility thresholds (``retain_acc >= base - 0.05``,
  ``fid <= base_fid + fid_delta``);
- the control attack: DiMRA on the untouched base, so recovery is told apart from plain finetuning drift.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics

from . import store
from .attack import dimra
from .bases import SD_PRESETS, Bases, get_retrain, judge_key, model_key, retrain_seed
from .config import Config, content_hash
from .evaluate import DiffusionGenerator
from .metrics import FEASIBLE_AR, FEASIBLE_RETAIN_DROP
from .seeds import derive
from .target import Target


def _eval_key(cfg: Config) -> dict:
    e = dataclasses.asdict(cfg.eval)
    e.pop("seed")  # the reference covers several seeds of its own; the trial's eval seed does not change it
    e.pop("batch_size")
    return e


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
    with_retrain = cfg.eval.fid_retrain_gap and cfg.model.preset not in SD_PRESETS
    key = {"base": model_key(cfg), "judge": judge_key(cfg), "eval": _eval_key(cfg), "target": target.spec,
           "retrain": with_retrain}
    uri = store.join(root, "base", f"reference-{content_hash(key)}.json")
    if store.exists(uri):
        return store.read_json(uri)["reference"]
    seeds = [derive(cfg.eval.seed, "reference") + i for i in range(cfg.eval.reference_seeds)]
    fid_key = f"fid_{cfg.eval.fid_extractor}"

    def over_seeds(model) -> tuple[list[float], list[float]]:
        gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)
        runs = [bases.evaluator.evaluate(gen, target, seed=s) for s in seeds]
        return [r["retain_acc"] for r in runs], [r[fid_key] for r in runs]

    accs, fids = over_seeds(bases.model)
    noise = 2 * statistics.stdev(fids) if len(fids) > 1 else 0.0
    ref = {"base_retain_acc": statistics.mean(accs), "base_fid": statistics.mean(fids), "fid_delta_noise": noise,
           "fid_retrain_gap": 0.0, "reference_eval_seeds": seeds, "base_fid_by_seed": fids,
           "base_retain_acc_by_seed": accs}
    if with_retrain:
        retrain, _ = get_retrain(cfg, bases.ds, target, root, retrain_seed(cfg, 0), progress, device)
        r_accs, r_fids = over_seeds(retrain)
        ref.update(retrain_fid=statistics.mean(r_fids), retrain_retain_acc=statistics.mean(r_accs),
                   fid_retrain_gap=max(0.0, statistics.mean(r_fids) - ref["base_fid"]))
    ref["fid_delta"] = ref["fid_delta_noise"] + ref["fid_retrain_gap"]
    store.write_json(uri, {"reference": ref, "key": key})
    return ref


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
    key = {"base": model_key(cfg), "judge": judge_key(cfg), "eval": dataclasses.asdict(cfg.eval),
           "attack": {k: v for k, v in dataclasses.asdict(cfg.attack).items() if k != "control"},
           "forget": target.spec}
    uri = store.join(root, "base", f"control-{content_hash(key)}.json")
    if store.exists(uri):
        return store.read_json(uri)["ar"]
    model = copy.deepcopy(bases.model)
    labels = bases.evaluator.judge_labels(DiffusionGenerator(model, cfg.eval, cfg.schedule), target)
    res = dimra(model, cfg, bases.ds, target, bases.evaluator, {"labels": labels}, progress=progress,
                utility=False)
    curve = {str(k): v for k, v in res.ar.items()}
    store.write_json(uri, {"ar": curve, "key": key})
    return curve
