"""One trial: base -> unlearn -> evaluate -> DiMRA (AR curve) -> result. Free of Ray: the sweep calls
``run_trial`` inside a Ray Train worker; ``python -m raysweep.trial`` calls it directly.

    python -m raysweep.trial --dataset digits --method dimum --forget-class 3 [--seed N]
        [--set unlearn.steps=2000 --set dimum.beta=1.0 ...] [--out DIR] [--json] [--resume]
"""
from __future__ import annotations

import copy
import dataclasses
import os
import socket
import sys
import time
from typing import Callable

import torch
import torch.nn as nn

from . import store
from .attack import dimra
from .base import Bases, judge_key, model_key, new_unet, prepare, pretrain_model
from .cli import Parser, add_common, config_from, device_from, run
from .config import Config, content_hash
from .evaluate import DiffusionGenerator, convergence
from .loop import LoopResult, LoopState, finetune
from .methods import REGISTRY
from .methods.base import Context

Report = Callable[[dict, str | None], None]  # (metrics so far, checkpoint URI or None)

# Scalar metrics every finished trial reports: what a sweep may use as objectives.
REPORTED_METRICS = {"ar_base", "ar_mu", "ar_dimra_final", "ar_dimra_max", "ar_cl", "retain_acc", "fid_judge",
                    "fid_inception", "convergence", "unlearn_steps_run", "unlearn_seconds", "attack_seconds",
                    "ar_dimra_base_max", "seconds", "ua", "ira", "cra", "object_acc", "style_acc"}


def trial_name(cfg: Config) -> str:
    what = cfg.target.slug if cfg.data.target else f"c{cfg.data.forget_class}"
    return f"{cfg.unlearn.method}-{what}-s{cfg.unlearn.seed}-{content_hash(cfg.to_dict())[:8]}"


def unlearn(cfg: Config, bases: Bases, root: str, device: str, progress: bool, resume: LoopState | None = None,
            save: Callable[[LoopState], None] | None = None) -> tuple[nn.Module, LoopResult, float]:
    """Returns (unlearned model, loop result, convergence of the unlearning term). ``resume`` continues from a
    saved loop state (the method's one-time ``prepare`` reruns on the original weights: it is seeded)."""
    target, u = cfg.target, cfg.unlearn
    if u.method == "retrain":  # from scratch on D_r through the same loop; cached like the base
        def build():
            m, r = pretrain_model(cfg, bases.ds, exclude=target, progress=progress, device=device)
            return m, {"steps": r.steps_run, "seconds": r.seconds, "convergence": convergence(r.losses)}

        key = {**model_key(cfg), "exclude": target.spec}
        model, extra, _ = store.cached_module(root, f"retrain-{target.slug}", key, build, lambda: new_unet(cfg, bases.ds))
        return model.to(device), LoopResult(steps_run=extra["steps"], seconds=extra["seconds"]), extra["convergence"]
    model = copy.deepcopy(bases.model)
    original = copy.deepcopy(bases.model).eval().requires_grad_(False)
    method = REGISTRY[u.method](Context(cfg, bases.ds, target, original, device))
    torch.manual_seed(u.seed)  # prepare() may draw noise (SalUn's mask): a resumed trial must draw the same
    streams = method.prepare(model)
    callback, every = None, 0
    if u.stop_ar >= 0:  # stop once forgotten: the practitioner's rule
        gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)
        callback = lambda step, m: bases.evaluator.ar(gen, target, u.check_n) <= u.stop_ar  # noqa: E731
        every = u.check_every
    result = finetune(model, method, streams, u.steps, lr=u.lr, grad_clip=u.grad_clip, seed=u.seed, every=every,
                      callback=callback, max_abs_loss=u.max_abs_loss, progress=progress, desc=f"unlearn {u.method}",
                      resume=resume, save=save, save_every=u.checkpoint_every)
    forget_curve = [row["forget"] for row in result.logs if "forget" in row] or result.losses
    return model, result, convergence(forget_curve)


def control_curve(cfg: Config, bases: Bases, root: str, progress: bool) -> dict[str, float]:
    """The same attack on the untouched base model: how much AR(c_u) plain finetuning drift costs. Cached."""
    key = {"base": model_key(cfg), "judge": judge_key(cfg), "eval": dataclasses.asdict(cfg.eval),
           "attack": {k: v for k, v in dataclasses.asdict(cfg.attack).items() if k != "control"},
           "forget": cfg.data.target or cfg.data.forget_class}
    uri = store.join(root, "base", f"control-{content_hash(key)}.json")
    if store.exists(uri):
        return store.read_json(uri)["ar"]
    model = copy.deepcopy(bases.model)
    labels = bases.evaluator.judge_labels(DiffusionGenerator(model, cfg.eval, cfg.schedule), cfg.target)
    res = dimra(model, cfg, bases.ds, cfg.target, bases.evaluator, labels, progress=progress)
    curve = {str(k): v for k, v in res.ar.items()}
    store.write_json(uri, {"ar": curve, "key": key})
    return curve


def run_trial(cfg: Config, root: str, trial_dir: str | None = None, report: Report | None = None,
              device: str = "cpu", progress: bool = False, resume: bool = False) -> dict:
    """Run one trial, writing everything under ``trial_dir``. With ``resume`` it continues what an earlier,
    interrupted run of the same config left there: a finished trial returns its result, a finished unlearning
    phase is not redone, and a loop continues from its last saved state (``unlearn.checkpoint_every`` steps;
    every attack checkpoint)."""
    cfg.validate()
    start = time.perf_counter()
    c, target, config = cfg.data.forget_class, cfg.target, cfg.to_dict()
    trial_dir = trial_dir or store.join(root, "trials", trial_name(cfg))
    path = lambda name: store.join(trial_dir, name)  # noqa: E731
    if resume and store.exists(path("result.json")):
        done = store.read_json(path("result.json"))
        if content_hash(store.read_json(path("config.json"))) == content_hash(config):
            return done
    store.write_json(path("config.json"), config)
    attempts = _record_attempt(path("attempts.json"), resume)
    bases = prepare(cfg, root, progress, device)
    ev = bases.evaluator

    unlearned = _load_unlearned(path("unlearned.parquet"), config, cfg, bases, device) if resume else None
    resumed_from = {"unlearn": None, "attack": None}  # the saved step each phase continued from, if any
    if unlearned is None:
        u_state = store.load_loop(path("unlearn-state.parquet"), config) if resume else None
        resumed_from["unlearn"] = u_state.step if u_state else None
        ar_base = ev.ar(DiffusionGenerator(bases.model, cfg.eval, cfg.schedule), target)
        t = time.perf_counter()
        model, run_u, conv = unlearn(cfg, bases, root, device, progress, u_state,
                                     lambda st: store.save_loop(path("unlearn-state.parquet"), st, config))
        unlearn_seconds = time.perf_counter() - t
        gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)
        labels_mu = ev.judge_labels(gen, target)
        mu = ev.evaluate(gen, target=target, forget_labels=labels_mu)
        out = {"method": cfg.unlearn.method, "forget_class": c, "target": target.spec, "seed": cfg.unlearn.seed,
               "status": run_u.status,
               "ar_base": ar_base, "ar_mu": mu.pop("ar_forget"), **mu, "convergence": conv,
               "unlearn_steps_run": run_u.steps_run, "unlearn_stopped_early": run_u.stopped_early,
               "unlearn_final_loss": run_u.losses[-1] if run_u.losses else None, "unlearn_seconds": unlearn_seconds,
               "unlearned_uri": path("unlearned.parquet"), "base_uri": bases.model_uri, "trial_dir": trial_dir}
        store.save_state(path("unlearned.parquet"), model.state_dict(), kind="unlearned", step=run_u.steps_run,
                         config=config, extra={"metrics": out, "loss_curve": run_u.losses})
        loss_curve = run_u.losses
    else:
        model, out, loss_curve = unlearned
        resumed_from["unlearn"] = out["unlearn_steps_run"]
        labels_mu = ev.judge_labels(DiffusionGenerator(model, cfg.eval, cfg.schedule), target)
    if report is not None:
        report({**out, "phase": "unlearned"}, out["unlearned_uri"])

    def on_checkpoint(step: int, m: nn.Module, metrics: dict) -> None:
        uri = path(f"attack-{step:06d}.parquet")
        if step > 0:
            store.save_state(uri, m.state_dict(), kind="attacked", step=step, config=config)
        if report is not None:
            report({**out, "phase": "attack", "attack_step": step, **metrics}, uri if step > 0 else out["unlearned_uri"])

    t = time.perf_counter()
    a_state = store.load_loop(path("attack-state.parquet"), config) if resume else None
    resumed_from["attack"] = a_state.step if a_state else None
    att = dimra(model, cfg, bases.ds, target, ev, labels_mu, on_checkpoint, progress, resume=a_state,
                save=lambda st: store.save_loop(path("attack-state.parquet"), st, config))
    last = max(att.ar)
    out.update({
        "ar_dimra": {str(k): v for k, v in att.ar.items()}, "ar_cl_curve": {str(k): v for k, v in att.ar_cl.items()},
        "ar_dimra_final": att.ar[last], "ar_dimra_max": max(att.ar.values()), "ar_cl": att.ar_cl[last],
        "attack_status": att.status, "attack_seconds": time.perf_counter() - t, "attack_aux": cfg.attack.aux,
        "attack_uris": {str(k): path(f"attack-{k:06d}.parquet") for k in att.ar if k > 0},
        "attack_lr": cfg.attack.lr, "attempts": attempts, "resumed_from": resumed_from,
    })
    if att.status != "ok" and out["status"] == "ok":
        out["status"] = att.status
    if cfg.attack.control:
        curve = control_curve(cfg, bases, root, progress)
        out["ar_dimra_base"] = curve
        out["ar_dimra_base_max"] = max(curve.values())
    out["unlearn_loss_curve"] = loss_curve
    out["seconds"] = time.perf_counter() - start
    store.write_json(path("result.json"), out)
    return out


def _record_attempt(uri: str, resume: bool) -> int:
    """attempts.json: one entry per start of this trial (host, pid, time), so restarts are visible."""
    seen = store.read_json(uri) if resume and store.exists(uri) else []
    seen.append({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    store.write_json(uri, seen)
    return len(seen)


def _load_unlearned(uri: str, config: dict, cfg: Config, bases: Bases, device: str):
    """(model, metrics, loss curve) of a finished unlearning phase of this config, or None."""
    if not store.exists(uri):
        return None
    state, meta = store.load_state(uri)
    if content_hash(meta["config"]) != content_hash(config) or "metrics" not in meta["extra"]:
        return None
    model = new_unet(cfg, bases.ds)
    model.load_state_dict(state)
    return model.to(device), meta["extra"]["metrics"], meta["extra"]["loss_curve"]


def main(argv: list[str] | None = None) -> None:
    p = Parser(prog="raysweep.trial", description=__doc__.split("\n\n")[0])
    add_common(p)
    p.add_argument("--method", default="dimum", help=f"one of {sorted(REGISTRY)}")
    p.add_argument("--forget-class", type=int, default=3)
    p.add_argument("--target", default="", help="object=NAME | style=NAME | object=NAME,style=NAME "
                                                 "(default: object=<forget class>)")
    p.add_argument("--seed", type=int, default=0, help="seed of unlearning and attack (the base is shared)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same trial from its last saved state")
    args = p.parse_args(argv)

    def job() -> dict:
        cfg = Config()
        cfg.unlearn.method, cfg.data.forget_class, cfg.data.target = args.method, args.forget_class, args.target
        cfg.unlearn.seed = cfg.attack.seed = args.seed
        cfg = config_from(args, cfg)
        res = run_trial(cfg, args.out, device=device_from(args.device), progress=sys.stderr.isatty(),
                        resume=args.resume)
        res = {k: v for k, v in res.items() if k != "unlearn_loss_curve"}
        if not args.json:
            print(f"{res['method']} {res['target']} seed={res['seed']} status={res['status']}: "
                  f"ar_base {res['ar_base']:.3f}  ar_mu {res['ar_mu']:.3f}  ar_dimra {res['ar_dimra']}  "
                  f"ar_cl {res['ar_cl']:.3f}  retain_acc {res['retain_acc']:.3f}  "
                  f"fid_{res['fid_extractor']} {res['fid_' + res['fid_extractor']]:.3f}  "
                  f"convergence {res['convergence']:.4f}  ({res['seconds']:.0f}s; {res['trial_dir']})")
        return res

    run(job, args.json)


if __name__ == "__main__":
    main()
