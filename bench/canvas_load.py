"""Reading an UnlearnCanvas tree: seconds per 1,000 images, decoding on one thread vs the loader's thread pool,
and the whole load (decode, resize, split, float tensors). The tree is generated (smooth random JPEGs at the
release's 512 px), since the release is not on this machine.

    python bench/canvas_load.py [--styles 3] [--objects 20] [--per-cell 20] [--size 512] [--resolution 256]
Prints one JSON object; ratio = one thread's time / the pool's.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from raysweep.canvas import read_all  # noqa: E402
from raysweep.config import Data  # noqa: E402
from raysweep.datasets import load_dataset  # noqa: E402


def make_tree(root: Path, styles: int, objects: int, per_cell: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for s in range(styles):
        for o in range(objects):
            cell = root / f"Style_{s}" / f"Object{o}"
            cell.mkdir(parents=True)
            for i in range(1, per_cell + 1):
                low = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)  # smooth, like a painting
                Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC).save(cell / f"{i}.jpg", quality=90)
                paths.append(cell / f"{i}.jpg")
    return paths


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--styles", type=int, default=3)
    p.add_argument("--objects", type=int, default=20)
    p.add_argument("--per-cell", type=int, default=20)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--resolution", type=int, default=256)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_tree(Path(tmp), a.styles, a.objects, a.per_cell, a.size)
        read_all(paths[:50], a.resolution)  # warm the page cache and PIL's plugins
        timed = {}
        for name, workers in (("one_thread", 1), ("pool", None)):
            t = time.perf_counter()
            read_all(paths, a.resolution, **({"workers": workers} if workers else {}))
            timed[name] = time.perf_counter() - t
        t = time.perf_counter()
        ds = load_dataset(Data(dataset="unlearncanvas", root=tmp, resolution=a.resolution))
        whole = time.perf_counter() - t
    n = len(paths)
    print(json.dumps({
        "bench": "canvas_load", "machine": machine(), "images": n, "size": a.size, "resolution": a.resolution,
        "decode_s_per_1000": {k: round(v / n * 1000, 2) for k, v in timed.items()},
        "ratio": round(timed["one_thread"] / timed["pool"], 2),
        "whole_load_s": round(whole, 2), "train_test": [len(ds.train_x), len(ds.test_x)],
        "bytes_in_memory": int(ds.train_x.numel() + ds.test_x.numel()) * 4}))


if __name__ == "__main__":
    main()
