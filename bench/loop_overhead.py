"""Steps/s of raysweep's finetune loop vs a bare PyTorch loop doing the same math (Adam, clip, denoising loss).

    python bench/loop_overhead.py [--steps 60] [--rounds 3]
Prints one JSON object; ratio = loop steps/s / bare steps/s (target >= 0.95).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from raysweep.config import Model, Schedule  # noqa: E402
from raysweep.data import stream  # noqa: E402
from raysweep.datasets import load_dataset  # noqa: E402
from raysweep.config import Data  # noqa: E402
from raysweep.diffusion import DenoisingLoss, make_unet  # noqa: E402
from raysweep.loop import optimize  # noqa: E402


def bare(model, loss, it, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        value = loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        opt.step()
        float(value.detach())  # the loop reads the loss every step too (divergence check)
    return steps / (time.perf_counter() - t)


def ours(model, loss, it, steps, lr):
    res = optimize(model, lambda m, b, s: loss(m, *b["d"]), {"d": it}, steps, lr=lr)
    return res.steps_run / res.seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    ds = load_dataset(Data())
    loss = DenoisingLoss(Schedule(), 0.1)
    rates = {"bare": [], "finetune": []}
    for r in range(a.rounds):  # alternate, so machine noise hits both alike
        for name, fn in (("bare", bare), ("finetune", ours)):
            torch.manual_seed(0)
            model = make_unet(Model(), "digits", 1, 8, 10)
            rates[name].append(fn(model, loss, stream(ds.train_x, ds.train_y, a.batch, r), a.steps, 1e-3))
    best = {k: max(v) for k, v in rates.items()}
    print(json.dumps({"bench": "loop_overhead", "what": f"digits preset UNet, batch {a.batch}, {a.steps} steps x "
                      f"{a.rounds} rounds", "machine": machine(), "steps_per_s": best,
                      "ratio": round(best["finetune"] / best["bare"], 3), "target": 0.95}))


if __name__ == "__main__":
    main()
