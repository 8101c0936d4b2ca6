"""Every knob of raysweep in one place (nanoGPT style): typed sections, dotted overrides, one-line errors.
The ground floor: it imports nothing of the package (``raysweep.resolve`` turns a config into a run).

A run saves the whole resolved config (``Config.to_dict``) next to its results, and base artefacts are cached
under a hash of the sections that determine them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


class RaysweepError(Exception):
    """A problem the user can fix; CLIs print it as one line and exit non-zero."""


ATTACK_OPTIMIZERS = ("adam", "adamw", "sgd")  # raysweep.loop.OPTIMIZERS (named here: this module loads no torch)
MIN_PROBE_READS = 10  # convergence needs this many probe reads (raysweep.evaluate.convergence)


class ConfigError(RaysweepError, ValueError):
    pass


@dataclass
class Data:
    dataset: str = "digits"
    root: str = ""  # cifar10: directory holding cifar-10-batches-py; unlearncanvas: <Style>/<Object>/<n>.jpg
    download: bool = False  # cifar10 only: fetch into root when it is missing
    resolution: int = 0  # 0 = native (8 for digits, 32 for cifar10, 512 for unlearncanvas)
    test_fraction: float = 0.2  # digits: share of the 1,797 images held out as the test split
    split_seed: int = 0
    forget_class: int = 3
    # two-factor datasets, conditioned on (object, style): the styles to use. "" = the dataset's own: digits-styles
    # renders every digit in plain,inverted,rotated,faint (data.STYLES has more); unlearncanvas takes every style
    # directory under root
    styles: str = ""
    # what is forgotten: object=NAME | style=NAME | object=NAME,style=NAME; "" = object=<forget_class>
    target: str = ""


@dataclass
class Model:
    preset: str = ""  # "" = the dataset's preset; "tiny" for tests; "sd" (Stable Diffusion) | "sd-tiny" (stand-in)
    dropout: float = 0.0
    sd_path: str = ""  # preset sd: a local diffusers-layout directory (unet/ text_encoder/ tokenizer/ vae/)
    sd_download: bool = False  # preset sd: sd_path is a hub id to fetch (only when asked)


@dataclass
class Schedule:
    # DDPM linear schedule of the SA/SalUn/EraseDiff lineage; epsilon prediction.
    train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass
class Pretrain:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    grad_clip: float = 1.0
    ema: float = 0.995  # EMA decay of the weights kept as the base model; 0 = off
    label_dropout: float = 0.1  # share of labels replaced by the null class (for CFG)
    seed: int = 0


@dataclass
class Judge:
    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass
class Eval:
    sampler: str = "ddim"  # ddim (eta 0, deterministic) | ddpm
    steps: int = 25
    guidance: float = 1.5  # diffusers convention: eps_null + w * (eps_cond - eps_null)
    n_forget: int = 200  # samples of the forget class (AR noise is binomial: >= 200)
    n_per_class: int = 200  # samples per retain class, for retain_acc and FID
    fid_extractor: str = "judge"  # judge | inception
    seed: int = 1234
    batch_size: int = 1000
    reference_seeds: int = 5  # evaluation seeds the base's utility reference (and fid_delta) is measured over
    fid_retrain_gap: bool = True  # fid_delta includes how far the retrained gold standard's FID is above the base's


@dataclass
class Unlearn:
    method: str = "dimum"
    steps: int = 1000  # the step budget
    stop_ar: float = -1.0  # >= 0: stop as soon as AR(c_u) <= stop_ar (checked every check_every steps)
    check_every: int = 10
    check_n: int = 100  # samples per stopping check
    checkpoint_every: int = 250  # steps between resumable loop states (0 = none; the attack saves at its checkpoints)
    lr: float = 1e-4
    batch_size: int = 64
    grad_clip: float = 1.0
    label_dropout: float = 0.1  # on retain terms, so the null class (CFG) stays trained
    max_abs_loss: float = 1e4  # beyond this the phase is marked diverged
    probes: int = 50  # reads of the unlearning term on a fixed batch (for convergence): every 2^k steps, >= probes
    seed: int = 0


@dataclass
class Attack:
    """DiMRA: finetune the unlearned model with the plain denoising loss on D_aux (true labels, never c_u)."""
    aux: str = "test"  # test (test split minus c_u) | retain (D_r) | generated (unlearned model's other classes)
    #                    | class:K (the test images of one neighbouring class K) | relabel:K (those images under the
    #                    forgotten label: the adaptive attack, see data.aux_stream)
    aux_size: int = 0  # images the attacker holds: 0 = all of attack.aux, N = a subset of N drawn with attack.seed
    lora_rank: int = 0  # 0 = finetune every weight; r > 0 = only rank-r LoRA adapters (raysweep/lora.py)
    steps: tuple = (0, 250, 500, 1000, 2000)  # attack checkpoints: AR(c_u) and a Parquet checkpoint at each
    lr: float = 1e-4
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9), torch's defaults otherwise
    batch_size: int = 64
    grad_clip: float = 1.0
    label_dropout: float = 0.1
    generated_per_class: int = 100  # aux=generated
    control: bool = True  # also attack the base model (cached), to tell recovery from plain finetuning drift
    seed: int = 0


# The methods' own knobs, in the units of the code each follows (its docstring in raysweep/methods/ names the
# commit and converts to our per-pixel-mean losses where they differ). Every section is a MethodSettings: its
# integers must be positive and its floats finite and >= 0 (checked in one place, Config.validate).

class MethodSettings:
    pass


@dataclass
class GA(MethodSettings):
    alpha: float = 1e-3  # retain weight; SalUn's DDPM code (--method ga): -L_sum(D_u) + alpha * L_sum(D_r)


@dataclass
class SalUn(MethodSettings):
    alpha: float = 1e-3  # SalUn's units: forget MSE (per-pixel mean) + alpha * retain loss (summed over pixels)
    mask_fraction: float = 0.5  # share of weights (largest |sum of grads| of the denoising loss on D_u) that may change
    mask_guidance: float = 3.0  # the mask's CFG prediction, diffusers convention (SalUn's cond_scale 2 = ours 3)


@dataclass
class SA(MethodSettings):
    gamma: float = 1.0  # generative replay weight ("leave it at 1")
    lam: float = 10.0  # Fisher penalty weight, SA's units (pixel-summed losses; Fisher of the loss summed over t)
    replay_per_class: int = 500  # samples of the original model per retained class (SA: 500)
    fisher_per_class: int = 20  # of those, per class (forgotten one included) for the Fisher; SA: 500, each costs
    #                             T forward/backward passes (1,000 here), so the default is smaller: a budget knob


@dataclass
class ESD(MethodSettings):
    eta: float = 7.5  # negative guidance (SalUn's DDPM port of ESD; ESD's SD code: 1.0)
    start_guidance: float = 3.0  # guidance of the model's own samples x_t are drawn from (ESD: 3)
    sample_steps: int = 50  # DDIM grid those samples walk (ESD: ddim_steps 50)
    batch_size: int = 1  # ESD trains on one sample per step


@dataclass
class EraseDiff(MethodSettings):
    lam: float = 0.1  # lambda_bome: weight of the forget objective's gap
    inner_steps: int = 2  # K_steps: passes over D_u that give the inner value (logged as inner_gap)


@dataclass
class DiMUM(MethodSettings):
    beta: float = 1.0  # weight of the memorization term
    alternative: str = "retain"  # retain | class:k | style:NAME | generated | noise
    generated_per_class: int = 50


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    schedule: Schedule = field(default_factory=Schedule)
    pretrain: Pretrain = field(default_factory=Pretrain)
    judge: Judge = field(default_factory=Judge)
    eval: Eval = field(default_factory=Eval)
    unlearn: Unlearn = field(default_factory=Unlearn)
    attack: Attack = field(default_factory=Attack)
    ga: GA = field(default_factory=GA)
    salun: SalUn = field(default_factory=SalUn)
    sa: SA = field(default_factory=SA)
    esd: ESD = field(default_factory=ESD)
    erasediff: EraseDiff = field(default_factory=EraseDiff)
    dimum: DiMUM = field(default_factory=DiMUM)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """What the config alone can check (ranges, finite numbers). What needs the dataset, the target or the
        method registry is checked by ``raysweep.resolve``, which calls this first."""
        for section in dataclasses.fields(self):
            for f in dataclasses.fields(getattr(self, section.name)):
                v = getattr(getattr(self, section.name), f.name)
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{section.name}.{f.name} must be a finite number, got {v}")
        d = self.data
        if d.forget_class < 0:
            raise ConfigError(f"data.forget_class must be >= 0, got {d.forget_class}")
        if not 0.0 < d.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {d.test_fraction}")
        if d.resolution < 0:
            raise ConfigError(f"data.resolution must be >= 0, got {d.resolution}")
        if self.pretrain.steps < 0 or (self.pretrain.steps == 0 and self.model.preset != "sd"):
            raise ConfigError(f"pretrain.steps must be positive (0 only with model.preset=sd: use its weights as "
                              f"they are), got {self.pretrain.steps}")
        for name in ("pretrain.batch_size", "judge.epochs", "judge.batch_size", "eval.steps",
                     "eval.n_forget", "eval.n_per_class", "eval.batch_size"):
            if get_path(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {get_path(self, name)}")
        for name in ("pretrain.lr", "judge.lr"):
            if get_path(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {get_path(self, name)}")
        if not 0.0 <= self.pretrain.ema < 1.0:
            raise ConfigError(f"pretrain.ema must be in [0, 1), got {self.pretrain.ema}")
        if not 0.0 <= self.pretrain.label_dropout < 1.0:
            raise ConfigError(f"pretrain.label_dropout must be in [0, 1), got {self.pretrain.label_dropout}")
        if self.eval.sampler not in ("ddim", "ddpm"):
            raise ConfigError(f"eval.sampler must be ddim or ddpm, got {self.eval.sampler!r}")
        if self.eval.fid_extractor not in ("judge", "inception"):
            raise ConfigError(f"eval.fid_extractor must be judge or inception, got {self.eval.fid_extractor!r}")
        if self.model.preset == "sd" and not self.model.sd_path:
            raise ConfigError("model.preset=sd needs model.sd_path: a local Stable Diffusion directory (or a hub id "
                              "with model.sd_download=true)")
        if self.model.preset == "sd" and not self.model.sd_download and not os.path.isdir(self.model.sd_path):
            raise ConfigError(f"Stable Diffusion weights not found: {self.model.sd_path} is not a directory "
                              "(set model.sd_download=true to fetch it as a hub id)")
        if self.eval.guidance < 0:
            raise ConfigError(f"eval.guidance must be >= 0, got {self.eval.guidance}")
        self._validate_unlearning()
        return self

    def _validate_unlearning(self) -> None:
        for name in ("unlearn.steps", "unlearn.check_every", "unlearn.check_n", "unlearn.batch_size",
                     "unlearn.lr", "attack.lr", "attack.batch_size", "attack.generated_per_class", "unlearn.probes",
                     "eval.reference_seeds"):
            if get_path(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {get_path(self, name)}")
        if self.attack.lora_rank < 0:
            raise ConfigError(f"attack.lora_rank must be >= 0 (0 = full finetuning), got {self.attack.lora_rank}")
        if self.attack.optimizer not in ATTACK_OPTIMIZERS:
            raise ConfigError(f"unknown attack.optimizer {self.attack.optimizer!r}; choose one of "
                              f"{list(ATTACK_OPTIMIZERS)}")
        if self.attack.aux_size < 0:
            raise ConfigError(f"attack.aux_size must be >= 0 (0 = all of attack.aux), got {self.attack.aux_size}")
        if self.unlearn.checkpoint_every < 0:
            raise ConfigError(f"unlearn.checkpoint_every must be >= 0, got {self.unlearn.checkpoint_every}")
        for section in dataclasses.fields(self):
            settings = getattr(self, section.name)
            if not isinstance(settings, MethodSettings):
                continue
            for f in dataclasses.fields(settings):
                v, name = getattr(settings, f.name), f"{section.name}.{f.name}"
                if isinstance(v, int) and not isinstance(v, bool) and v <= 0:
                    raise ConfigError(f"{name} must be positive, got {v}")
                if isinstance(v, float) and v < 0:
                    raise ConfigError(f"{name} must be >= 0, got {v}")
        if not 0.0 < self.salun.mask_fraction <= 1.0:
            raise ConfigError(f"salun.mask_fraction must be in (0, 1], got {self.salun.mask_fraction}")
        if self.unlearn.stop_ar > 1.0:
            raise ConfigError(f"unlearn.stop_ar must be <= 1 (negative = fixed steps), got {self.unlearn.stop_ar}")
        steps = list(self.attack.steps)
        if not steps or any(not isinstance(s, int) or s < 0 for s in steps) or any(
                b <= a for a, b in zip(steps, steps[1:])):
            raise ConfigError(f"attack.steps must be non-negative integers, strictly increasing; got {steps}")


def get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _parse(raw: str, current: Any, key: str) -> Any:
    kind = type(current)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is tuple or kind is list:  # "[0, 250, 500]" or "0,250,500"
            return kind(json.loads(raw) if raw.startswith("[") else [json.loads(v) for v in raw.split(",")])
        return kind(raw)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(f"{key}: cannot read {raw!r} as {kind.__name__}") from None


def set_path(cfg: Any, dotted: str, value: Any) -> None:
    """Set ``section.field`` on a config; strings are parsed to the field's type."""
    *parents, leaf = dotted.split(".")
    obj = cfg
    for part in parents:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
            raise ConfigError(f"unknown config key {dotted!r}")
        obj = getattr(obj, part)
    if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
        raise ConfigError(f"unknown config key {dotted!r}")
    current = getattr(obj, leaf)
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{dotted!r} is a section; set one of its fields")
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse(value, current, dotted)
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif not isinstance(value, type(current)):
        raise ConfigError(f"{dotted}: expected {type(current).__name__}, got {value!r}")
    setattr(obj, leaf, value)


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """``["pretrain.steps=2000", ...]`` or ``{"pretrain.steps": 2000}``."""
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    for key, value in items:
        set_path(cfg, key, value)
    return cfg


def _split(override: str) -> tuple[str, str]:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    key, value = override.split("=", 1)
    return key.strip(), value.strip()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def content_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (dataclasses allowed): the cache key of base artefacts."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
