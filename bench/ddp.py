"""Unlearning steps/s of the finetune loop on 1 process vs W data-parallel processes (gloo on CPU, nccl on GPUs),
at the same global batch, and how far the W-process loss curve is from the 1-process one.

    python bench/ddp.py [--workers 2] [--steps 40] [--batch 128] [--rounds 2]
Prints one JSON object. 1 process gets all the threads the W processes share (the same CPUs), so the ratio is what
splitting a trial across workers buys on this machine. On 2 cores expect little: the point is the overhead.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from raysweep.config import Data, Model, Schedule  # noqa: E402
from raysweep.data import stream  # noqa: E402
from raysweep.datasets import load_dataset  # noqa: E402
from raysweep.diffusion import DenoisingLoss, make_unet  # noqa: E402
from raysweep.loop import optimize  # noqa: E402


def run(steps: int, batch: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    ds = load_dataset(Data())
    torch.manual_seed(0)
    model = make_unet(Model(), "digits", 1, 8, 10)
    loss = DenoisingLoss(Schedule(), 0.1)
    start = time.perf_counter()
    res = optimize(model, lambda m, b, s: loss(m, *b["d"]), {"d": stream(ds.train_x, ds.train_y, batch, 0)}, steps,
                   lr=1e-3, seed=0)
    return {"steps_per_s": res.steps_run / (time.perf_counter() - start), "losses": res.losses}


def _rank(r: int, world: int, init: str, steps: int, batch: int, threads: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=r, world_size=world)
    try:
        got = run(steps, batch, threads)
        if r == 0:
            Path(out).write_text(json.dumps(got))
    finally:
        dist.destroy_process_group()


def parallel(world: int, steps: int, batch: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.json")
        mp.spawn(_rank, args=(world, f"file://{tmp}/pg", steps, batch, threads, out), nprocs=world)
        return json.loads(Path(out).read_text())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    cores = os.cpu_count() or 1
    rates, curves = {"1": [], str(a.workers): []}, {}
    for _ in range(a.rounds):  # alternate, so machine noise hits both alike
        one = run(a.steps, a.batch, cores)
        many = parallel(a.workers, a.steps, a.batch, max(1, cores // a.workers))
        rates["1"].append(one["steps_per_s"])
        rates[str(a.workers)].append(many["steps_per_s"])
        curves = {"1": one["losses"], str(a.workers): many["losses"]}
    best = {k: max(v) for k, v in rates.items()}
    gap = max(abs(x - y) / abs(x) for x, y in zip(curves["1"], curves[str(a.workers)]))
    print(json.dumps({"bench": "ddp", "what": f"digits preset UNet, global batch {a.batch}, {a.steps} steps x "
                      f"{a.rounds} rounds; 1 process x {cores} threads vs {a.workers} x {max(1, cores // a.workers)}",
                      "machine": machine(), "steps_per_s": best, "ratio": best[str(a.workers)] / best["1"],
                      "max_relative_loss_gap": gap}))


if __name__ == "__main__":
    main()
