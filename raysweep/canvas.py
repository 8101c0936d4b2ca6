"""UnlearnCanvas: 20 objects painted in some 60 styles, plus photographs (style ``Seed_Images``), as released:
``<root>/<Style>/<Object>/<n>.jpg``. Read as a two-factor dataset: the styles of ``data.styles`` ("" = every
style directory under root) times the object directories (every style must hold the same objects).

No download: the release is fetched by hand from the benchmark's page into ``data.root``. Images are decoded when
a trial starts and held in memory as float32 at ``data.resolution``: N x 3 x R^2 x 4 bytes, so the full release
(24,000 images) at 512 would take 75 GB; choose styles, or R = 256 (SD latents 32 x 32), or both.
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, Data, RaysweepError
from .data import Dataset
from .target import Conditions

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _root(cfg: Data) -> Path:
    if not cfg.root:
        raise ConfigError("unlearncanvas needs data.root: a directory laid out <Style>/<Object>/<n>.jpg")
    if cfg.download:
        raise ConfigError("unlearncanvas cannot be downloaded by raysweep; fetch the release into data.root")
    root = Path(cfg.root)
    if not root.is_dir():
        raise RaysweepError(f"unlearncanvas not found: {root} is not a directory")
    return root


def _dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def canvas_conditions(cfg: Data) -> Conditions:
    """The (object, style) conditions found under ``data.root`` (directory listings only; no image is read)."""
    root = _root(cfg)
    found = _dirs(root)
    if not found:
        raise RaysweepError(f"unlearncanvas: {root} holds no style directories (<Style>/<Object>/<n>.jpg)")
    styles = [s.strip() for s in cfg.styles.split(",") if s.strip()] or found
    for s in styles:
        if s not in found:
            raise ConfigError(f"unknown style {s!r} in data.styles; {root} has {', '.join(found)}")
    if len(set(styles)) != len(styles):
        raise ConfigError(f"data.styles must name distinct styles, got {cfg.styles!r}")
    objects = _dirs(root / styles[0])
    if not objects:
        raise RaysweepError(f"unlearncanvas: {root / styles[0]} holds no object directories")
    for s in styles[1:]:
        if _dirs(root / s) != objects:
            raise RaysweepError(f"unlearncanvas: {root / s} holds objects {_dirs(root / s)}, {root / styles[0]} "
                                f"holds {objects}; every style needs the same objects")
    return Conditions(tuple(objects), tuple(styles))


def _files(cell: Path) -> list[Path]:
    files = [p for p in cell.iterdir() if p.suffix.lower() in SUFFIXES]
    if not files:
        raise RaysweepError(f"unlearncanvas: no images ({', '.join(SUFFIXES)}) in {cell}")
    return sorted(files, key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.name))


def _test_mask(n: int, cfg: Data, style: str, obj: str) -> np.ndarray:
    """Which of a cell's n images are held out. Seeded by (split_seed, style, object), so a cell splits the
    same whichever other styles are selected."""
    rng = np.random.default_rng(zlib.crc32(f"{cfg.split_seed}/{style}/{obj}".encode()))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:round(n * cfg.test_fraction) if n > 1 else 0]] = True
    return mask


def _read(path: Path, resolution: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if resolution and im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise RaysweepError(f"unlearncanvas: cannot read {path}: {e}") from None


def read_all(paths: list[Path], resolution: int, workers: int = min(16, os.cpu_count() or 1)) -> list[np.ndarray]:
    """Decode (and resize) every image; PIL decodes outside the GIL, so threads scale with cores."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: _read(p, resolution), paths))


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return torch.cat([c.float() / 127.5 - 1.0 for c in x.split(1024)])  # chunks: no second full-size float copy


def load_unlearncanvas(cfg: Data, conds: Conditions) -> Dataset:
    root = Path(cfg.root)
    paths, labels, test = [], [], []
    for s, style in enumerate(conds.styles):
        for o, obj in enumerate(conds.objects):
            files = _files(root / style / obj)
            paths += files
            labels += [conds.index(o, s)] * len(files)
            test += _test_mask(len(files), cfg, style, obj).tolist()
    if not any(test):
        raise RaysweepError(f"unlearncanvas: the test split is empty (data.test_fraction={cfg.test_fraction}; a "
                            "style/object cell needs >= 2 images to hold one out)")
    images = read_all(paths, cfg.resolution)
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise RaysweepError(f"unlearncanvas: images differ in size {sorted(sizes)[:3]}; set data.resolution")
    part = lambda held: (_tensor([im for im, t in zip(images, test) if t == held]),  # noqa: E731
                         torch.tensor([y for y, t in zip(labels, test) if t == held], dtype=torch.int64))
    return Dataset("unlearncanvas", *part(False), *part(True), conds)
