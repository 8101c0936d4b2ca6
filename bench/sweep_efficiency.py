"""The same grid (method x unlearning steps) on the embedded default several ways, each in its own fresh store (so no
arm reuses another's unlearned models or trajectories): exhaustive with nothing shared (``checkpoint_every`` 0),
exhaustive with shared unlearning trajectories (a trial continues from the longest saved prefix of its own
trajectory), ASHA-pruned with shared trajectories, and attacking only the trials still feasible after unlearning
(``attack_feasible_only``) with shared trajectories. Compute spent (trial seconds) and how much of the first arm's
Pareto front (attack success vs FID, over the trials that meet the feasibility rule, as the report takes it) each
recovers; the shared arm's numbers must equal the first arm's exactly.

    python bench/sweep_efficiency.py [--storage DIR] [--arms exhaustive shared asha_shared feasible_only_shared]
Prints one JSON object; target: the same front at <= 0.5x the compute.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from ray import tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import json_stdout, machine  # noqa: E402

from raysweep.bases import load_bases  # noqa: E402
from raysweep.controls import reference  # noqa: E402
from raysweep.resolve import resolve  # noqa: E402
from raysweep.experiment import Experiment  # noqa: E402
from raysweep.pareto import front  # noqa: E402
from raysweep.tune import sweep  # noqa: E402

OBJECTIVES = {"ar_dimra_max": "min", "fid_judge": "min"}
# Reports per trial: 1 after unlearning, then one per attack checkpoint (0, 100, 200, 400), then the final one.
ASHA = {"metric": "ar_attacked", "mode": "min", "grace_period": 3, "reduction_factor": 2, "max_t": 6}


STEPS = [25, 50, 100, 200]
FEASIBLE = {"ar_mu": ("<=", 0.1), "retain_drop": ("<=", 0.05), "fid_excess": ("<=", 0.0)}  # DESIGN.md's rule
ARMS = {  # name -> (ASHA, checkpoint_every, attack_feasible_only)
    "exhaustive": (None, 0, False), "shared": (None, 50, False), "asha_shared": (ASHA, 50, False),
    "feasible_only_shared": (None, 50, True)}


def experiment(name: str, prune: dict | None, checkpoint_every: int, feasible_only: bool = False) -> Experiment:
    return Experiment(
        name=name, search="grid", objectives=OBJECTIVES, prune=prune, constraints=FEASIBLE,
        attack_feasible_only=feasible_only,
        fixed={"attack.steps": (0, 100, 200, 400), "attack.batch_size": 32, "unlearn.batch_size": 32,
               "eval.steps": 5, "eval.n_forget": 100, "eval.n_per_class": 20, "attack.control": False,
               "unlearn.checkpoint_every": checkpoint_every},
        space={"unlearn.method": tune.grid_search(["dimum", "salun", "ga"]), "unlearn.steps": tune.grid_search(STEPS)})


def run(storage: str, base_store: str, name: str) -> list[dict]:
    shutil.copytree(base_store, os.path.join(storage, name, "store"))  # the shared base and judge, nothing else
    out = sweep(experiment(name, *ARMS[name]), storage=os.path.join(storage, name), name=name,
                mlflow_uri=None, num_samples=None, max_concurrent=1, smoke=False, resume=False, address=None,
                device="cpu", max_failures=0)
    return pq.read_table(out["results"]).to_pylist()


def summary(rows: list[dict]) -> dict:
    idx, _ = front(rows, OBJECTIVES, FEASIBLE)
    return {"trials": len(rows), "pruned": sum(r["status"] == "pruned" for r in rows),
            "not_attacked": sum(r.get("attack_skipped") == 1 for r in rows),
            "feasible": sorted((r["unlearn.method"], r["unlearn.steps"]) for r in rows if r.get("constraints_met")),
            "trial_seconds": round(sum(r["time_total_s"] for r in rows if math.isfinite(r["time_total_s"])), 1),
            "front": sorted((rows[i]["unlearn.method"], rows[i]["unlearn.steps"]) for i in idx)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--storage", default=tempfile.mkdtemp(prefix="rsbench"))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    a = p.parse_args()
    arms_run = ["exhaustive", *(k for k in a.arms if k != "exhaustive")]  # the reference arm always runs
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rsb", dir="/tmp"))
    # the base model, judge and utility reference every arm starts from, built before any arm is timed
    base_store = os.path.join(os.path.abspath(a.storage), "base-store")
    cfg = experiment("x", None, 0).trial_config({"unlearn.method": "dimum", "unlearn.steps": 10})
    reference(cfg, load_bases(cfg, base_store, False, "cpu"), resolve(cfg).target, base_store)
    with json_stdout() as emit:  # Tune's tables to stderr
        rows = {k: run(a.storage, base_store, k) for k in arms_run}
        arms = {k: summary(v) for k, v in rows.items()}
        full = set(map(tuple, arms["exhaustive"]["front"]))
        key = lambda r: (r["unlearn.method"], r["unlearn.steps"])  # noqa: E731
        others = [k for k in arms_run if k != "exhaustive"]
        emit({
            "bench": "sweep_efficiency", "what": f"grid dimum/salun/ga x unlearning steps {STEPS}, attack to 400 steps; "
            f"arms {arms_run} (trajectories shared: states every 50 x 2^k steps; ASHA {ASHA}); front = non-dominated "
            f"(ar_dimra_max min, fid_judge min) over trials meeting {FEASIBLE}",
            "machine": machine(), **arms,
            "compute_ratio": {k: round(arms[k]["trial_seconds"] / arms["exhaustive"]["trial_seconds"], 3) for k in others},
            "front_recovered": {k: round(len(set(map(tuple, arms[k]["front"])) & full) / max(1, len(full)), 3)
                                if full else None for k in others},
            **({"shared_results_identical": {key(r): (r["ar_dimra_max"], r["fid_judge"]) for r in rows["exhaustive"]}
                == {key(r): (r["ar_dimra_max"], r["fid_judge"]) for r in rows["shared"]}} if "shared" in rows else {}),
            "target": {"compute_ratio": 0.5, "front_recovered": 1.0}})


if __name__ == "__main__":
    main()
