"""What every unlearning method shares: the context it runs in and the loss-class shape (NVlabs/edm style).

A method is a loss class: ``prepare()`` does its one-time work (a mask, a Fisher, samples of the original
model) and returns the named streams it consumes; ``__call__(model, batches, step)`` returns the loss and the
terms to log. The one finetune loop (``raysweep.loop.finetune``) runs it. ``forget`` in the logs is the
unlearning term, from which ``convergence`` is computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from ..config import Config
from ..data import Dataset, forget_stream, retain_stream
from ..diffusion import DenoisingLoss
from ..evaluate import DiffusionGenerator, class_batch
from ..target import Target, as_target


@dataclass
class Context:
    cfg: Config
    ds: Dataset
    target: Target | int  # what is forgotten; a bare int is a class
    original: nn.Module  # frozen copy of the model before unlearning
    device: str = "cpu"

    def __post_init__(self):
        self.target = as_target(self.target, self.ds.conditions)

    def retain_stream(self) -> Iterator:
        return retain_stream(self.ds, self.target, self.cfg.unlearn.batch_size, self.cfg.unlearn.seed)

    def forget_stream(self) -> Iterator:
        return forget_stream(self.ds, self.target, self.cfg.unlearn.batch_size, self.cfg.unlearn.seed + 1)

    def sample_original(self, classes: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples per class from the original model, with noise disjoint from the evaluation's."""
        gen = DiffusionGenerator(self.original, self.cfg.eval, self.cfg.schedule)
        labels, noise = class_batch(self.cfg.eval.seed + 7919 + self.cfg.unlearn.seed, classes, n,
                                    tuple(self.ds.train_x.shape[1:]))
        return gen(labels, noise), labels


class Method:
    """Base: a retain term shared by most methods; subclasses add the forget term."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.denoise = DenoisingLoss(ctx.cfg.schedule)
        self.denoise_retain = DenoisingLoss(ctx.cfg.schedule, ctx.cfg.unlearn.label_dropout)

    def prepare(self, model: nn.Module) -> dict[str, Iterator]:
        return {"retain": self.ctx.retain_stream()}

