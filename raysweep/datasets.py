"""One entry per dataset: its conditions, its loader, its model preset and its judge. Adding a dataset is one
entry here (and its loader).

``conditions`` reads only the config (and, for UnlearnCanvas, directory listings): what a run is conditioned on,
known before any image is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .canvas import canvas_conditions, load_unlearncanvas
from .config import ConfigError, Data
from .data import STYLES, Dataset, load_cifar10, load_digits, load_digits_styles
from .target import Conditions

DIGITS = tuple(str(d) for d in range(10))
DIGIT_STYLES = "plain,inverted,rotated,faint"  # digits-styles' default data.styles
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Spec:
    conditions: Callable[[Data], Conditions]
    load: Callable[[Data, Conditions], Dataset]
    preset: str  # raysweep.diffusion.PRESETS: the UNet when model.preset is ""
    judge: str  # raysweep.judge.make_judge: small (three convs) | resnet-32 (CIFAR stem) | resnet (ImageNet stem)


def digit_styles(cfg: Data) -> Conditions:
    styles = tuple(s.strip() for s in (cfg.styles or DIGIT_STYLES).split(",") if s.strip())
    for s in styles:
        if s not in STYLES:
            raise ConfigError(f"unknown style {s!r} in data.styles; choose from {sorted(STYLES)}")
    if len(set(styles)) != len(styles) or not styles:
        raise ConfigError(f"data.styles must name distinct styles, got {cfg.styles!r}")
    return Conditions(DIGITS, styles)


SPECS: dict[str, Spec] = {
    "digits": Spec(lambda cfg: Conditions(DIGITS), load_digits, "digits", "small"),
    "digits-styles": Spec(digit_styles, load_digits_styles, "digits", "small"),
    "cifar10": Spec(lambda cfg: Conditions(CIFAR10), load_cifar10, "cifar10", "resnet-32"),
    # a pixel model at low resolution; at 512 use model.preset=sd
    "unlearncanvas": Spec(canvas_conditions, load_unlearncanvas, "cifar10", "resnet"),
}


def spec(name: str) -> Spec:
    if name not in SPECS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(SPECS)}")
    return SPECS[name]


def conditions(cfg: Data) -> Conditions:
    return spec(cfg.dataset).conditions(cfg)


def load_dataset(cfg: Data) -> Dataset:
    s = spec(cfg.dataset)
    return s.load(cfg, s.conditions(cfg))
