"""The one finetune loop. Pretraining, every unlearning method and the DiMRA attack are all
"optimise this loss over these streams for N steps"; only the loss and the streams differ.

A loss is a callable ``loss(model, batches, step) -> tensor | (tensor, logs)`` where ``batches`` maps each
stream's name to its next ``(images, labels)``. ``after_clip(params)`` runs between gradient clipping and the
optimiser step (SalUn's gradient mask).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import parallel, stop

Callback = Callable[[int, torch.nn.Module], bool | None]  # return True to stop early

# The optimisers a loop can run, by name (torch's defaults otherwise): Adam everywhere by default; the attacker may
# choose (attack.optimizer). SGD takes momentum 0.9, as finetuning recipes that use SGD do; without it, plain SGD at
# an Adam-sized lr barely moves a diffusion model.
OPTIMIZERS = {"adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
              "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr),
              "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)}


@dataclass
class LoopState:
    """What continues a run exactly where it stopped: weights, Adam's moments, EMA, RNG, the curve so far.
    ``tensors`` go to a Parquet checkpoint as they are; ``meta`` is JSON."""
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict


def _capture(step, model, opt, averaged, result) -> LoopState:
    t = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        t.update({f"opt.{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v) for k, v in st.items()})
    if averaged is not None:
        t.update({f"ema.{k}": v for k, v in averaged.state_dict().items()})
    t["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and next(model.parameters()).is_cuda:
        t["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"step": step, "losses": list(result.losses), "logs": list(result.logs), "seconds": result.seconds}
    return LoopState(step, {k: v.detach().clone() for k, v in t.items()}, meta)  # a snapshot, not live views


def _restore(state: LoopState, model, opt, averaged, result, streams) -> None:
    def part(prefix):
        return {k[len(prefix):]: v for k, v in state.tensors.items() if k.startswith(prefix)}

    model.load_state_dict(part("model."))
    opt_state: dict = {}
    for k, v in part("opt.").items():
        i, name = k.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = v.to(next(model.parameters()).device) if name != "step" else v
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    if averaged is not None:
        averaged.load_state_dict(part("ema."))
    torch.set_rng_state(state.tensors["rng.cpu"])
    if "rng.cuda" in state.tensors and next(model.parameters()).is_cuda:
        torch.cuda.set_rng_state(state.tensors["rng.cuda"])
    result.losses, result.logs = list(state.meta["losses"]), list(state.meta["logs"])
    result.steps_run = state.step
    for it in streams.values():  # the streams are seeded: replaying their batches puts them where they were
        for _ in range(state.step):
            next(it)


@dataclass
class LoopResult:
    steps_run: int = 0
    losses: list[float] = field(default_factory=list)
    logs: list[dict[str, float]] = field(default_factory=list)
    status: str = "ok"  # ok | diverged
    stopped_early: bool = False
    seconds: float = 0.0


def optimize(model: torch.nn.Module, loss: Callable, streams: dict[str, Iterator], steps: int, *, lr: float,
             grad_clip: float = 1.0, ema: float = 0.0, seed: int = 0, every: int = 0,
             callback: Callback | None = None, max_abs_loss: float = math.inf, precision: str = "fp32",
             progress: bool = False, desc: str = "", resume: LoopState | None = None,
             save: Callable[[LoopState], None] | None = None, save_every: int = 0,
             after_clip: Callable[[list[torch.Tensor]], None] | None = None,
             optimizer: str = "adam") -> LoopResult:
    """Run ``steps`` optimiser steps of ``optimizer`` (one of OPTIMIZERS) on ``loss``.

    Every ``every`` steps (and after the last) ``callback(step, model)`` runs; True stops the loop there.
    A non-finite loss, or one beyond ``max_abs_loss``, stops the loop *before* its update and marks the result
    ``diverged``: a diverging method is a result, not a crash. With ``ema`` > 0 the model ends holding the
    EMA weights (callbacks see the raw ones).

    Every ``save_every`` steps ``save(LoopState)`` runs; ``resume=`` that state continues the run as if it had
    never stopped (same batches, same noise, same optimiser state).

    Under a process group of W ranks (a trial with ``workers`` > 1) each model call runs on a shard of the batch
    and the gradients are summed across ranks (``raysweep.parallel``): the same loop at the same global batch.
    """
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[optimizer](params, lr)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema > 0 else None
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    result = LoopResult()
    if resume is not None:
        _restore(resume, model, opt, averaged, result, streams)
    first = result.steps_run + 1
    start = time.perf_counter() - (resume.meta.get("seconds", 0.0) if resume is not None else 0.0)
    model.train()
    bar = tqdm(total=steps, initial=first - 1, desc=desc, disable=not progress or not parallel.leader(),
               mininterval=2.0, leave=False)
    with parallel.split_forwards(model):
        for step in range(first, steps + 1):
            stop.check()  # a Ctrl-C or SIGTERM swallowed by a finalizer since the last step
            batches = {k: tuple(t.to(device, non_blocking=True) for t in next(it)) for k, it in streams.items()}
            with autocast:
                out = loss(model, batches, step)
            value, logs = out if isinstance(out, tuple) else (out, {})
            v = float(value.detach())
            if not math.isfinite(v) or abs(v) > max_abs_loss:
                result.status = "diverged"
                result.losses.append(v)
                break
            opt.zero_grad(set_to_none=True)
            value.backward()
            parallel.sum_gradients(params)
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            if after_clip is not None:
                after_clip(params)
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            result.steps_run = step
            result.losses.append(v)
            if logs:
                result.logs.append({"step": step, **{k: float(x) for k, x in logs.items()}})
            bar.update(1)
            if bar.n % 50 == 0:
                bar.set_postfix(loss=f"{v:.4f}")
            if callback is not None and ((every and step % every == 0) or step == steps):
                if callback(step, model):
                    result.stopped_early = step < steps
                    break
            if save is not None and save_every and step % save_every == 0 and step < steps:
                result.seconds = time.perf_counter() - start
                save(_capture(step, model, opt, averaged, result))
    bar.close()
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    result.seconds = time.perf_counter() - start
    return result
