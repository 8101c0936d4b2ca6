"""What an ``experiments/*.py`` file declares: ``experiment = raysweep.Experiment(...)``.

Keys of ``space`` and ``base`` are dotted config paths (``unlearn.steps``); values of ``space`` are ``ray.tune``
domains (or plain values); ``objectives`` maps any scalar metric a trial reports to ``min`` or ``max``.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from .config import Config, ConfigError, RaysweepError, apply_overrides, get_path

SEARCHES = ("optuna", "grid", "random")

# What --smoke does to every trial: a tiny model and a few steps, to check a sweep end to end in minutes.
SMOKE = {"model.preset": "tiny", "pretrain.steps": 60, "judge.epochs": 10, "eval.steps": 5, "eval.n_forget": 40,
         "eval.n_per_class": 10, "attack.steps": (0, 10, 20), "attack.control": False, "unlearn.check_n": 20,
         "sa.replay_per_class": 4, "esd.images": 16, "dimum.generated_per_class": 4,
         "attack.generated_per_class": 4}
SMOKE_MAX_UNLEARN_STEPS = 20
SMOKE_MAX_SAMPLES = 4


@dataclass
class Experiment:
    name: str
    space: dict[str, Any]
    objectives: dict[str, str]
    base: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 8
    search: str = "optuna"
    workers: int = 0  # Ray Train workers per trial: 0 runs it in the Tune trial's process, 1 in a Train worker
    gpus_per_worker: float = 0.0
    cpus_per_trial: int = 2
    seed: int = 0
    # Early stopping with ASHA on a metric trials report while they run (e.g. {"metric": "ar_dimra", "mode": "min",
    # "grace_period": 2, "reduction_factor": 2}; time is the report count). Pruned trials are recorded as "pruned".
    prune: dict[str, Any] | None = None

    def validate(self) -> "Experiment":
        from .trial import REPORTED_METRICS

        if self.search not in SEARCHES:
            raise ConfigError(f"experiment {self.name}: unknown search {self.search!r}; choose one of {SEARCHES}")
        if not self.objectives:
            raise ConfigError(f"experiment {self.name}: no objectives")
        for metric, mode in self.objectives.items():
            if metric not in REPORTED_METRICS:
                raise ConfigError(f"objective {metric!r} is not a metric trials report; choose from "
                                  f"{sorted(REPORTED_METRICS)}")
            if mode not in ("min", "max"):
                raise ConfigError(f"objective {metric!r}: mode must be min or max, got {mode!r}")
        probe = Config()
        apply_overrides(probe, self.base)
        for key in self.space:
            get_leaf(probe, key)
        if self.workers < 0 or self.cpus_per_trial < 1:
            raise ConfigError(f"experiment {self.name}: workers must be >= 0 and cpus_per_trial >= 1")
        if self.workers > 1:  # the trial's loop has no DDP wrapper yet: W > 1 would train W copies apart
            raise ConfigError(f"experiment {self.name}: workers > 1 (DDP inside one trial) is not supported yet; "
                              "use workers 0 (in-process) or 1 (one Ray Train worker, e.g. on a GPU)")
        if self.prune is not None:
            unknown = set(self.prune) - {"metric", "mode", "grace_period", "reduction_factor", "max_t"}
            if unknown or self.prune.get("mode") not in ("min", "max") or "metric" not in self.prune:
                raise ConfigError(f"experiment {self.name}: prune needs metric and mode (min|max), optionally "
                                  f"grace_period, reduction_factor, max_t; got {self.prune}")
        if self.search == "optuna" and any(_is_grid(v) for v in self.space.values()):
            raise ConfigError(f"experiment {self.name}: tune.grid_search needs search='grid'")
        if self.search == "optuna":
            from ray.tune.search.optuna import OptunaSearch
            try:  # Optuna refuses some Tune domains (e.g. a log-scale int with a step): say so now, in one line
                OptunaSearch.convert_search_space(self.space)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"experiment {self.name}: search space not usable by Optuna: {e}") from None
        return self

    def trial_config(self, params: dict[str, Any], smoke: bool = False) -> Config:
        cfg = Config()
        apply_overrides(cfg, self.base)
        apply_overrides(cfg, {k: _plain(v) for k, v in params.items()})
        if smoke:
            apply_overrides(cfg, SMOKE)
            cfg.unlearn.steps = min(cfg.unlearn.steps, SMOKE_MAX_UNLEARN_STEPS)
            cfg.unlearn.check_every = min(cfg.unlearn.check_every, 5)
        return cfg.validate()


def get_leaf(cfg: Config, key: str) -> Any:
    try:
        value = get_path(cfg, key)
    except AttributeError:
        raise ConfigError(f"unknown config key {key!r} in the search space") from None
    if hasattr(value, "__dataclass_fields__"):
        raise ConfigError(f"{key!r} in the search space is a section, not a field")
    return value


def _is_grid(v: Any) -> bool:
    return isinstance(v, dict) and "grid_search" in v


def _plain(v: Any) -> Any:
    """Numpy scalars from samplers -> Python values the config accepts."""
    if hasattr(v, "item") and not isinstance(v, (list, tuple, str)):
        v = v.item()
    if isinstance(v, list):
        v = tuple(v)
    return v


def load(path: str) -> Experiment:
    if not os.path.isfile(path):
        raise RaysweepError(f"experiment file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"raysweep_experiment_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except RaysweepError:
        raise
    except Exception as e:
        raise RaysweepError(f"{path}: could not be loaded ({type(e).__name__}: {e})") from None
    exp = getattr(module, "experiment", None)
    if not isinstance(exp, Experiment):
        raise RaysweepError(f"{path} defines no `experiment = raysweep.Experiment(...)`")
    return exp
