"""Shared by the benchmarks: what machine ran them, a best-of-n timer, and stdout kept for the result."""
import contextlib
import json
import os
import platform
import sys
import time

import torch


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def digits_unet(preset: str = "digits"):
    """The device and a freshly initialised (seed 0) class-conditional UNet for 8x8 digits, in eval mode: what the
    sampling benchmarks time (the weights do not change how long sampling takes)."""
    from raysweep.config import Model
    from raysweep.diffusion import make_unet

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    return device, make_unet(Model(preset=preset), "digits", 1, 8, 10).to(device).eval()


def best_of(fn, repeats: int = 3) -> float:
    """Minimum wall time of ``repeats`` calls (the least-disturbed run)."""
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


@contextlib.contextmanager
def json_stdout():
    """A benchmark's stdout is its one JSON object, but Ray Tune prints its status tables there. Inside, file
    descriptor 1 is stderr (so whatever the process or its children print lands there); yields the function that
    writes the result to the real stdout."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        yield lambda obj: os.write(real, (json.dumps(obj) + "\n").encode())
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)
