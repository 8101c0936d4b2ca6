"""Batched classifier-free guidance (cond + null in one forward) vs two forwards, on identical noise.

    python bench/cfg_sampling.py [--sizes 200 1000] [--steps 25]
Prints one JSON object: per batch size, both wall times, the speed ratio and the max abs difference.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, digits_unet, machine  # noqa: E402

from raysweep.config import Schedule  # noqa: E402
from raysweep.diffusion import sample  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 200, 1000])  # 200 = one AR(c_u), 1000 = eval chunk
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--preset", default="digits")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    device, model = digits_unet(a.preset)
    rows = []
    for n in a.sizes:
        noise = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(n)).to(device)
        labels = (torch.arange(n) % 10).to(device)
        run = lambda batched: sample(model, labels, noise, schedule=Schedule(), steps=a.steps,  # noqa: E731
                                     guidance=1.5, batched=batched)
        diff = float((run(True) - run(False)).abs().max())
        # interleave the two so drift in machine load hits both alike
        t_two, t_one = best_of(lambda: run(False), a.repeats), best_of(lambda: run(True), a.repeats)
        rows.append({"batch": n, "two_forwards_s": round(t_two, 4), "batched_s": round(t_one, 4),
                     "speedup": round(t_two / t_one, 3), "max_abs_diff": diff})
    print(json.dumps({"bench": "cfg_sampling", "what": f"DDIM {a.steps} steps, guidance 1.5, preset {a.preset}, 8x8",
                      "machine": machine(), "device": device, "results": rows}))


if __name__ == "__main__":
    main()
