"""DiMRA, the relearning attack: finetune the unlearned model with the plain denoising loss on D_aux
(true labels; D_aux never contains c_u) and watch AR(c_u) come back, or not."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import reduce
from typing import Callable

import torch
import torch.nn as nn

from .config import Config, RaysweepError
from .data import Dataset, aux_stream
from .diffusion import DenoisingLoss
from .evaluate import DiffusionGenerator, Evaluator
from .loop import LoopState, finetune
from .target import Target, as_target


@dataclass
class AttackResult:
    ar: dict[int, float] = field(default_factory=dict)  # attack step -> AR(c_u)
    ar_cl: dict[int, float] = field(default_factory=dict)  # attack step -> share of samples judged as after unlearning
    losses: list[float] = field(default_factory=list)
    status: str = "ok"
    seconds: float = 0.0


def aux_data(cfg: Config, ds: Dataset, model: nn.Module, target: Target):
    """The attacker's stream. ``generated`` = the unlearned model's own samples of the retained conditions."""
    a = cfg.attack
    generated = None
    if a.aux == "generated":
        gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)
        labels = torch.cat([torch.full((a.generated_per_class,), c) for c in target.retain])
        g = torch.Generator().manual_seed(a.seed + 4242)
        generated = (gen(labels, torch.randn((len(labels), *ds.train_x.shape[1:]), generator=g)), labels)
    return aux_stream(ds, target, a.aux, a.batch_size, a.seed, generated)


def dimra(model: nn.Module, cfg: Config, ds: Dataset, target: Target | int, evaluator: Evaluator,
          labels_before: torch.Tensor, on_checkpoint: Callable[[int, nn.Module, dict], None] | None = None,
          progress: bool = False, resume: LoopState | None = None,
          save: Callable[[LoopState], None] | None = None) -> AttackResult:
    """Attack ``model`` in place. At each step of ``cfg.attack.steps``: AR(c_u), AR_CL against
    ``labels_before`` (the judge's labels of the same noise before the attack), ``on_checkpoint``, and ``save``
    (a loop state holding the curve so far). ``resume`` continues from such a state; ``model`` must then hold the
    unlearned weights (the ``generated`` aux set is drawn from them)."""
    a, target = cfg.attack, as_target(target, ds.conditions)
    checkpoints = list(a.steps)
    result = AttackResult()
    denoise = DenoisingLoss(cfg.schedule, a.label_dropout)
    gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)

    def measure(step: int, m: nn.Module) -> None:
        labels = labels_before if step == 0 else evaluator.judge_labels(gen, target)
        result.ar[step] = float(target.mask(labels).float().mean())
        result.ar_cl[step] = float((labels == labels_before).float().mean())
        if on_checkpoint is not None:
            on_checkpoint(step, m, {"ar_dimra": result.ar[step], "ar_cl": result.ar_cl[step]})

    def loss(m, batches, step):
        images, labels = batches["aux"]
        if bool(target.mask(labels).any()):
            raise RaysweepError("DiMRA's auxiliary data contains the forgotten class")  # never: a guard
        return denoise(m, images, labels)

    if resume is not None:
        result.ar = {int(k): v for k, v in resume.meta["ar"].items()}
        result.ar_cl = {int(k): v for k, v in resume.meta["ar_cl"].items()}
    elif checkpoints[0] == 0:
        measure(0, model)
    positive = [s for s in checkpoints if s > 0]
    if positive:
        def callback(step, m):
            if step in positive:
                measure(step, m)

        def keep(state: LoopState) -> None:
            if save is not None and state.step in positive:
                save(LoopState(state.step, state.tensors, {**state.meta, "ar": result.ar, "ar_cl": result.ar_cl}))

        every = reduce(math.gcd, positive)
        run = finetune(model, loss, {"aux": aux_data(cfg, ds, model, target)}, positive[-1], lr=a.lr,
                       grad_clip=a.grad_clip, seed=a.seed, every=every, callback=callback, progress=progress,
                       desc="DiMRA", resume=resume, save=keep, save_every=every)
        result.losses, result.status, result.seconds = run.losses, run.status, run.seconds
    return result
