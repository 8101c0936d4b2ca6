"""An ASHA-pruned sweep vs the exhaustive sweep over the same grid (method x unlearning steps) on the embedded
default: compute spent (trial seconds) and how much of the exhaustive Pareto front (attack success vs FID) the pruned
sweep recovers.

    python bench/sweep_efficiency.py [--storage DIR]
Prints one JSON object; target: the same front at <= 0.5x the compute.
"""
import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from ray import tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from raysweep import store  # noqa: E402
from raysweep.bases import load_bases  # noqa: E402
from raysweep.experiment import Experiment  # noqa: E402
from raysweep.pareto import front  # noqa: E402
from raysweep.tune import sweep  # noqa: E402

OBJECTIVES = {"ar_dimra_max": "min", "fid_judge": "min"}
# Reports per trial: 1 after unlearning, then one per attack checkpoint (0, 100, 200, 400), then the final one.
ASHA = {"metric": "ar_attacked", "mode": "min", "grace_period": 3, "reduction_factor": 2, "max_t": 6}


def experiment(name: str, prune: dict | None) -> Experiment:
    return Experiment(
        name=name, search="grid", objectives=OBJECTIVES, prune=prune,
        fixed={"attack.steps": (0, 100, 200, 400), "attack.batch_size": 32, "unlearn.batch_size": 32,
              "eval.steps": 5, "eval.n_forget": 100, "eval.n_per_class": 20, "attack.control": False},
        space={"unlearn.method": tune.grid_search(["dimum", "salun", "ga"]),
               "unlearn.steps": tune.grid_search([10, 50, 250])})


def run(storage: str, name: str, prune: dict | None) -> list[dict]:
    out = sweep(experiment(name, prune), storage=storage, name=name, mlflow_uri=None, num_samples=None,
                max_concurrent=1, smoke=False, resume=False, address=None, device="cpu", max_failures=0)
    return pq.read_table(out["results"]).to_pylist()


def summary(rows: list[dict]) -> dict:
    idx, _ = front(rows, OBJECTIVES)
    return {"trials": len(rows), "pruned": sum(r["status"] == "pruned" for r in rows),
            "trial_seconds": round(sum(r["time_total_s"] for r in rows if math.isfinite(r["time_total_s"])), 1),
            "front": sorted((rows[i]["unlearn.method"], rows[i]["unlearn.steps"]) for i in idx)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--storage", default=tempfile.mkdtemp(prefix="rsbench"))
    a = p.parse_args()
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rsb", dir="/tmp"))
    # the base model and judge both sweeps share, built before either is timed
    load_bases(experiment("x", None).trial_config({"unlearn.method": "dimum", "unlearn.steps": 10}),
            store.join(os.path.abspath(a.storage), "store"), False, "cpu")
    full = summary(run(a.storage, "exhaustive", None))
    asha = summary(run(a.storage, "asha", ASHA))
    found = set(map(tuple, asha["front"])) & set(map(tuple, full["front"]))
    print(json.dumps({
        "bench": "sweep_efficiency", "what": "grid dimum/salun/ga x unlearning steps 10/50/250, attack to 400 steps; "
        f"ASHA {ASHA} vs exhaustive; front = non-dominated (ar_dimra_max min, fid_judge min) among finished trials",
        "machine": machine(), "exhaustive": full, "asha": asha,
        "compute_ratio": round(asha["trial_seconds"] / full["trial_seconds"], 3),
        "front_recovered": round(len(found) / max(1, len(full["front"])), 3),
        "target": {"compute_ratio": 0.5, "front_recovered": 1.0}}))


if __name__ == "__main__":
    main()
