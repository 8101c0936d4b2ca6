"""DiMRA, the relearning attack: finetune the unlearned model with the plain denoising loss on D_aux
(true labels; D_aux never contains c_u) and watch AR(c_u) come back, or not — and what the finetuning does to
the rest of the model (retain accuracy and FID at every checkpoint: an attack can also repair a damaged model)."""
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
from .loop import LoopState, optimize
from .seeds import derive
from .target import Target


@dataclass
class AttackResult:
    ar: dict[int, float] = field(default_factory=dict)  # attack step -> AR(c_u)
    ar_cl: dict[int, float] = field(default_factory=dict)  # attack step -> share of samples judged as after unlearning
    retain_acc: dict[int, float] = field(default_factory=dict)  # attack step -> retain accuracy
    fid: dict[int, float] = field(default_factory=dict)  # attack step -> FID (the evaluation's extractor)
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
        g = torch.Generator().manual_seed(derive(a.seed, "aux_generated"))
        generated = (gen(labels, torch.randn((len(labels), *ds.train_x.shape[1:]), generator=g)), labels)
    return aux_stream(ds, target, a.aux, a.batch_size, a.seed, generated, a.aux_size)


def dimra(model: nn.Module, cfg: Config, ds: Dataset, target: Target, evaluator: Evaluator,
          before: dict, on_checkpoint: Callable[[int, nn.Module, dict], None] | None = None,
          progress: bool = False, resume: LoopState | None = None,
          save: Callable[[LoopState], None] | None = None, utility: bool = True) -> AttackResult:
    """Attack ``model`` in place. ``before``: the unlearned model's evaluation, ``{"labels": the judge's labels of
    the target's samples, "retain_acc", "fid"}`` (step 0 of the curves). At each positive step of
    ``cfg.attack.steps``: AR(c_u) and AR_CL against those labels (same noise), with ``utility`` also retain
    accuracy and FID; then ``on_checkpoint`` and ``save`` (a loop state holding the curves so far). ``resume``
    continues from such a state; ``model`` must then hold the unlearned weights (the ``generated`` aux set is
    drawn from them). With ``attack.lora_rank`` > 0 only LoRA adapters added to ``model`` train (lora.py)."""
    a = cfg.attack
    if a.lora_rank > 0:
        from .lora import add_lora

        add_lora(model, a.lora_rank)
    checkpoints = list(a.steps)
    result = AttackResult()
    denoise = DenoisingLoss(cfg.schedule, a.label_dropout)
    gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)
    labels_before = before["labels"]
    fid_key = f"fid_{cfg.eval.fid_extractor}"

    def measure(step: int, m: nn.Module) -> None:
        if step == 0:
            labels, util = labels_before, {k: before[k] for k in ("retain_acc", "fid") if k in before}
        elif utility:
            labels = evaluator.judge_labels(gen, target)
            ev = evaluator.evaluate(gen, target, forget_labels=labels)
            util = {"retain_acc": ev["retain_acc"], "fid": ev[fid_key]}
        else:
            labels, util = evaluator.judge_labels(gen, target), {}
        result.ar[step] = float(target.mask(labels).float().mean())
        result.ar_cl[step] = float((labels == labels_before).float().mean())
        if "retain_acc" in util:
            result.retain_acc[step], result.fid[step] = util["retain_acc"], util["fid"]
        if on_checkpoint is not None:
            on_checkpoint(step, m, {"ar_attacked": result.ar[step], "ar_cl_attacked": result.ar_cl[step],
                                    **({"retain_acc_attacked": util["retain_acc"],
                                        "fid_attacked": util["fid"]} if util else {})})

    adaptive = a.aux.startswith("relabel:")  # its labels are the target's by design (its images never are)

    def loss(m, batches, step):
        images, labels = batches["aux"]
        if not adaptive and bool(target.mask(labels).any()):
            raise RaysweepError("DiMRA's auxiliary data contains the forgotten class")  # never: a guard
        return denoise(m, images, labels)

    if resume is not None:
        for name in ("ar", "ar_cl", "retain_acc", "fid"):
            setattr(result, name, {int(k): v for k, v in resume.meta.get(name, {}).items()})
    elif checkpoints[0] == 0:
        measure(0, model)
    positive = [s for s in checkpoints if s > 0]
    if positive:
        def callback(step, m):
            if step in positive:
                measure(step, m)

        def keep(state: LoopState) -> None:
            if save is not None and state.step in positive:
                save(LoopState(state.step, state.tensors, {**state.meta, "ar": result.ar, "ar_cl": result.ar_cl,
                                                           "retain_acc": result.retain_acc, "fid": result.fid}))

        every = reduce(math.gcd, positive)
        run = optimize(model, loss, {"aux": aux_data(cfg, ds, model, target)}, positive[-1], lr=a.lr,
                       grad_clip=a.grad_clip, seed=a.seed, every=every, callback=callback, progress=progress,
                       desc="DiMRA", resume=resume, save=keep, save_every=every, optimizer=a.optimizer)
        result.losses, result.status, result.seconds = run.losses, run.status, run.seconds
    return result
