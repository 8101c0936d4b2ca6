"""The GPU check, for a session that has a device machine: what a CUDA GPU gives raysweep's trials.

    python bench/gpu.py [--steps 50] [--device cuda|cpu]
Prints one JSON object: training steps/s of the cifar10 preset at batch 128 in fp32, bf16 autocast, and bf16 +
channels_last; batched vs two-forward CFG sampling; one vs four digit-scale trials packed on the GPU (trials/hour);
a 2-GPU DDP step when two GPUs exist. Without CUDA: one line saying so, exit 0 (``--device cpu`` runs the same
measurements at toy sizes, to check the script itself; its numbers mean nothing).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, machine  # noqa: E402

from raysweep.config import Model, Schedule  # noqa: E402
from raysweep.diffusion import DenoisingLoss, make_unet, sample  # noqa: E402


def train_rate(preset: str, batch: int, size: int, steps: int, device: str, bf16: bool, channels_last: bool) -> float:
    """Optimiser steps per second of the denoising loss (Adam, clipping: the loop's math) on random images."""
    torch.manual_seed(0)
    model = make_unet(Model(preset=preset), preset, 3, size, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, loss = torch.optim.Adam(model.parameters(), lr=1e-4), DenoisingLoss(Schedule(), 0.1)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            value = loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):  # warm-up: kernels chosen, memory allocated
        step()
    return steps / best_of(lambda: [step() for _ in range(steps)], 2)


def cfg_rates(preset: str, batch: int, size: int, device: str) -> dict:
    torch.manual_seed(0)
    model = make_unet(Model(preset=preset), preset, 3, size, 10).to(device).eval()
    noise, labels = torch.randn(batch, 3, size, size, device=device), torch.arange(batch, device=device) % 10
    run = lambda batched: sample(model, labels, noise, schedule=Schedule(), steps=25, guidance=1.5,  # noqa: E731
                                 batched=batched)
    two, one = best_of(lambda: run(False), 2), best_of(lambda: run(True), 2)
    return {"batch": batch, "two_forwards_s": round(two, 4), "batched_s": round(one, 4), "speedup": round(two / one, 3)}


def packing(device: str, steps: int) -> dict:
    """Wall time of one digit-scale training job (a process: its start and imports count, as a trial's do) alone
    vs four at once on the same device: trials per hour."""
    cmd = [sys.executable, __file__, "--worker", "--device", device, "--steps", str(steps)]

    def run(n: int) -> float:
        t = time.perf_counter()
        procs = [subprocess.Popen(cmd) for _ in range(n)]
        if any(p.wait() for p in procs):
            raise RuntimeError("a packed worker failed")
        return time.perf_counter() - t

    run(1)  # CUDA context and kernels warmed in the driver cache
    one, four = run(1), run(4)
    return {"one_s": round(one, 2), "four_s": round(four, 2), "trials_per_hour_1": round(3600 / one, 1),
            "trials_per_hour_4": round(4 * 3600 / four, 1), "throughput_ratio": round(4 * one / four, 3)}


def ddp_rate(steps: int) -> dict | str:
    if torch.cuda.device_count() < 2:
        return f"skipped: {torch.cuda.device_count()} GPU(s)"
    import torch.multiprocessing as mp

    out = mp.get_context("spawn").Queue()
    mp.spawn(_ddp_worker, args=(2, steps, out), nprocs=2, join=True)
    return {"world_size": 2, "steps_per_s": round(out.get(), 2)}


def _ddp_worker(rank: int, world: int, steps: int, out) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    model = DistributedDataParallel(make_unet(Model(preset="cifar10"), "cifar10", 3, 32, 10).cuda(), device_ids=[rank])
    opt, loss = torch.optim.Adam(model.parameters(), lr=1e-4), DenoisingLoss(Schedule(), 0.1)
    x, y = torch.randn(64, 3, 32, 32, device="cuda"), torch.randint(0, 10, (64,), device="cuda")  # 128 in all
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            t = time.perf_counter()
        value = loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    torch.cuda.synchronize()
    if rank == 0:
        out.put(steps / (time.perf_counter() - t))
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.device is None:
        print("bench/gpu.py: no CUDA device here; nothing to measure (run it where `device` lends a GPU)")
        return
    if a.worker:  # one packed "trial": digit-scale training
        train_rate("digits", 64, 8, a.steps, a.device, False, False)
        return
    toy = a.device == "cpu"
    preset, batch, size = ("tiny", 8, 8) if toy else ("cifar10", 128, 32)
    rates = {name: round(train_rate(preset, batch, size, a.steps, a.device, bf16, cl), 2)
             for name, bf16, cl in (("fp32", False, False), ("bf16", True, False), ("bf16_channels_last", True, True))}
    print(json.dumps({
        "bench": "gpu", "what": f"{preset} preset, batch {batch}, {size}x{size}: Adam steps/s of the denoising loss; "
        "DDIM 25 steps CFG sampling; packed digit-scale training jobs; DDP", "machine": machine(),
        "device": a.device, "toy_sizes": toy, "train_steps_per_s": rates,
        "bf16_speedup": round(rates["bf16"] / rates["fp32"], 3),
        "bf16_channels_last_speedup": round(rates["bf16_channels_last"] / rates["fp32"], 3),
        "cfg_sampling": cfg_rates(preset, 16 if toy else 256, size, a.device),
        "packing": packing(a.device, a.steps if toy else 20 * a.steps), "ddp": ddp_rate(a.steps) if not toy else "skipped: cpu"}))


if __name__ == "__main__":
    main()
