"""A config resolved into what a run needs, once: its conditions, its target, its method. Everything that checks a
config against the dataset, the target or the method registry happens here (config.py knows none of them)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .config import Config, ConfigError
from .data import parse_alternative, parse_aux
from .datasets import conditions
from .methods import REGISTRY
from .target import Conditions, Target, parse_target


@dataclass(frozen=True)
class Run:
    cfg: Config
    conditions: Conditions
    target: Target


def resolve(cfg: Config) -> Run:
    """Validate ``cfg`` completely (one-line ConfigErrors) and resolve its target."""
    cfg.validate()
    conds = conditions(cfg.data)  # also: an unknown dataset, unknown styles, an unreadable UnlearnCanvas tree
    d = cfg.data
    if not d.target and d.forget_class >= len(conds.objects):
        raise ConfigError(f"data.forget_class={d.forget_class} is out of range: {d.dataset} has {len(conds.objects)} "
                          f"objects (0..{len(conds.objects) - 1}); or name the target with data.target")
    target = parse_target(d.target or f"object={conds.objects[d.forget_class]}", conds)
    if cfg.unlearn.method not in REGISTRY:
        raise ConfigError(f"unknown method {cfg.unlearn.method!r}; choose one of {sorted(REGISTRY)}")
    parse_alternative(cfg.dimum.alternative, target)
    parse_aux(cfg.attack.aux, target)
    if cfg.attack.lora_rank > 0 and importlib.util.find_spec("peft") is None:
        raise ConfigError("attack.lora_rank > 0 needs peft: pip install 'raysweep[lora]'")
    return Run(cfg, conds, target)
