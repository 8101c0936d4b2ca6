"""raysweep's UNet (``dtype`` read from one weight) vs diffusers' UNet2DModel (``dtype`` found by walking every
submodule, twice per forward), same weights, same inputs: a training step (forward + backward) and a sampling
forward (no grad), the two models timed in turn so drift in machine load hits both alike.

    python bench/unet_dtype.py [--presets tiny digits] [--batches 16 64] [--repeats 5]
Prints one JSON object: per preset and batch, both times, the speed ratio and the max abs difference of outputs.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine  # noqa: E402

from raysweep.config import Model  # noqa: E402
from raysweep.diffusion import make_unet  # noqa: E402


def pair(preset: str, device: str):
    torch.manual_seed(0)
    ours = make_unet(Model(preset=preset), preset, 1, 8, 10).to(device)
    theirs = UNet2DModel.from_config(ours.config).to(device)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def dtype_ms(model, n: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        model.dtype
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--presets", nargs="+", default=["tiny", "digits"])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--calls", type=int, default=20, help="forwards (or steps) per timed run")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for preset in a.presets:
        ours, theirs = pair(preset, device)
        for b in a.batches:
            g = torch.Generator().manual_seed(b)
            x = torch.randn(b, 1, 8, 8, generator=g).to(device)
            t = torch.randint(0, 1000, (b,), generator=g).to(device)
            y = torch.randint(0, 10, (b,), generator=g).to(device)

            def forward(m):
                with torch.no_grad():
                    for _ in range(a.calls):
                        m(x, t, class_labels=y)

            def step(m):
                for _ in range(a.calls):
                    m.zero_grad(set_to_none=True)
                    m(x, t, class_labels=y).sample.square().mean().backward()

            with torch.no_grad():
                diff = float((ours(x, t, class_labels=y).sample - theirs(x, t, class_labels=y).sample).abs().max())
            row = {"preset": preset, "batch": b, "max_abs_diff": diff}
            for name, fn in (("forward", forward), ("train_step", step)):
                fn(ours), fn(theirs)  # warm-up
                times = {"diffusers": [], "raysweep": []}
                for _ in range(a.repeats):  # alternate: one best-of-1 each, a.repeats times
                    times["diffusers"].append(best_of(lambda: fn(theirs), 1))
                    times["raysweep"].append(best_of(lambda: fn(ours), 1))
                slow, fast = min(times["diffusers"]) / a.calls, min(times["raysweep"]) / a.calls
                row[name] = {"diffusers_ms": round(slow * 1e3, 3), "raysweep_ms": round(fast * 1e3, 3),
                             "speedup": round(slow / fast, 3)}
            row["dtype_ms"] = {"diffusers": round(dtype_ms(theirs), 4), "raysweep": round(dtype_ms(ours), 4)}
            rows.append(row)
    print(json.dumps({"bench": "unet_dtype", "what": f"UNet forward (no grad) and train step, 8x8, best of "
                      f"{a.repeats} alternating runs of {a.calls} calls", "machine": machine(), "device": device,
                      "results": rows}))


if __name__ == "__main__":
    main()
