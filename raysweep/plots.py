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
    """One row of images per entry; images in [-1, 1], NCHW."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.6 + 1.5, len(rows) * 0.7 + 0.4), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                img = ((images[c] + 1) / 2).clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        axes[r][0].text(-0.3, 0.5, name, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=7)
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
