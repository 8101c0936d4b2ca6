"""What an ``experiments/*.py`` file declares: ``experiment = raysweep.Experiment(...)``.

Keys of ``space`` and ``fixed`` are dotted config paths (``unlearn.steps``); values of ``space`` are ``ray.tune``
domains (or plain values); ``objectives`` maps any scalar metric a trial reports to ``min`` or ``max``.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .config import MIN_PROBE_READS, Config, ConfigError, RaysweepError, apply_overrides, get_path
from .metrics import METRICS
from .metrics import check as check_metric

SEARCHES = ("optuna", "grid", "random")

# What --smoke does to every trial: a tiny model and a few steps, to check a sweep end to end in minutes.
# (unlearn.probes: the fewest reads convergence accepts, so the probe reads every step up to 20, not 100.)
SMOKE = {"model.preset": "tiny", "pretrain.steps": 60, "judge.epochs": 10, "eval.steps": 5, "eval.n_forget": 40,
         "eval.n_per_class": 10, "attack.steps": (0, 10, 20), "attack.control": False, "unlearn.check_n": 20,
         "unlearn.probes": MIN_PROBE_READS, "sa.replay_per_class": 4, "sa.fisher_per_class": 1, "esd.sample_steps": 10,
         "dimum.generated_per_class": 4, "attack.generated_per_class": 4, "eval.reference_seeds": 2}
SMOKE_MAX_UNLEARN_STEPS = 20
SMOKE_MAX_SAMPLES = 4


def smoke_space(space: dict[str, Any]) -> dict[str, Any]:
    """The search space a smoke run samples from: ``unlearn.steps`` capped as its trials run them, so Tune's table,
    Optuna's study and the results all show the steps that ran. Other domains are kept."""
    dom = space.get("unlearn.steps")
    if dom is None:
        return space
    from ray import tune
    from ray.tune.search.sample import Categorical, Integer

    cap = SMOKE_MAX_UNLEARN_STEPS
    if isinstance(dom, Integer) and dom.upper > cap + 1:
        lo = min(dom.lower, cap)
        dom = tune.lograndint(lo, cap + 1) if "Log" in type(dom.sampler).__name__ else tune.randint(lo, cap + 1)
    elif isinstance(dom, Categorical):
        dom = tune.choice(sorted({min(c, cap) for c in dom.categories}))
    elif isinstance(dom, dict) and "grid_search" in dom:
        dom = {"grid_search": sorted({min(c, cap) for c in dom["grid_search"]})}
    return {**space, "unlearn.steps": dom}


@dataclass
class Experiment:
    name: str
    space: dict[str, Any]
    objectives: dict[str, str]
    fixed: dict[str, Any] = field(default_factory=dict)  # config values every trial shares
    num_samples: int = 8
    search: str = "optuna"
    workers: int = 0  # Ray Train workers per trial: 0 runs it in the Tune trial's process, 1 in a Train worker,
    # N > 1 data-parallel over N workers (raysweep/parallel.py; each batch split across them, the global batch kept)
    gpus_per_worker: float = 0.0
    cpus_per_trial: int = 2
    seed: int = 0
    # Early stopping with ASHA on a metric trials report while they run (e.g. {"metric": "ar_attacked", "mode": "min",
    # "grace_period": 2, "reduction_factor": 2}; time is the report count). Pruned trials are recorded as "pruned".
    prune: dict[str, Any] | None = None
    # Feasibility constraints on reported metrics, e.g. {"retain_acc": (">=", 0.95)}: Optuna's constrained NSGA-II
    # samples toward feasible settings, and Pareto fronts (results, report) are taken over feasible trials only.
    constraints: dict[str, Any] = field(default_factory=dict)
    # Attack only the trials that still meet every constraint once unlearning is measured. A trial that already
    # violates one (on ar_mu, retain_drop, fid_excess, ...) cannot be on the feasible front whatever its attack
    # shows, so its attack, most of a trial's time, is skipped: recorded with attack_skipped = 1 and no attack
    # metrics, and Optuna is told it was pruned. Off, every trial is attacked (e.g. to watch an attack repair a
    # destroyed model). A smoke run attacks every trial: it is there to check the attack path too.
    attack_feasible_only: bool = False

    def validate(self) -> "Experiment":
        if self.search not in SEARCHES:
            raise ConfigError(f"experiment {self.name}: unknown search {self.search!r}; choose one of {SEARCHES}")
        if not self.objectives:
            raise ConfigError(f"experiment {self.name}: no objectives")
        self.constraints = parse_constraints(self.constraints)
        if self.attack_feasible_only and not self.constraints:
            raise ConfigError(f"experiment {self.name}: attack_feasible_only needs constraints to judge trials by")
        for metric, mode in self.objectives.items():
            check_metric(metric, "objective")
            if mode not in ("min", "max"):
                raise ConfigError(f"objective {metric!r}: mode must be min or max, got {mode!r}")
        probe = Config()
        apply_overrides(probe, self.fixed)
        for key in self.space:
            get_leaf(probe, key)
        if self.workers < 0 or self.cpus_per_trial < 1:
            raise ConfigError(f"experiment {self.name}: workers must be >= 0 and cpus_per_trial >= 1")
        g = self.gpus_per_worker
        if not (isinstance(g, (int, float)) and math.isfinite(g) and g >= 0 and (g <= 1 or float(g).is_integer())):
            raise ConfigError(f"experiment {self.name}: gpus_per_worker must be a fraction in [0, 1] (trials packed "
                              f"on one GPU) or a whole number of GPUs, got {g}")
        if self.prune is not None:
            unknown = set(self.prune) - {"metric", "mode", "grace_period", "reduction_factor", "max_t"}
            if unknown or self.prune.get("mode") not in ("min", "max") or "metric" not in self.prune:
                raise ConfigError(f"experiment {self.name}: prune needs metric and mode (min|max), optionally "
                                  f"grace_period, reduction_factor, max_t; got {self.prune}")
            if self.prune["metric"] not in METRICS or METRICS[self.prune["metric"]].kind == "curve":
                raise ConfigError(f"experiment {self.name}: prune metric {self.prune['metric']!r} is not reported while "
                                  f"trials run; choose from {sorted(k for k in METRICS if METRICS[k].kind != 'curve')}")
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
        apply_overrides(cfg, self.fixed)
        apply_overrides(cfg, {k: _plain(v) for k, v in params.items()})
        if smoke:
            apply_overrides(cfg, SMOKE)
            cfg.unlearn.steps = min(cfg.unlearn.steps, SMOKE_MAX_UNLEARN_STEPS)
            cfg.unlearn.check_every = min(cfg.unlearn.check_every, 5)
        from .resolve import resolve  # the method registry and datasets: imported only when a config is checked

        return resolve(cfg).cfg


OPS = ("<=", ">=")


def parse_constraints(constraints: Any) -> dict[str, tuple[str, float]]:
    """``{metric: (op, value)}`` with op ``<=`` or ``>=`` (also accepts ``"metric<=value"`` strings in a list);
    one-line errors for an unknown metric or a malformed constraint."""
    if isinstance(constraints, (list, tuple)):
        out = {}
        for spec in constraints:
            op = next((o for o in OPS if isinstance(spec, str) and o in spec), None)
            if op is None:
                raise ConfigError(f"constraint {spec!r} is malformed: write metric<=value or metric>=value")
            name, value = (v.strip() for v in spec.split(op, 1))
            out[name] = (op, value)
        constraints = out
    if not isinstance(constraints, dict):
        raise ConfigError(f"constraints must map a metric to (op, value), got {constraints!r}")
    parsed = {}
    for metric, rule in constraints.items():
        check_metric(metric, "constraint on")
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and rule[0] in OPS):
            raise ConfigError(f"constraint on {metric!r} is malformed: give (\"<=\" or \">=\", value), got {rule!r}")
        try:
            value = float(rule[1])
        except (TypeError, ValueError):
            raise ConfigError(f"constraint on {metric!r}: {rule[1]!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"constraint on {metric!r}: the bound must be finite, got {rule[1]!r}")
        parsed[metric] = (rule[0], value)
    return parsed


def violations(row: dict, constraints: dict[str, tuple[str, float]]) -> list[float]:
    """One number per constraint, <= 0 when it holds (Optuna's convention); a missing or NaN metric violates."""
    out = []
    for metric, (op, bound) in constraints.items():
        v = row.get(metric)
        if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            out.append(1.0)
        else:
            out.append(float(v) - bound if op == "<=" else bound - float(v))
    return out


def meets(row: dict, constraints: dict[str, tuple[str, float]]) -> bool:
    return all(v <= 0 for v in violations(row, constraints))


def violated_before_attack(result: dict, constraints: dict[str, tuple[str, float]]) -> list[str]:
    """The constraints a trial already violates after unlearning, as ``metric op bound`` (those on metrics it has
    not measured yet, e.g. the attack's, are not judged; a measured NaN violates)."""
    known = {m: c for m, c in constraints.items() if isinstance(result.get(m), (int, float))}
    return [f"{m} {op} {bound:g}" for (m, (op, bound)), v in zip(known.items(), violations(result, known)) if v > 0]


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
