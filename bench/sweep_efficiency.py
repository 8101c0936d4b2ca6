"""The same grid (method x unlearning steps) on the embedded default three ways, each in its own fresh store (so no
arm reuses another's unlearned models or trajectories): exhaustive with nothing shared (``checkpoint_every`` 0),
exhaustive with shared unlearning trajectories (a trial continues from the longest saved prefix of its own
trajectory), and ASHA-pruned with shared trajectories. Compute spent (trial seconds) and how much of the first arm's
Pareto front (attack success vs FID) each recovers; the shared arm's numbers must equal the first arm's exactly.

    python bench/sweep_efficiency.py [--storage DIR]
Prints one JSON object; target: the same front at <= 0.5x the compute.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from ray import tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from raysweep.bases import load_bases  # noqa: E402
from raysweep.experiment import Experiment  # noqa: E402
from raysweep.pareto import front  # noqa: E402
from raysweep.tune import sweep  # noqa: E402

OBJECTIVES = {"ar_dimra_max": "min", "fid_judge": "min"}
# Reports per trial: 1 after unlearning, then one per attack checkpoint (0, 100, 200, 400), then the final one.
ASHA = {"metric": "ar_attacked", "mode": "min", "grace_period": 3, "reduction_factor": 2, "max_t": 6}


STEPS = [25, 50, 100, 200]


def experiment(name: str, prune: dict | None, checkpoint_every: int) -> Experiment:
    return Experiment(
        name=name, search="grid", objectives=OBJECTIVES, prune=prune,
        fixed={"attack.steps": (0, 100, 200, 400), "attack.batch_size": 32, "unlearn.batch_size": 32,
               "eval.steps": 5, "eval.n_forget": 100, "eval.n_per_class": 20, "attack.control": False,
               "unlearn.checkpoint_every": checkpoint_every},
        space={"unlearn.method": tune.grid_search(["dimum", "salun", "ga"]), "unlearn.steps": tune.grid_search(STEPS)})


def run(storage: str, base_store: str, name: str, prune: dict | None, checkpoint_every: int) -> list[dict]:
    shutil.copytree(base_store, os.path.join(storage, name, "store"))  # the shared base and judge, nothing else
    out = sweep(experiment(name, prune, checkpoint_every), storage=os.path.join(storage, name), name=name,
                mlflow_uri=None, num_samples=None, max_concurrent=1, smoke=False, resume=False, address=None,
                device="cpu", max_failures=0)
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
    # the base model and judge every arm starts from, built before any arm is timed
    base_store = os.path.join(os.path.abspath(a.storage), "base-store")
    load_bases(experiment("x", None, 0).trial_config({"unlearn.method": "dimum", "unlearn.steps": 10}), base_store,
               False, "cpu")
    rows = {"exhaustive": run(a.storage, base_store, "exhaustive", None, 0),
            "shared": run(a.storage, base_store, "shared", None, 50),
            "asha_shared": run(a.storage, base_store, "asha_shared", ASHA, 50)}
    arms = {k: summary(v) for k, v in rows.items()}
    full = set(map(tuple, arms["exhaustive"]["front"]))
    key = lambda r: (r["unlearn.method"], r["unlearn.steps"])  # noqa: E731
    same = {key(r): (r["ar_dimra_max"], r["fid_judge"]) for r in rows["exhaustive"]} == \
        {key(r): (r["ar_dimra_max"], r["fid_judge"]) for r in rows["shared"]}
    print(json.dumps({
        "bench": "sweep_efficiency", "what": f"grid dimum/salun/ga x unlearning steps {STEPS}, attack to 400 steps; "
        f"exhaustive (nothing shared) vs exhaustive with trajectories shared (states every 50 x 2^k steps) vs "
        f"ASHA {ASHA} with them shared; front = non-dominated (ar_dimra_max min, fid_judge min)",
        "machine": machine(), **arms,
        "compute_ratio": {k: round(arms[k]["trial_seconds"] / arms["exhaustive"]["trial_seconds"], 3)
                          for k in ("shared", "asha_shared")},
        "front_recovered": {k: round(len(set(map(tuple, arms[k]["front"])) & full) / max(1, len(full)), 3)
                            for k in ("shared", "asha_shared")},
        "shared_results_identical": same,
        "target": {"compute_ratio": 0.5, "front_recovered": 1.0}}))


if __name__ == "__main__":
    main()
