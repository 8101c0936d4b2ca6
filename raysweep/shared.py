"""What every trial of a sweep starts from, built once before the trials, as Ray tasks side by side.

A trial finds the judge, the base model, the retrained gold standard, the utility reference and the control attack
in the store, or builds them (``raysweep.bases``, ``raysweep.controls``). Left to the trials, the first one builds
them one after another, and trials running at once each build them again. Built here, once, what is independent
runs at once where the cores allow, each task on as many threads as a trial has: CPU training is not bit-identical
across thread counts (``bench/thread_invariance.py``), so the weights are bit for bit the ones a trial would have
trained (tests/test_shared.py). Evaluations could run on one thread each (sampling is bit-identical on any), but
measured in the main job on 2 cores the reference's halves took 128 s side by side on one thread each and 144 s one
after the other on 2, while the second worker process that one-thread tasks start cost every small sweep its start
(the test suite 984 s against 958 s): one task shape, the trial's.

Only what every trial shares is built: an artefact whose cache key a swept parameter enters (e.g.
``data.forget_class`` for the retrained model) is left to the trials, as before.
"""
from __future__ import annotations

import time

from .config import Config

# The config fields and sections (ending in ".") each artefact's cache key holds (raysweep/keys.py)
_DATA = ("data.dataset", "data.root", "data.resolution", "data.test_fraction", "data.split_seed", "data.styles")
_TARGET = ("data.forget_class", "data.target")
_MODEL = ("model.", "schedule.", "pretrain.")
_REFERENCE = _DATA + _TARGET + _MODEL + ("judge.", "eval.")
SECTIONS = {"judge": _DATA + ("judge.",), "base": _DATA + _MODEL, "retrain": _DATA + _TARGET + _MODEL,
            "utility:base": _REFERENCE, "utility:retrain": _REFERENCE, "reference": _REFERENCE,
            "control": _REFERENCE + ("attack.",)}
# What each waits for (its inputs in the store)
NEEDS = {"control": ("judge", "base"), "utility:base": ("judge", "base"), "utility:retrain": ("judge", "retrain"),
         "reference": ("utility:base", "utility:retrain")}


def shared(cfg: Config, swept: list[str], attacked: bool = True) -> list[str]:
    """The artefacts every trial of a sweep over ``swept`` (dotted keys) shares, in the order they are built.
    ``attacked=False``: no trial may be attacked (a sweep that attacks only feasible trials), so the control attack
    is left to the first trial that is."""
    from .keys import retrained_reference

    retrained = retrained_reference(cfg)
    control = cfg.attack.control and attacked
    wanted = ["judge", "base", *(["retrain"] if retrained else []), *(["control"] if control else []),
              "utility:base", *(["utility:retrain"] if retrained else []), "reference"]
    return [a for a in wanted
            if not any(k == s or (s.endswith(".") and k.startswith(s)) for k in swept for s in SECTIONS[a])]


def stored(what: str, cfg: Config, root: str) -> str:
    """Where the artefact ``what`` of ``cfg`` lives in the store ``root``."""
    from . import store
    from .keys import (control_key, judge_key, model_key, reference_key, retrain_key, retrain_kind, retrain_seed,
                       utility_key)
    from .resolve import resolve

    target = resolve(cfg).target
    kind, key, ext = {
        "judge": ("judge", lambda: judge_key(cfg), "parquet"), "base": ("base", lambda: model_key(cfg), "parquet"),
        "retrain": (retrain_kind(target), lambda: retrain_key(cfg, target, retrain_seed(cfg, 0)), "parquet"),
        "utility:base": ("utility", lambda: utility_key(cfg, target, "base"), "json"),
        "utility:retrain": ("utility", lambda: utility_key(cfg, target, "retrain"), "json"),
        "reference": ("reference", lambda: reference_key(cfg, target), "json"),
        "control": ("control", lambda: control_key(cfg, target), "json")}[what]
    return store.artefact(root, kind, key(), ext)


def make(what: str, cfg: Config, root: str, device: str, threads: int, *after) -> float:
    """Build (or find) one artefact in the store; returns the seconds it took. ``after``: the tasks it waited for."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    from .bases import get_base, get_judge, get_retrain, load_bases, training_space
    from .keys import retrain_seed
    from .controls import control_curve, reference, utility
    from .datasets import load_dataset
    from .resolve import resolve

    target = resolve(cfg).target
    if what in ("judge", "base", "retrain"):  # each alone: the others may not be built yet
        pixels = load_dataset(cfg.data)
        if what == "judge":
            get_judge(cfg, pixels, root, device)
        else:
            ds, _ = training_space(cfg, pixels, root)
            if what == "base":
                get_base(cfg, ds, root, device=device)
            else:
                get_retrain(cfg, ds, target, root, retrain_seed(cfg, 0), device=device)
    else:
        bases = load_bases(cfg, root, device=device)
        if what == "control":
            control_curve(cfg, bases, target, root)
        elif what == "reference":
            reference(cfg, bases, target, root, device=device)
        else:
            utility(cfg, bases, target, root, what.split(":")[1], device=device)
    return time.perf_counter() - start


def build(cfg: Config, swept: list[str], root: str, device: str, threads: int, gpus: float = 0.0,
          attacked: bool = True) -> dict[str, float]:
    """Build, on the running Ray, the artefacts shared by the trials of a sweep that runs ``cfg`` with the ``swept``
    keys varied, trials having ``threads`` threads each (and ``gpus``); what the store holds already is not
    rebuilt (no task starts). Returns the seconds each built one took."""
    import ray

    from . import store

    refs: dict = {}
    for what in [w for w in shared(cfg, swept, attacked) if not store.exists(stored(w, cfg, root))]:
        task = ray.remote(make).options(num_cpus=threads, num_gpus=gpus, max_retries=0, name=f"shared:{what}")
        refs[what] = task.remote(what, cfg, root, device, threads, *(refs[n] for n in NEEDS.get(what, ()) if n in refs))
    return dict(zip(refs, ray.get(list(refs.values()))))
