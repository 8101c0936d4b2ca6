"""Datasets (images in [-1, 1], NCHW float32) and the named streams of DESIGN.md: forget, retain, aux, alternative.

A stream is an infinite iterator of shuffled ``(images, labels)`` batches; every method and the attack consume
streams, so what a loss can see is decided here and nowhere else.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .config import ConfigError, Data, RaysweepError

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def resolution(self) -> int:
        return self.train_x.shape[-1]

    def of_class(self, c: int, split: str = "train") -> torch.Tensor:
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        return x[y == c]

    def without_class(self, c: int, split: str = "train") -> Batch:
        x, y = (self.train_x, self.train_y) if split == "train" else (self.test_x, self.test_y)
        keep = y != c
        return x[keep], y[keep]


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if resolution in (0, x.shape[-1]):
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).clamp(-1, 1)


def load_digits(cfg: Data) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.images.astype(np.float32) / 16.0 * 2.0 - 1.0  # pixel range 0..16 -> [-1, 1]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=cfg.test_fraction, random_state=cfg.split_seed,
                                          stratify=y)
    t = lambda a: _resize(torch.from_numpy(a)[:, None], cfg.resolution)  # noqa: E731
    return Dataset("digits", t(xtr), torch.from_numpy(ytr), t(xte), torch.from_numpy(yte), 10)


def load_cifar10(cfg: Data) -> Dataset:
    if not cfg.root:
        raise RaysweepError("cifar10 needs data.root: a directory holding cifar-10-batches-py")
    if not cfg.download and not os.path.isdir(os.path.join(cfg.root, "cifar-10-batches-py")):
        raise RaysweepError(f"cifar10 not found: {os.path.join(cfg.root, 'cifar-10-batches-py')} is missing "
                            "(set data.download=true to fetch it)")
    from torchvision.datasets import CIFAR10

    def split(train: bool) -> Batch:
        try:
            ds = CIFAR10(cfg.root, train=train, download=cfg.download)
        except (OSError, RuntimeError) as e:
            raise RaysweepError(f"cifar10 could not be loaded from {cfg.root}: {e}") from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return _resize(x, cfg.resolution), torch.tensor(ds.targets, dtype=torch.int64)

    (xtr, ytr), (xte, yte) = split(True), split(False)
    return Dataset("cifar10", xtr, ytr, xte, yte, 10)


LOADERS: dict[str, Callable[[Data], Dataset]] = {"digits": load_digits, "cifar10": load_cifar10}


def load_dataset(cfg: Data) -> Dataset:
    if cfg.dataset not in LOADERS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[cfg.dataset](cfg)


def stream(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    """Infinite shuffled batches; a new permutation each epoch, seeded."""
    if len(x) == 0:
        raise RaysweepError("a stream was asked for over an empty set of images")
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(perm) - batch_size + 1 if len(perm) >= batch_size else 1, batch_size):
            idx = perm[i:i + batch_size]
            yield x[idx], y[idx]


def noise_stream(shape: tuple[int, ...], label: int, batch_size: int, seed: int) -> Iterator[Batch]:
    """Fresh uniform-noise images in [-1, 1], all labelled ``label`` (SA's forget target, DiMUM's `noise`)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((batch_size,), label, dtype=torch.int64)
    while True:
        yield torch.rand((batch_size, *shape), generator=g) * 2 - 1, labels


def parse_alternative(spec: str, forget_class: int, num_classes: int) -> tuple[str, int | None]:
    """``retain`` | ``class:k`` | ``generated`` | ``noise`` -> (kind, k)."""
    if spec in ("retain", "generated", "noise"):
        return spec, None
    if spec.startswith("class:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"alternative {spec!r}: class:k needs an integer k") from None
        if not 0 <= k < num_classes:
            raise ConfigError(f"alternative {spec!r}: class {k} is out of range (0..{num_classes - 1})")
        if k == forget_class:
            raise ConfigError(f"alternative {spec!r}: k must differ from the forget class {forget_class}")
        return "class", k
    raise ConfigError(f"unknown alternative data {spec!r}; choose retain, class:k, generated or noise")


def forget_stream(ds: Dataset, c_u: int, batch_size: int, seed: int) -> Iterator[Batch]:
    x = ds.of_class(c_u)
    return stream(x, torch.full((len(x),), c_u, dtype=torch.int64), batch_size, seed)


def retain_stream(ds: Dataset, c_u: int, batch_size: int, seed: int) -> Iterator[Batch]:
    return stream(*ds.without_class(c_u), batch_size, seed)


def alternative_stream(ds: Dataset, c_u: int, spec: str, batch_size: int, seed: int,
                       generated: torch.Tensor | None = None) -> Iterator[Batch]:
    """D'_u: images that are *not* of class c_u, every one labelled c_u."""
    kind, k = parse_alternative(spec, c_u, ds.num_classes)
    if kind == "noise":
        return noise_stream(tuple(ds.train_x.shape[1:]), c_u, batch_size, seed)
    if kind == "retain":
        x = ds.without_class(c_u)[0]
    elif kind == "class":
        x = ds.of_class(k)
    else:
        if generated is None:
            raise RaysweepError("alternative 'generated' needs samples of the pretrained model")
        x = generated
    return stream(x, torch.full((len(x),), c_u, dtype=torch.int64), batch_size, seed)


AUX_CHOICES = ("test", "retain", "generated")


def aux_stream(ds: Dataset, c_u: int, spec: str, batch_size: int, seed: int,
               generated: Batch | None = None) -> Iterator[Batch]:
    """DiMRA's D_aux with true labels; by construction it never contains c_u."""
    if spec == "test":
        x, y = ds.without_class(c_u, "test")
    elif spec == "retain":
        x, y = ds.without_class(c_u, "train")
    elif spec == "generated":
        if generated is None:
            raise RaysweepError("aux 'generated' needs samples of the unlearned model")
        x, y = generated
        keep = y != c_u
        x, y = x[keep], y[keep]
    else:
        raise ConfigError(f"unknown aux data {spec!r}; choose one of {list(AUX_CHOICES)}")
    return stream(x, y, batch_size, seed)
