"""One trial, in three phases: unlearn -> evaluate -> attack (DiMRA, with the AR, retain-accuracy and FID curves),
beside the base's cached controls. Free of Ray: the sweep calls ``run_trial`` inside a Ray Train worker;
``python -m raysweep.trial`` calls it directly.

    python -m raysweep.trial --dataset digits --method dimum --forget-class 3 [--seed N]
        [--set unlearn.steps=2000 --set dimum.beta=1.0 ...] [--out DIR] [--json] [--resume]

Every phase looks for what it already left behind before working: the unlearned model (shared in the store by
every trial whose config differs only in the attack), a loop state of an interrupted loop, a finished result.
"""
from __future__ import annotations

if __name__ == "__main__":  # --help, bad arguments and a bad config answer before the imports below load the stack
    from raysweep.cli import run as _run
    from raysweep.commands import trial_config, trial_parser

    _run(lambda: trial_config(trial_parser().parse_args()) and None, as_json=False)

import copy
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from . import parallel, plots, store, trajectory
from .attack import dimra
from .bases import Bases, get_retrain, load_bases, new_unet
from .budget import budget_metrics
from . import commands
from .cli import device_from, run
from .config import Config, content_hash
from .controls import base_ar, control_curve, feasibility, reference
from .evaluate import DiffusionGenerator, convergence
from .keys import retrain_seed
from .loop import LoopState, optimize
from .lora import merged_state
from .methods import REGISTRY
from .methods.base import Context
from .resolve import resolve
from .seeds import derive
from .stats import share_interval
from .target import Target

Report = Callable[[dict, str | None], None]  # (metrics so far, checkpoint URI or None)


def trial_name(cfg: Config, target: Target) -> str:
    what = target.slug if cfg.data.target else f"c{cfg.data.forget_class}"
    return f"{cfg.unlearn.method}-{what}-s{cfg.unlearn.seed}-{content_hash(cfg.to_dict())[:8]}"


def unlearned_key(config: dict) -> dict:
    """What determines the unlearned model and its evaluation: the config without the attack (and without how
    often loop states are saved)."""
    key = {k: v for k, v in config.items() if k != "attack"}
    key["unlearn"] = {k: v for k, v in key["unlearn"].items() if k != "checkpoint_every"}
    return key


@dataclass
class Unlearned:
    """The unlearning phase's outcome (without the weights)."""
    status: str
    steps_run: int
    stopped_early: bool
    seconds: float
    losses: list[float]
    probe: list[float]  # the unlearning term on the fixed probe batch, at every read

    def summary(self) -> dict:
        conv, floor = convergence(self.probe)
        return {"status": self.status, "unlearn_steps_run": self.steps_run,
                "unlearn_stopped_early": self.stopped_early, "unlearn_seconds": self.seconds,
                "unlearn_final_loss": self.losses[-1] if self.losses else None, "convergence": conv,
                "convergence_floor": floor}


def unlearn(cfg: Config, bases: Bases, target: Target, root: str, device: str, progress: bool,
            resume: LoopState | None = None, save: Callable[[LoopState], None] | None = None
            ) -> tuple[nn.Module, Unlearned]:
    """Run the method from the base weights (``resume``: from a saved loop state; the method's one-time
    ``prepare`` reruns on the original weights, seeded). ``retrain`` trains from scratch on D_r instead, cached
    per (base config, target, seed)."""
    u = cfg.unlearn
    if u.method == "retrain":
        model, extra = get_retrain(cfg, bases.ds, target, root, retrain_seed(cfg, u.seed), progress, device)
        return model, Unlearned("ok", extra["steps"], False, extra["seconds"], extra["losses"], [])
    model = copy.deepcopy(bases.model)
    original = copy.deepcopy(bases.model).eval().requires_grad_(False)
    method = REGISTRY[u.method](Context(cfg, bases.ds, target, original, device, root, bases.model_uri))
    torch.manual_seed(u.seed)  # prepare() may draw noise (SalUn's mask): a resumed trial must draw the same
    streams = method.prepare(model)
    probe_batch = {k: tuple(t.to(device) for t in next(it)) for k, it in streams.items()}  # fixed for the run
    # (step, value) of every probe read. Reads fall on the grid of the step reached so far (trajectory.probe_every),
    # the finest any trial continuing from here needs; this trial's convergence uses those on its own grid.
    reads = [tuple(r) for r in resume.meta.get("probe_reads", [])] if resume is not None else []
    stop_seed = derive(cfg.eval.seed, "stop_noise")
    gen = DiffusionGenerator(model, cfg.eval, cfg.schedule)

    def callback(step: int, m: nn.Module) -> bool:
        if step % trajectory.probe_every(step, u.probes) == 0 or step == u.steps:
            with torch.no_grad(), torch.random.fork_rng():
                torch.manual_seed(derive(u.seed, "forget") + 1)  # the same t, noise and label dropout every read
                reads.append((step, float(method.unlearning_term(m, probe_batch))))
        stop = u.stop_ar >= 0 and step % u.check_every == 0
        # the stop rule's checks use noise of their own: ar_mu is measured later on noise they never saw
        return stop and bases.evaluator.ar(gen, target, u.check_n, seed=stop_seed) <= u.stop_ar

    def keep(state: LoopState) -> None:
        if save is not None:
            save(LoopState(state.step, state.tensors, {**state.meta, "probe_reads": [list(r) for r in reads]}))

    result = optimize(model, method, streams, u.steps, lr=u.lr, grad_clip=u.grad_clip, seed=u.seed, every=1,
                      callback=callback, max_abs_loss=u.max_abs_loss, progress=progress, desc=f"unlearn {u.method}",
                      resume=resume, save=keep, save_every=u.checkpoint_every, after_clip=method.after_clip)
    own = trajectory.probe_every(u.steps, u.probes)
    probe = [v for s, v in reads if s % own == 0 or s == u.steps]
    return model, Unlearned(result.status, result.steps_run, result.stopped_early, result.seconds, result.losses,
                            probe)


@dataclass
class Trial:
    """One trial's fixed context, shared by its phases."""
    cfg: Config
    config: dict
    target: Target
    bases: Bases
    root: str
    trial_dir: str
    device: str
    progress: bool
    resume: bool
    report: Report | None

    def path(self, name: str) -> str:
        return store.join(self.trial_dir, name)

    def gen(self, model: nn.Module) -> DiffusionGenerator:
        return DiffusionGenerator(model, self.cfg.eval, self.cfg.schedule)


def unlearn_phase(t: Trial) -> tuple[nn.Module, dict, list[float], str]:
    """(unlearned model, its summary + evaluation, loss curve, its URI). Shared by every trial whose config
    differs only in the attack: the first one runs it, the others load it."""
    cfg, key = t.cfg, unlearned_key(t.config)
    uri = store.join(t.root, "unlearned", f"unlearned-{content_hash(key)}.parquet")
    if store.exists(uri):
        state, meta = store.load_state(uri)
        model = new_unet(cfg, t.bases.ds)
        model.load_state_dict(state)
        return model.to(t.device), meta["extra"]["metrics"], meta["extra"]["loss_curve"], uri
    u, traj = cfg.unlearn, trajectory.key(key)
    u_state = store.load_loop(t.path("unlearn-state.parquet"), t.config) if t.resume else None
    if u_state is not None and "probe_reads" not in u_state.meta:  # saved before probe reads kept their steps
        u_state = None  # (rerun rather than resume with reads it cannot place)
    shared = None if u_state else trajectory.longest_prefix(t.root, traj, u.checkpoint_every, u.steps)

    def save(state: LoopState) -> None:  # this trial's own resume point, and the shared trajectory's
        store.save_loop(t.path("unlearn-state.parquet"), state, t.config)
        trajectory.save(t.root, traj, state, u.checkpoint_every)

    model, run_u = unlearn(cfg, t.bases, t.target, t.root, t.device, t.progress, u_state or shared, save)
    metrics = {**run_u.summary(), "unlearn_resumed_from": u_state.step if u_state else None,
               "unlearn_shared_from": shared.step if shared else None,
               "unlearn_probe": run_u.probe, **evaluate_phase(t, model)}
    store.save_state(uri, model.state_dict(), kind="unlearned", step=run_u.steps_run, config=key,
                     extra={"metrics": metrics, "loss_curve": run_u.losses})
    return model, metrics, run_u.losses, uri


def evaluate_phase(t: Trial, model: nn.Module) -> dict:
    """AR of the target (Wilson interval), retain accuracy, FID, and the judge's labels of the target's samples
    (what AR_CL compares the attacked model with)."""
    ev = t.bases.evaluator
    labels = ev.judge_labels(t.gen(model), t.target)
    mu = ev.evaluate(t.gen(model), target=t.target, forget_labels=labels)
    ar_mu = mu.pop("ar_forget")
    lo, hi = share_interval(ar_mu, len(labels))
    return {"ar_mu": ar_mu, "ar_mu_lo": lo, "ar_mu_hi": hi, "n_samples_forget": len(labels), **mu,
            "forget_labels": labels.tolist()}


def attack_phase(t: Trial, model: nn.Module, out: dict) -> dict:
    """DiMRA from the unlearned weights: the curves, recovery, and the checkpoints in the trial directory."""
    cfg = t.cfg
    fid_key = f"fid_{cfg.eval.fid_extractor}"

    def on_checkpoint(step: int, m: nn.Module, metrics: dict) -> None:
        uri = t.path(f"attack-{step:06d}.parquet")
        if step > 0:  # a plain UNet's weights, LoRA merged in when the attack used it
            store.save_state(uri, merged_state(m), kind="attacked", step=step, config=t.config)
        if t.report is not None:
            t.report({**out, "phase": "attack", "attack_step": step, **metrics},
                     uri if step > 0 else out["unlearned_uri"])

    a_state = store.load_loop(t.path("attack-state.parquet"), t.config) if t.resume else None
    before = {"labels": torch.tensor(out["forget_labels"]), "retain_acc": out["retain_acc"], "fid": out[fid_key]}
    start = time.perf_counter()
    att = dimra(model, cfg, t.bases.ds, t.target, t.bases.evaluator, before, on_checkpoint, t.progress,
                resume=a_state, save=lambda st: store.save_loop(t.path("attack-state.parquet"), st, t.config))
    n, last = out["n_samples_forget"], max(att.ar)
    attacked = {k: v for k, v in att.ar.items() if k > 0}
    peak = max(attacked, key=attacked.get) if attacked else None
    lo_hi = {k: share_interval(v, n) for k, v in att.ar.items()}
    res = {
        "ar_dimra": {str(k): v for k, v in att.ar.items()},
        "ar_dimra_lo": {str(k): lo_hi[k][0] for k in att.ar}, "ar_dimra_hi": {str(k): lo_hi[k][1] for k in att.ar},
        "ar_cl_curve": {str(k): v for k, v in att.ar_cl.items()},
        "retain_acc_curve": {str(k): v for k, v in att.retain_acc.items()},
        "fid_curve": {str(k): v for k, v in att.fid.items()},
        "ar_dimra_final": att.ar[last], "ar_cl": att.ar_cl[last], "retain_acc_final": att.retain_acc.get(last),
        "ar_dimra_max": attacked[peak] if peak is not None else float("nan"),
        "ar_dimra_max_step": peak,
        "ar_dimra_max_lo": lo_hi[peak][0] if peak is not None else float("nan"),
        "ar_dimra_max_hi": lo_hi[peak][1] if peak is not None else float("nan"),
        "recovery": attacked[peak] - out["ar_mu"] if peak is not None else float("nan"),
        "attack_status": att.status, "attack_seconds": time.perf_counter() - start, "attack_aux": cfg.attack.aux,
        "attack_lr": cfg.attack.lr, "attack_resumed_from": a_state.step if a_state else None,
        "attack_uris": {str(k): t.path(f"attack-{k:06d}.parquet") for k in att.ar if k > 0},
    }
    res.update(budget_metrics(res["ar_dimra"], cfg.attack.batch_size, res["attack_seconds"]))
    if cfg.attack.control:
        curve = control_curve(cfg, t.bases, t.target, t.root, t.progress)
        res["ar_dimra_base"] = curve
        res["ar_dimra_base_max"] = max((v for k, v in curve.items() if int(k) > 0), default=float("nan"))
    return res


def skipped_attack(out: dict, why: list[str]) -> dict:
    """What a trial records instead of the attack's results when it was not attacked: the curve at step 0 only (the
    unlearned model's AR), every attack metric NaN, and why."""
    nan = float("nan")
    return {"attack_skipped": 1, "attack_skipped_because": "violates " + ", ".join(why) + " after unlearning",
            "attack_status": "skipped", "ar_dimra": {"0": out["ar_mu"]}, "ar_dimra_lo": {"0": out["ar_mu_lo"]},
            "ar_dimra_hi": {"0": out["ar_mu_hi"]}, "ar_dimra_final": nan, "ar_dimra_max": nan,
            "ar_dimra_max_step": None, "ar_dimra_max_lo": nan, "ar_dimra_max_hi": nan, "recovery": nan,
            "attack_seconds": 0.0, "attack_resumed_from": None, "attack_uris": {}}


def run_trial(cfg: Config, root: str, trial_dir: str | None = None, report: Report | None = None,
              device: str = "cpu", progress: bool = False, resume: bool = False,
              skip_attack: Callable[[dict], list[str]] | None = None) -> dict:
    """Run one trial, writing everything under ``trial_dir``. With ``resume`` it continues what an earlier,
    interrupted run of the same config left there: a finished trial returns its result, and a loop continues
    from its last saved state (``unlearn.checkpoint_every`` steps; every attack checkpoint). ``skip_attack``
    judges the unlearned model's metrics: reasons not to attack it (a sweep's violated constraints), or none."""
    target = resolve(cfg).target
    start = time.perf_counter()
    config = cfg.to_dict()
    trial_dir = trial_dir or store.join(root, "trials", trial_name(cfg, target))
    t = Trial(cfg, config, target, None, root, trial_dir, device, progress, resume, report)
    if resume and store.exists(t.path("result.json")):
        if content_hash(store.read_json(t.path("config.json"))) == content_hash(config):
            done = store.read_json(t.path("result.json"))
            if done["trial_dir"] != trial_dir:  # the storage was copied or moved since: point at the copy
                done = store.rebase(done, *store.moved_root(done["trial_dir"], trial_dir))
                store.write_json(t.path("result.json"), done)
            return done
    store.write_json(t.path("config.json"), config)
    attempts = _record_attempt(t.path("attempts.json"), resume)
    t.bases = load_bases(cfg, root, progress, device)
    ref = reference(cfg, t.bases, target, root, progress, device)
    ar_base = base_ar(cfg, t.bases, target, root)

    model, unlearned, loss_curve, unlearned_uri = unlearn_phase(t)
    ev = t.bases.evaluator
    grids = {"base": plots.forget_samples(ev, target, t.gen(t.bases.model)),
             "unlearned": plots.forget_samples(ev, target, t.gen(model))}  # before the attack changes the model
    retained = plots.retain_samples(ev, target, t.gen(model))
    fid_value = unlearned[f"fid_{cfg.eval.fid_extractor}"]
    out = {"method": cfg.unlearn.method, "forget_class": cfg.data.forget_class, "target": target.spec,
           "seed": cfg.unlearn.seed, "ar_base": ar_base,
           **dict(zip(("ar_base_lo", "ar_base_hi"), share_interval(ar_base, unlearned["n_samples_forget"]))),
           **{k: v for k, v in unlearned.items() if k != "unlearn_probe"}, **ref,
           **feasibility(unlearned["ar_mu"], unlearned["retain_acc"], fid_value, ref),
           "unlearned_uri": unlearned_uri, "base_uri": t.bases.model_uri, "trial_dir": trial_dir}
    if t.report is not None:
        t.report({**out, "phase": "unlearned"}, unlearned_uri)
    why = skip_attack(out) if skip_attack is not None else []
    if why:
        out.update(skipped_attack(out, why))
    else:
        out.update(attack_phase(t, model, out))
        grids[f"DiMRA@{max(int(k) for k in out['ar_dimra'])}"] = plots.forget_samples(ev, target, t.gen(model))
    names = [ev.ds.conditions.name(c) for c in target.retain]
    out["pictures"] = plots.write_pictures(trial_dir, target, grids, retained, loss_curve, names,
                                           cfg.unlearn.method)
    if out["attack_status"] not in ("ok", "skipped") and out["status"] == "ok":
        out["status"] = out["attack_status"]
    out["resumed_from"] = {"unlearn": unlearned.get("unlearn_resumed_from"), "attack": out["attack_resumed_from"]}
    out.update(attempts=attempts, world_size=parallel.world(), unlearn_loss_curve=loss_curve, unlearn_probe=unlearned.get("unlearn_probe", []),
               seconds=time.perf_counter() - start)
    out.pop("forget_labels")
    store.write_json(t.path("result.json"), out)
    return out


def _record_attempt(uri: str, resume: bool) -> int:
    """attempts.json: one entry per start of this trial (host, Ray node, pid of each rank, time), so restarts are
    visible."""
    seen = store.read_json(uri) if resume and store.exists(uri) else []
    pids = parallel.gather(os.getpid())
    seen.append({**parallel.where(), "pid": pids[0], "pids": pids, "started": time.time()})
    store.write_json(uri, seen)
    return len(seen)


def main(argv: list[str] | None = None) -> None:
    args = commands.trial_parser().parse_args(argv)

    def job() -> dict:
        cfg = commands.trial_config(args)
        store.ensure_writable(args.out, "--out")
        res = run_trial(cfg, args.out, device=device_from(args.device), progress=sys.stderr.isatty(),
                        resume=args.resume)
        res = {k: v for k, v in res.items() if k not in ("unlearn_loss_curve", "unlearn_probe")}
        if not args.json:
            fid = f"fid_{res['fid_extractor']}"
            print(f"{res['method']} {res['target']} seed={res['seed']} status={res['status']} "
                  f"feasible={res['feasible']}{' (' + res['infeasible_because'] + ')' if not res['feasible'] else ''}"
                  f": ar_base {res['ar_base']:.3f}  ar_mu {res['ar_mu']:.3f} [{res['ar_mu_lo']:.3f}, "
                  f"{res['ar_mu_hi']:.3f}]  ar_dimra {res['ar_dimra']}  recovery {res['recovery']:.3f}  "
                  f"retain_acc {res['retain_acc']:.3f} (base {res['base_retain_acc']:.3f})  "
                  f"{fid} {res[fid]:.3f} (base {res['base_fid']:.3f} + {res['fid_delta']:.3f})  "
                  f"convergence {res['convergence']:.4f} (floor {res['convergence_floor']:.4f})  "
                  f"({res['seconds']:.0f}s; {res['trial_dir']})")
        return res

    run(job, args.json)


if __name__ == "__main__":
    main()
