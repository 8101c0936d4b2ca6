"""Base artefacts: the pretrained model and the judge, built once per config and cached in the store.

The cache key is a hash of exactly the config sections that determine the artefact (the forget class is not
one of them), so a sweep of many trials over one dataset trains each once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch.nn as nn

from . import store
from .config import Config, content_hash
from .data import Dataset, load_dataset, retain_stream, stream
from .diffusion import DenoisingLoss, make_unet
from .evaluate import Evaluator
from .judge import make_judge, train_judge
from .loop import finetune


def _data_key(cfg: Config) -> dict:
    d = dataclasses.asdict(cfg.data)
    d.pop("forget_class")
    d.pop("download")
    return d


def model_key(cfg: Config) -> dict:
    return {"data": _data_key(cfg), "model": dataclasses.asdict(cfg.model),
            "schedule": dataclasses.asdict(cfg.schedule), "pretrain": dataclasses.asdict(cfg.pretrain)}


def judge_key(cfg: Config) -> dict:
    return {"data": _data_key(cfg), "judge": dataclasses.asdict(cfg.judge)}


def new_unet(cfg: Config, ds: Dataset) -> nn.Module:
    return make_unet(cfg.model, ds.name, ds.channels, ds.resolution, ds.num_classes)


def pretrain_model(cfg: Config, ds: Dataset, exclude: int | None = None, progress: bool = False,
                   device: str = "cpu"):
    """Train a UNet from scratch on every class, or on all but ``exclude`` (the ``retrain`` gold standard)."""
    p = cfg.pretrain
    model = new_unet(cfg, ds).to(device)
    data = (retain_stream(ds, exclude, p.batch_size, p.seed) if exclude is not None
            else stream(ds.train_x, ds.train_y, p.batch_size, p.seed))
    loss = DenoisingLoss(cfg.schedule, p.label_dropout)
    result = finetune(model, lambda m, b, s: loss(m, *b["data"]), {"data": data}, p.steps, lr=p.lr,
                      grad_clip=p.grad_clip, ema=p.ema, seed=p.seed, progress=progress, desc="pretrain")
    return model, result


def get_judge(cfg: Config, ds: Dataset, root: str, device: str = "cpu"):
    """(judge, test accuracy, judge id)."""
    def build():
        judge, acc = train_judge(ds, cfg.judge, device)
        return judge, {"test_acc": acc}

    judge, extra, _ = store.cached_module(root, "judge", judge_key(cfg), build,
                                          lambda: make_judge(ds.name, ds.channels, ds.num_classes))
    return judge.to(device).eval(), extra["test_acc"], f"judge-{content_hash(judge_key(cfg))}"


def get_base(cfg: Config, ds: Dataset, root: str, progress: bool = False, device: str = "cpu"):
    """(base model, its checkpoint URI, was_cached)."""
    def build():
        model, result = pretrain_model(cfg, ds, progress=progress, device=device)
        return model, {"steps": result.steps_run, "seconds": result.seconds, "final_loss": result.losses[-1]}

    model, _, cached = store.cached_module(root, "base", model_key(cfg), build, lambda: new_unet(cfg, ds))
    uri = store.join(root, "base", f"base-{content_hash(model_key(cfg))}.parquet")
    return model.to(device), uri, cached


@dataclass
class Bases:
    """What every trial starts from."""
    cfg: Config
    ds: Dataset
    model: nn.Module
    model_uri: str
    evaluator: Evaluator
    cached: bool


def prepare(cfg: Config, root: str, progress: bool = False, device: str = "cpu") -> Bases:
    ds = load_dataset(cfg.data)
    judge, acc, judge_id = get_judge(cfg, ds, root, device)
    model, uri, cached = get_base(cfg, ds, root, progress, device)
    return Bases(cfg, ds, model, uri, Evaluator(ds, judge, acc, judge_id, cfg.eval), cached)
