"""Pictures of a trial: sample grids and loss curves (matplotlib, written as PNG), drawn by the trial itself
beside its result (the MLflow logger and the report only read the files)."""
from __future__ import annotations

import math
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from . import store  # noqa: E402


def grid_png(path: str, rows: dict[str, torch.Tensor], title: str = "") -> None:
    """One row of images per entry, its name on the left; images in [-1, 1], NCHW. The rows are tiled into one
    picture (torchvision's make_grid, white gaps and white where a row is short) drawn on one axes. With an axes per
    image a trial's three pictures took 2.3-3.8 s, tiled 0.44-0.49 s (fresh interpreters, in turn, 3 each)."""
    from torchvision.utils import make_grid

    n = max(len(v) for v in rows.values())
    first = next(iter(rows.values()))
    blank = torch.ones(first.shape[1:])
    cells = [((images[c] + 1) / 2).clamp(0, 1) if c < len(images) else blank
             for images in rows.values() for c in range(n)]
    pad, h = 2, first.shape[-2]
    mosaic = make_grid(torch.stack(cells), nrow=n, padding=pad, pad_value=1.0)  # 3 channels, grey repeated
    fig, ax = plt.subplots(figsize=(n * 0.6 + 1.5, len(rows) * 0.7 + 0.4))
    ax.imshow(mosaic.permute(1, 2, 0).numpy(), vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))], list(rows), fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def loss_png(path: str, losses: list[float], title: str = "unlearning loss") -> None:
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8)
    ax.set_xlabel("unlearning step")
    ax.set_ylabel("loss (mean pixel MSE terms)")
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def forget_samples(ev, target, gen, n: int = 12):
    """n samples cycling over the target's conditions, on the evaluation's noise (the same for every model)."""
    per = math.ceil(n / len(target.forget))
    images, labels = ev.generate(gen, target.forget, per)
    order = torch.arange(len(labels)).view(len(target.forget), per).t().flatten()[:n]  # interleave the conditions
    return images[order]


def retain_samples(ev, target, gen, limit: int = 40):
    return ev.generate(gen, target.retain[:limit], 1)[0]


def write_pictures(trial_dir: str, target, forget_rows: dict, retain_row, losses: list[float],
                   names: list[str], method: str) -> dict[str, str]:
    """The trial's three pictures, written to its directory (any filesystem): name -> URI."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        drawn = {"forget_class_samples.png": lambda p: grid_png(
                     p, forget_rows, f"{target.spec}: same noise, base / unlearned / attacked"),
                 "retain_samples.png": lambda p: grid_png(
                     p, {"unlearned": retain_row}, "retained: " + ", ".join(names[:10])
                     + (f" ... ({len(names)})" if len(names) > 10 else "")),
                 "loss_curve.png": lambda p: loss_png(p, losses or [float("nan")], f"{method}: unlearning loss")}
        for name, draw in drawn.items():
            draw(os.path.join(tmp, name))
            out[name] = store.put_file(os.path.join(tmp, name), store.join(trial_dir, name))
    return out
