"""Which of a trial's computations give the same bits whatever the thread count and batch size? What a sweep may run
on fewer threads (side by side) without changing a number, and what it may not (raysweep/shared.py relies on it).

    python bench/thread_invariance.py [--steps 100] [--per-class 100]

Training: ``--steps`` pretraining steps of the digits model (fixed seed) on 1 and on 2 threads. Sampling: one
evaluation's retained classes (``--per-class`` each, DDIM, CFG) from one model, on 1 / 2 threads and batches of
100 … 2000. Prints one JSON object: for each, the seconds and whether the result equals the reference bit for bit.
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from raysweep.bases import pretrain_model  # noqa: E402
from raysweep.config import Config  # noqa: E402
from raysweep.datasets import load_dataset  # noqa: E402
from raysweep.evaluate import DiffusionGenerator, class_batch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--per-class", type=int, default=100)
    args = p.parse_args()
    ran_on = machine()  # before the thread counts below change torch's
    cfg = Config()
    cfg.pretrain.steps = args.steps
    ds = load_dataset(cfg.data)

    def digest(model) -> str:
        return hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()

    training, model = {}, None
    for threads in (2, 1):
        torch.set_num_threads(threads)
        m, r = pretrain_model(cfg, ds)
        training[f"{threads} threads"] = {"seconds": round(r.seconds, 2), "weights_sha256": digest(m)[:16]}
        model = model or m  # the 2-thread model samples below
    first = training["2 threads"]["weights_sha256"]
    for v in training.values():
        v["identical"] = v["weights_sha256"] == first

    labels, noise = class_batch(cfg.eval.seed, [c for c in range(10) if c != 3], args.per_class, (1, 8, 8))
    sampling, ref = {}, None
    for threads, batch in ((2, 1000), (2, 100), (2, 250), (2, 500), (2, 2000), (1, 1000), (1, 250)):
        torch.set_num_threads(threads)
        cfg.eval.batch_size = batch
        start = time.perf_counter()
        images = DiffusionGenerator(model.eval(), cfg.eval, cfg.schedule)(labels, noise)
        seconds = time.perf_counter() - start
        ref = images if ref is None else ref
        sampling[f"{threads} threads, batch {batch}"] = {"seconds": round(seconds, 2),
                                                          "identical": bool(torch.equal(images, ref))}
    print(json.dumps({"bench": "thread_invariance", "machine": ran_on, "pretrain_steps": args.steps,
                      "samples": len(labels), "training": training, "sampling": sampling,
                      "reference": "2 threads (sampling: batch 1000, the default eval.batch_size)"}))


if __name__ == "__main__":
    main()
