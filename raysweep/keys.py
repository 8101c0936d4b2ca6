"""What identifies each artefact in the store: the config fields its cache key holds (``store.artefact`` hashes
the key). Config-only and light: the sweep driver computes where the shared artefacts live (raysweep/shared.py)
without loading the model stack that builds them (bases.py, controls.py)."""
from __future__ import annotations

import dataclasses

from .config import Config
from .datasets import conditions
from .seeds import derive
from .target import Target

SD_PRESETS = ("sd", "sd-tiny")


def data_key(cfg: Config) -> dict:
    d = dataclasses.asdict(cfg.data)
    for k in ("forget_class", "download", "target"):
        d.pop(k)  # what does not change the data a base is trained on (keeps earlier cache keys valid)
    styles = conditions(cfg.data).styles
    if styles:  # the styles in use, spelled out: "" and the default's names are one dataset
        d["styles"] = ",".join(styles)
    else:
        d.pop("styles")
    return d


def model_key(cfg: Config) -> dict:
    # "init": the initial weights are drawn from pretrain.seed (before, from whatever the process had drawn)
    return {"data": data_key(cfg), "model": dataclasses.asdict(cfg.model),
            "schedule": dataclasses.asdict(cfg.schedule), "pretrain": dataclasses.asdict(cfg.pretrain),
            "init": "seeded"}


def judge_key(cfg: Config) -> dict:
    return {"data": data_key(cfg), "judge": dataclasses.asdict(cfg.judge)}


def retrain_seed(cfg: Config, unlearn_seed: int) -> int:
    """Retrain's own training seed: one per (base seed, unlearning seed), never the base's."""
    return cfg.pretrain.seed * 1_000_003 + derive(unlearn_seed, "retrain")


def retrain_kind(target: Target) -> str:
    return f"retrain-{target.slug}"


def retrain_key(cfg: Config, target: Target, seed: int) -> dict:
    return {**model_key(cfg), "exclude": target.spec, "retrain_seed": seed}


def eval_key(cfg: Config) -> dict:
    e = dataclasses.asdict(cfg.eval)
    e.pop("seed")  # the reference covers several seeds of its own; the trial's eval seed does not change it
    e.pop("batch_size")
    return e


def retrained_reference(cfg: Config) -> bool:
    """Whether the utility reference includes the retrained model (Stable Diffusion presets cannot be retrained)."""
    return cfg.eval.fid_retrain_gap and cfg.model.preset not in SD_PRESETS


def reference_seeds(cfg: Config) -> list[int]:
    """The evaluation seeds of the base's utility reference: the base's own (from pretrain.seed), never a trial's
    eval.seed. The reference is cached without eval.seed, so seeds drawn from it made the reference whichever
    trial built it first chose (on the embedded default, base FID 1.91–2.02 and δ 0.07–0.23 between runs of 5
    seeds: experiments/reference_noise.py)."""
    first = derive(cfg.pretrain.seed * 1_000_003, "reference")
    return [first + i for i in range(cfg.eval.reference_seeds)]


def reference_key(cfg: Config, target: Target) -> dict:
    return {"base": model_key(cfg), "judge": judge_key(cfg), "eval": eval_key(cfg), "target": target.spec,
            "retrain": retrained_reference(cfg), "seeds": reference_seeds(cfg)}


def utility_key(cfg: Config, target: Target, model: str) -> dict:
    return {**reference_key(cfg, target), "model": model}


def control_key(cfg: Config, target: Target) -> dict:
    return {"base": model_key(cfg), "judge": judge_key(cfg), "eval": dataclasses.asdict(cfg.eval),
            "attack": {k: v for k, v in dataclasses.asdict(cfg.attack).items()
                       if k != "control" and not (k == "optimizer" and v == "adam")},  # earlier keys stay valid
            "forget": target.spec}
