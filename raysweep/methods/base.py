"""The method contract (NVlabs/edm's loss-class shape) and the context a method runs in.

A method is a loss class run by the one finetune loop (``raysweep.loop.optimize``). Its hooks, all declared here
with their defaults:

- ``prepare(model) -> streams``: one-time work on the original weights (a mask, a Fisher, samples of the original
  model) and the named streams the loss consumes. Seeded: a resumed trial prepares the same way.
- ``unlearning_term(model, batches) -> tensor``: the term that does the unlearning, as it enters the objective
  (with its sign: gradient ascent's is ``-L(D_u)``; finetune, which forgets by neglect, has the retain loss).
  The loop logs it as ``forget``; ``convergence`` reads it on a fixed probe batch.
- ``__call__(model, batches, step) -> (loss, logs)``: the objective minimised at this step.
- ``after_clip(params)``: runs between gradient clipping and the optimiser step (SalUn's mask).

A method's settings are its config section (``section``), read once into ``self.s``. Losses here are per-pixel
means unless a method says otherwise; ``DenoisingLoss(pixel_sum=True)`` gives the SA / SalUn code's units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

from .. import store
from ..config import Config
from ..data import Dataset, forget_stream, retain_stream
from ..diffusion import DenoisingLoss
from ..evaluate import DiffusionGenerator, class_batch
from ..seeds import derive
from ..target import Target


@dataclass
class Context:
    cfg: Config
    ds: Dataset
    target: Target  # what is forgotten
    original: nn.Module  # frozen copy of the model before unlearning
    device: str = "cpu"
    root: str | None = None  # the store: samples of the original model are cached there
    original_key: str = ""  # identifies the original model in cache keys (its checkpoint URI)

    def seed(self, name: str) -> int:
        return derive(self.cfg.unlearn.seed, name)

    def retain_stream(self, batch_size: int | None = None) -> Iterator:
        return retain_stream(self.ds, self.target, batch_size or self.cfg.unlearn.batch_size, self.seed("retain"))

    def forget_stream(self, batch_size: int | None = None) -> Iterator:
        return forget_stream(self.ds, self.target, batch_size or self.cfg.unlearn.batch_size, self.seed("forget"))

    def sample_original(self, classes: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per class from the original model (the evaluation's sampler, noise disjoint from the
        evaluation's), cached in the store per (original, sampler, classes, n, seed)."""
        seed = self.cfg.eval.seed + self.seed("original_samples")

        def draw() -> tuple[dict, dict]:
            gen = DiffusionGenerator(self.original, self.cfg.eval, self.cfg.schedule)
            labels, noise = class_batch(seed, classes, n, tuple(self.ds.train_x.shape[1:]))
            return {"images": gen(labels, noise), "labels": labels}, {}

        if self.root is None or not self.original_key:
            state, _ = draw()
        else:
            e = self.cfg.eval
            key = {"original": self.original_key, "sampler": [e.sampler, e.steps, e.guidance], "classes": classes,
                   "n": n, "seed": seed}
            state, _, _ = store.cached_state(self.root, "samples", key, draw)
        return state["images"], state["labels"]


class Method:
    """Base of every unlearning method; the hooks' defaults."""
    section: str | None = None  # the config section holding this method's settings

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.s: Any = getattr(ctx.cfg, self.section) if self.section else None
        self.denoise = DenoisingLoss(ctx.cfg.schedule)
        self.denoise_retain = DenoisingLoss(ctx.cfg.schedule, ctx.cfg.unlearn.label_dropout)

    def prepare(self, model: nn.Module) -> dict[str, Iterator]:
        return {"retain": self.ctx.retain_stream()}

    def unlearning_term(self, model: nn.Module, batches: dict) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, batches: dict, step: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def after_clip(self, params: list[torch.Tensor]) -> None:
        pass
