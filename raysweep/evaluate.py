"""Metrics of DESIGN.md §Metrics: AR, retain accuracy, FID in a named feature space.

Everything here takes a *generator*: a callable ``(labels, noise) -> images in [-1, 1]``. A diffusion model
becomes one through ``DiffusionGenerator``; tests use stand-ins whose right answer is known. The sampling noise of
class ``c`` depends only on (eval seed, c), so two models evaluated with the same settings see the same noise
(what AR_CL compares) whatever else is evaluated alongside.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
from torchmetrics.image.fid import FrechetInceptionDistance

from .config import MIN_PROBE_READS, Eval, RaysweepError, Schedule
from .data import Dataset
from .diffusion import sample
from .judge import JudgeFeatures, predict
from .target import Target

Generator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DiffusionGenerator:
    def __init__(self, model: nn.Module, cfg: Eval, schedule: Schedule, batched: bool | None = None):
        self.model, self.cfg, self.schedule, self.batched = model, cfg, schedule, batched

    def __call__(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = [sample(self.model, labels[i:i + self.cfg.batch_size].to(device),
                      noise[i:i + self.cfg.batch_size].to(device), schedule=self.schedule, sampler=self.cfg.sampler,
                      steps=self.cfg.steps, guidance=self.cfg.guidance, batched=self.batched, seed=self.cfg.seed + i)
               for i in range(0, len(labels), self.cfg.batch_size)]
        return torch.cat(out).cpu()


def class_noise(seed: int, c: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + c)
    return torch.randn((n, *shape), generator=g)


def class_batch(seed: int, classes: list[int], n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, noise) for n samples of each class; each class's noise depends only on (seed, class)."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c in classes])
    return labels, torch.cat([class_noise(seed, c, n, shape) for c in classes])


def fid(fake: torch.Tensor, real: torch.Tensor, extractor: str, judge: nn.Module | None = None) -> float:
    """Fréchet distance between two image sets in [-1, 1], in the ``judge`` or ``inception`` feature space."""
    if extractor == "judge":
        metric = FrechetInceptionDistance(feature=JudgeFeatures(judge).eval())
        prep = lambda x: x  # noqa: E731  (the judge reads [-1, 1] images directly)
    elif extractor == "inception":
        try:
            metric = FrechetInceptionDistance(feature=2048, normalize=True)
        except Exception as e:  # torch-fidelity missing, or its weights cannot be fetched offline
            raise RaysweepError(f"fid_extractor=inception is unavailable here ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:120]}); use eval.fid_extractor=judge") from None
        prep = lambda x: ((x.repeat(1, 3 // x.shape[1], 1, 1) + 1) / 2).clamp(0, 1)  # noqa: E731
    else:
        raise RaysweepError(f"unknown FID extractor {extractor!r}; choose judge or inception")
    with torch.no_grad():
        for x, real_flag in ((real, True), (fake, False)):
            for i in range(0, len(x), 1000):
                metric.update(prep(x[i:i + 1000]), real=real_flag)
        return float(metric.compute())


class Evaluator:
    def __init__(self, ds: Dataset, judge: nn.Module, judge_acc: float, judge_id: str, cfg: Eval,
                 judge_factors: dict | None = None, codec=None, noise_shape: tuple[int, ...] | None = None):
        self.ds, self.judge, self.judge_acc, self.judge_id, self.cfg = ds, judge.eval(), judge_acc, judge_id, cfg
        self.judge_factors = judge_factors or {}  # two-factor datasets: the judge's object/style accuracy
        # latent models (Stable Diffusion): sample in the latent shape, decode before judging
        self.codec, self.noise_shape = codec, noise_shape or tuple(ds.train_x.shape[1:])

    def settings(self) -> dict:
        """Recorded beside every number: how it was measured."""
        c = self.cfg
        return {"sampler": c.sampler, "sampling_steps": c.steps, "guidance_scale": c.guidance,
                "n_samples_forget": c.n_forget, "n_samples_per_class": c.n_per_class, "judge_id": self.judge_id,
                "judge_test_acc": self.judge_acc, **self.judge_factors, "fid_extractor": c.fid_extractor,
                "fid_reference": "real test split, retained conditions (the judge trains on the train split)",
                "eval_seed": c.seed}

    def generate(self, gen: Generator, classes: list[int], n: int,
                 seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        labels, noise = class_batch(self.cfg.seed if seed is None else seed, classes, n, self.noise_shape)
        images = gen(labels, noise)
        return (self.codec.decode(images) if self.codec is not None else images), labels

    def judge_labels(self, gen: Generator, target: Target, n: int | None = None,
                     seed: int | None = None) -> torch.Tensor:
        """The judge's reading of n samples of the target (fixed noise, split evenly over its conditions): what
        AR and AR_CL read. ``seed`` picks other noise (the stop rule's, never the evaluation's)."""
        forget = target.forget
        images, _ = self.generate(gen, forget, math.ceil((n or self.cfg.n_forget) / len(forget)), seed)
        return predict(self.judge, images)

    def ar(self, gen: Generator, target: Target, n: int | None = None, seed: int | None = None) -> float:
        """Share of the target's samples that the judge reads as the target (for a style: as that style)."""
        return float(target.mask(self.judge_labels(gen, target, n, seed)).float().mean())

    def reference_images(self, conditions: list[int]) -> torch.Tensor:
        """FID's real images: the test split of ``conditions``, which the judge (trained on the train split) has
        never seen, so its features are not fitted to the reference."""
        return torch.cat([self.ds.of_class(c, "test") for c in conditions])

    def evaluate(self, gen: Generator, target: Target | None = None,
                 forget_labels: torch.Tensor | None = None, seed: int | None = None) -> dict:
        """AR of every condition, retain_acc and FID on the retained conditions, and the evaluation settings.

        With ``target=None`` every condition counts as retained (the base model's own quality).
        ``forget_labels``: the judge's labels of the target's samples when the caller already has them.
        ``seed``: evaluation noise other than ``eval.seed`` (the base's reference over several seeds).
        Two-factor datasets add the UnlearnCanvas terms: ``ua`` = 1 - AR (target samples not read as the
        target), ``ira`` = accuracy on the factor the target names, ``cra`` = on the other factor, both over the
        retained conditions (a pair target names both: no ``cra``).
        """
        conds = self.ds.conditions
        t = target
        retain = t.retain if t is not None else list(range(conds.n))
        images, labels = self.generate(gen, retain, self.cfg.n_per_class, seed)
        preds = predict(self.judge, images)
        ar = {c: float((preds[labels == c] == c).float().mean()) for c in retain}
        out = {"retain_acc": sum(ar.values()) / len(retain)}
        if t is not None:
            if forget_labels is None:
                forget_labels = self.judge_labels(gen, t, seed=seed)
            out["ar_forget"] = float(t.mask(forget_labels).float().mean())
            for c, read in zip(t.forget, forget_labels.chunk(len(t.forget))):  # judge_labels' order: per condition
                ar[c] = float((read == c).float().mean())
        if conds.factored:
            right = {"object": conds.object_of(preds) == conds.object_of(labels),
                     "style": conds.style_of(preds) == conds.style_of(labels)}
            out.update({f"{k}_acc": float(v.float().mean()) for k, v in right.items()})
            if t is not None:
                out["ua"] = 1.0 - out["ar_forget"]
                named = {"object": ["object"], "style": ["style"], "pair": ["object", "style"]}[t.attribute]
                out["ira"] = float(torch.stack([right[k] for k in named]).all(0).float().mean())
                if t.attribute != "pair":
                    out["cra"] = out[f"{({'object', 'style'} - set(named)).pop()}_acc"]
        out["ar_per_class"] = [ar.get(c, float("nan")) for c in range(conds.n)]
        out["fid_" + self.cfg.fid_extractor] = fid(images, self.reference_images(retain), self.cfg.fid_extractor,
                                                   self.judge)
        return {**out, **self.settings(), **({"eval_seed": seed} if seed is not None else {})}


def convergence(values: list[float]) -> tuple[float, float]:
    """(convergence, its noise floor) of the unlearning term read on a fixed probe (same images, t and noise at
    every read), so only the weights move it.

    convergence = |mean over the last 20 % of the reads - mean over the 20 % before| / |mean of both|: ~0 when
    the objective has stopped moving, large when still moving or diverging. The floor is 2 standard errors of
    that difference from the reads' own jitter (the weights still wander under minibatch noise): a convergence
    below its floor is indistinguishable from converged. (nan, nan) with fewer than ``MIN_PROBE_READS`` (10) reads.
    """
    n = len(values)
    if n < MIN_PROBE_READS:
        return math.nan, math.nan
    a, b = values[int(0.6 * n):int(0.8 * n)], values[int(0.8 * n):]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    scale = abs(sum(a + b) / len(a + b)) + 1e-12
    var = lambda xs, m: sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)  # noqa: E731
    floor = 2 * math.sqrt(var(a, ma) / len(a) + var(b, mb) / len(b)) / scale
    return abs(mb - ma) / scale, floor
