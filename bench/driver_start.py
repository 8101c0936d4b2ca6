"""What a sweep driver pays before its trials start: its imports, with and without the model stack (diffusers,
torchmetrics, the trial); then a new local Ray runtime and the sweep's new MLflow store, one after the other or at once.

    python bench/driver_start.py [--repeat 5]

The driver imports raysweep.tune, checks every method's config and locates the shared artefacts; since the method
registry loads classes on first lookup and the cache keys live in raysweep/keys.py, none of that imports the model
stack, which only the trial processes need. Each repeat runs both variants in fresh interpreters, alternating, so
that the machine's load falls on both alike. The set-up: MLflow migrates a new SQLite store's schema on its first
connection, which ``sweep`` does in a thread while a new local runtime's ``ray.init`` waits for its processes
(imports excluded from both timings). Prints JSON: best-of-N seconds of each, their ratios, and the modules.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

DRIVER = """
import sys
import raysweep.tune
from raysweep import shared
from raysweep.config import Config
from raysweep.methods import REGISTRY
from raysweep.resolve import resolve
cfg = Config()
for name in REGISTRY:
    cfg.unlearn.method = name
    resolve(cfg)
located = [shared.stored(w, cfg, "/nowhere") for w in shared.shared(cfg, [])]
"""
STACK = ("diffusers", "torchmetrics", "raysweep.trial", "raysweep.diffusion")  # what the driver must not load
WITH_STACK = DRIVER + "import raysweep.trial\n"  # what the driver imported before: tune.py imported the trial


SETUP = """
import os, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
import ray
from raysweep import tracking
from raysweep.tune import connect
d = tempfile.mkdtemp()
start = time.perf_counter()
store = lambda: tracking.experiment_id(f"sqlite:///{d}/mlflow.db", "bench", d + "/mlartifacts")
if sys.argv[1] == "overlapped":
    early = ThreadPoolExecutor(1).submit(store)
    connect(None)
    early.result()
else:
    connect(None)
    store()
print(time.perf_counter() - start)
ray.shutdown()
"""


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def setup_seconds(how: str) -> float:
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rs", dir="/tmp")}
    try:
        out = subprocess.run([sys.executable, "-c", SETUP, how], check=True, capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    lean, full, sequential, overlapped = [], [], [], []
    for _ in range(a.repeat):
        lean.append(seconds(DRIVER))
        full.append(seconds(WITH_STACK))
        sequential.append(setup_seconds("sequential"))
        overlapped.append(setup_seconds("overlapped"))
    loaded = subprocess.run([sys.executable, "-c", DRIVER + f"print(','.join(m for m in {('torch', 'mlflow', *STACK)}"
                             " if m in sys.modules))"], capture_output=True, text=True, check=True)
    print(json.dumps({"bench": "driver_start", "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                      "load_avg_1min": os.getloadavg()[0], "repeat": a.repeat,
                      "driver_s": round(min(lean), 3), "driver_with_model_stack_s": round(min(full), 3),
                      "saved_s": round(min(full) - min(lean), 3), "ratio": round(min(lean) / min(full), 3),
                      "driver_loads": loaded.stdout.strip().split(","),
                      "setup_sequential_s": round(min(sequential), 3), "setup_overlapped_s": round(min(overlapped), 3),
                      "setup_saved_s": round(min(sequential) - min(overlapped), 3),
                      "setup_ratio": round(min(overlapped) / min(sequential), 3)}))


if __name__ == "__main__":
    main()
