"""Base artefacts: the pretrained model and the judge, built once per config and cached in the store.

The cache key is a hash of exactly the config sections that determine the artefact (the forget class is not
one of them), so a sweep of many trials over one dataset trains each once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from . import store
from .config import Config, content_hash
from .data import Dataset, retain_stream, stream
from .datasets import load_dataset, spec
from .diffusion import DenoisingLoss, make_unet
from .evaluate import Evaluator
from .judge import factor_accuracy, make_judge, train_judge
from .keys import SD_PRESETS, data_key, judge_key, model_key, retrain_key, retrain_kind
from .loop import optimize
from .target import Target


def new_unet(cfg: Config, ds: Dataset) -> nn.Module:
    c = ds.conditions
    if cfg.model.preset in SD_PRESETS:  # text-conditioned latent UNet: transformers is imported only here
        from .sd import new_model

        return new_model(cfg.model, c)
    return make_unet(cfg.model, spec(ds.name).preset, ds.channels, ds.resolution, len(c.objects), len(c.styles))


def codec_of(cfg: Config, pixels: Dataset):
    """The VAE codec between pixels and the model's latents (Stable Diffusion), or None for pixel models."""
    if cfg.model.preset not in SD_PRESETS:
        return None
    from .sd import codec_for

    return codec_for(cfg.model, pixels.conditions, pixels.channels)


def training_space(cfg: Config, pixels: Dataset, root: str):
    """(dataset the diffusion model trains on, codec back to pixels or None). Stable Diffusion trains on VAE
    latents of the images, encoded once per (data, VAE) into the store ``root`` and read back by later trials;
    judges and FID always see pixels."""
    codec = codec_of(cfg, pixels)
    if codec is None:
        return pixels, None
    key = {"data": data_key(cfg), "vae": {"preset": cfg.model.preset, "sd_path": cfg.model.sd_path}}
    z, _, _ = store.cached_state(root, "latents", key, lambda: (
        {"train": codec.encode(pixels.train_x), "test": codec.encode(pixels.test_x)}, {}))
    return Dataset(pixels.name, z["train"], pixels.train_y, z["test"], pixels.test_y, pixels.conditions), codec


def pretrain_model(cfg: Config, ds: Dataset, exclude: Target | None = None, progress: bool = False,
                   device: str = "cpu", seed: int | None = None):
    """Train a UNet from scratch (initial weights, batches and noise all from ``seed``, default pretrain.seed) on
    every condition, or on all but the target ``exclude`` (the ``retrain`` gold standard)."""
    p = cfg.pretrain
    seed = p.seed if seed is None else seed
    torch.manual_seed(seed)
    model = new_unet(cfg, ds).to(device)
    data = (retain_stream(ds, exclude, p.batch_size, seed) if exclude is not None
            else stream(ds.train_x, ds.train_y, p.batch_size, seed))
    loss = DenoisingLoss(cfg.schedule, p.label_dropout)
    result = optimize(model, lambda m, b, s: loss(m, *b["data"]), {"data": data}, p.steps, lr=p.lr,
                      grad_clip=p.grad_clip, ema=p.ema, seed=seed, progress=progress, desc="pretrain")
    return model, result


def get_judge(cfg: Config, ds: Dataset, root: str, device: str = "cpu"):
    """(judge, {test_acc[, object_acc, style_acc]} on the real test split, judge id)."""
    def build():
        judge, acc = train_judge(ds, cfg.judge, spec(ds.name).judge, device)
        return judge, {"test_acc": acc, **(factor_accuracy(judge, ds) if ds.conditions.factored else {})}

    c = ds.conditions
    judge, extra, _ = store.cached_module(root, "judge", judge_key(cfg), build,
                                          lambda: make_judge(spec(ds.name).judge, ds.channels, len(c.objects),
                                                             len(c.styles)))
    return judge.to(device).eval(), extra, f"judge-{content_hash(judge_key(cfg))}"


def get_base(cfg: Config, ds: Dataset, root: str, progress: bool = False, device: str = "cpu"):
    """(base model, its checkpoint URI, was_cached)."""
    def build():
        model, result = pretrain_model(cfg, ds, progress=progress, device=device)
        final = result.losses[-1] if result.losses else None  # sd with pretrain.steps=0: its weights as they are
        return model, {"steps": result.steps_run, "seconds": result.seconds, "final_loss": final}

    model, _, cached = store.cached_module(root, "base", model_key(cfg), build, lambda: new_unet(cfg, ds))
    uri = store.artefact(root, "base", model_key(cfg))
    return model.to(device), uri, cached


def get_retrain(cfg: Config, ds: Dataset, target: Target, root: str, seed: int, progress: bool = False,
                device: str = "cpu") -> tuple[nn.Module, dict]:
    """The gold standard: a model trained from scratch on everything but the target, as the base was (same
    pretraining config), from its own ``seed``. Cached per (base config, target, seed). Returns (model, extra)."""
    def build():
        m, r = pretrain_model(cfg, ds, exclude=target, progress=progress, device=device, seed=seed)
        return m, {"steps": r.steps_run, "seconds": r.seconds, "losses": r.losses}

    model, extra, _ = store.cached_module(root, retrain_kind(target), retrain_key(cfg, target, seed), build,
                                          lambda: new_unet(cfg, ds))
    return model.to(device), extra


@dataclass
class Bases:
    """What every trial starts from."""
    cfg: Config
    ds: Dataset  # what the model trains on (pixels, or latents for Stable Diffusion); evaluator.ds is pixels
    model: nn.Module
    model_uri: str
    evaluator: Evaluator
    cached: bool


def load_bases(cfg: Config, root: str, progress: bool = False, device: str = "cpu") -> Bases:
    """The base model and judge of ``cfg``, trained once and then read from the store ``root``."""
    pixels = load_dataset(cfg.data)
    ds, codec = training_space(cfg, pixels, root)
    judge, info, judge_id = get_judge(cfg, pixels, root, device)
    model, uri, cached = get_base(cfg, ds, root, progress, device)
    factors = {f"judge_{k}": v for k, v in info.items() if k != "test_acc"}
    ev = Evaluator(pixels, judge, info["test_acc"], judge_id, cfg.eval, factors, codec, tuple(ds.train_x.shape[1:]))
    return Bases(cfg, ds, model, uri, ev, cached)
