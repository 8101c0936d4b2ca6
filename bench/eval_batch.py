"""The evaluation's sampling chunk (`eval.batch_size`): samples per second at each chunk size, side by side.

    python bench/eval_batch.py [--n 1000] [--sizes 64 128 250 500] [--steps 25] [--rounds 2]
Prints one JSON object: per chunk size, the best wall time over alternating rounds, samples/s, the speed ratio to
the default chunk (`eval.batch_size`, always measured), and the max abs difference of its images from the default chunk's (same noise, DDIM).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import digits_unet, json_stdout, machine  # noqa: E402

from raysweep.config import Eval, Schedule  # noqa: E402
from raysweep.diffusion import sample  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation pass (a retain set of 10 classes)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 250, 500])
    p.add_argument("--steps", type=int, default=Eval.steps)
    p.add_argument("--preset", default="digits")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    device, model = digits_unet(a.preset)
    noise = torch.randn(a.n, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    labels = (torch.arange(a.n) % 10).to(device)

    def run(b: int) -> torch.Tensor:  # what evaluate.DiffusionGenerator does with chunks of b
        return torch.cat([sample(model, labels[i:i + b], noise[i:i + b], schedule=Schedule(), steps=a.steps,
                                 guidance=1.5) for i in range(0, a.n, b)])

    default = Eval.batch_size
    sizes = sorted(set(a.sizes) | {default})
    ref = run(default)
    best = {b: float("inf") for b in sizes}
    diff = {b: float((run(b) - ref).abs().max()) for b in sizes}
    for _ in range(a.rounds):  # alternating, so drift in the machine's speed hits every size alike
        for b in sizes:
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            run(b)
            if device == "cuda":
                torch.cuda.synchronize()
            best[b] = min(best[b], time.perf_counter() - t)
    base = best[default]
    with json_stdout() as emit:
        emit({"bench": "eval_batch", "what": f"{a.n} samples, DDIM {a.steps} steps, guidance 1.5, preset {a.preset}, "
              f"chunks of each size; best of {a.rounds} alternating rounds", "machine": machine(), "device": device,
              "default_chunk": default,
              "results": [{"chunk": b, "seconds": round(best[b], 3), "samples_per_s": round(a.n / best[b], 1),
                           "speedup_vs_default": round(base / best[b], 3), "max_abs_diff_vs_default": diff[b]}
                          for b in sizes]})


if __name__ == "__main__":
    main()
