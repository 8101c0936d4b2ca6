"""Two trials on two cores: one after the other with 2 threads each (``cpus_per_trial = 2``, the default), or side by
side with 1 thread each (``cpus_per_trial = 1``)? A trial's work in miniature — DiMRA-like finetuning steps at the
attack's batch and one evaluation's sampling — run both ways on the same machine, alternating rounds.

    python bench/trial_packing.py [--steps 100] [--samples 400] [--rounds 2]
Prints one JSON object; ratio = packed throughput / sequential throughput (> 1: pack trials one thread each).
"""
import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def work(threads: int, steps: int, samples: int, seed: int) -> float:
    """One trial's miniature on ``threads`` threads; returns its wall seconds."""
    import torch

    from raysweep.config import Data, Eval, Model, Schedule
    from raysweep.data import stream
    from raysweep.datasets import load_dataset
    from raysweep.diffusion import DenoisingLoss, make_unet
    from raysweep.evaluate import DiffusionGenerator, class_batch
    from raysweep.loop import optimize

    torch.set_num_threads(threads)
    ds = load_dataset(Data())
    torch.manual_seed(seed)
    model = make_unet(Model(), "digits", 1, 8, 10)
    loss = DenoisingLoss(Schedule(), 0.1)
    start = time.perf_counter()
    optimize(model, lambda m, b, s: loss(m, *b["d"]), {"d": stream(ds.train_x, ds.train_y, 64, seed)}, steps, lr=1e-4)
    labels, noise = class_batch(seed, list(range(10)), samples // 10, (1, 8, 8))
    with torch.no_grad():
        DiffusionGenerator(model.eval(), Eval(), Schedule())(labels, noise)
    return time.perf_counter() - start


def sequential(a) -> float:
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(1) as pool:  # a fresh process, as a trial gets
        pool.starmap(work, [(2, a.steps, a.samples, s) for s in (0, 1)])
    return time.perf_counter() - start


def packed(a) -> float:
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(2) as pool:
        pool.starmap(work, [(1, a.steps, a.samples, s) for s in (0, 1)])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    from common import machine

    from raysweep.config import Eval

    walls = {"sequential_2x2threads": [], "packed_2x1thread": []}
    for _ in range(a.rounds):  # alternate, so machine noise hits both alike
        walls["sequential_2x2threads"].append(sequential(a))
        walls["packed_2x1thread"].append(packed(a))
    best = {k: round(min(v), 2) for k, v in walls.items()}
    print(json.dumps({"bench": "trial_packing", "what": f"2 trial miniatures: {a.steps} finetuning steps at batch 64 "
                      f"+ {a.samples} DDIM samples ({Eval().steps} steps), digits preset UNet; best of {a.rounds}",
                      "machine": machine(), "wall_s": best, "all_wall_s": walls,
                      "ratio": round(best["sequential_2x2threads"] / best["packed_2x1thread"], 3)}))


if __name__ == "__main__":
    main()
