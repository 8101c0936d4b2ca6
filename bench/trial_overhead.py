"""Steps/s of unlearning inside a Ray trial (Train workers W = 0, W = 1, and W = 2 data-parallel) vs the same trial
function called directly, same CPUs (threads shared by the workers), same config, alternating rounds; and where the
CPU went meanwhile (``cpu_sampler.py``, a process of its own): the cores each process used while the trial ran
flat out, how often the trial's threads were preempted, the machine's context switches.

    python bench/trial_overhead.py [--steps 300] [--rounds 2] [--threads 2 1]
Prints one JSON object; ratio = steps/s in the Ray trial / steps/s direct, per torch thread count (target >= 0.95).
``--threads`` below the core count leaves cores to Ray's own processes: on 2 cores, 2 threads against 1 shows what
their wake-ups cost a trial that has every core.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import json_stdout, machine  # noqa: E402
from cpu_sampler import CpuSampler  # noqa: E402

from raysweep import store  # noqa: E402
from raysweep.bases import load_bases  # noqa: E402
from raysweep.experiment import Experiment  # noqa: E402
from raysweep.trial import run_trial  # noqa: E402
from raysweep.tune import sweep  # noqa: E402

# the processes a trial's unlearning runs in: called directly, in Tune's trial actor, in a Ray Train worker
TRIAL = ("benchmark process", "ray::ImplicitFunc", "ray::RayTrainWorker")


def base(steps: int) -> dict:
    # a real digits-preset unlearning phase; a short pretraining (speed does not depend on the base's quality) and a
    # small evaluation keep the rest of the trial short
    return {"unlearn.method": "dimum", "unlearn.steps": steps, "pretrain.steps": 100, "judge.epochs": 5,
            "eval.steps": 5, "eval.n_forget": 40, "eval.n_per_class": 10, "attack.steps": (0,),
            "attack.control": False, "unlearn.checkpoint_every": 0}


def rate(result: dict) -> float:
    return result["unlearn_steps_run"] / result["unlearn_seconds"]


def fresh(root: str, name: str) -> str:
    """A storage of its own holding only the cached base and judge: every measured run unlearns (a shared store
    would hand later runs the first one's unlearned model)."""
    storage = os.path.join(root, name)
    shutil.copytree(os.path.join(root, "seed", "store", "base"), os.path.join(storage, "store", "base"))
    return storage


def direct(exp: Experiment, storage: str) -> float:
    torch.set_num_threads(exp.cpus_per_trial)
    return rate(run_trial(exp.trial_config({}), store.join(storage, "store"), os.path.join(storage, "trial")))


def in_ray(exp: Experiment, storage: str) -> float:
    out = sweep(exp, storage=storage, name=exp.name, mlflow_uri=None, num_samples=1, max_concurrent=1,
                smoke=False, resume=False, address=None, device="cpu")
    assert out["ok"] == 1, out
    (trial,) = list(Path(storage, exp.name, "trials").iterdir())
    return rate(json.loads((trial / "result.json").read_text()))


def measured(run, exp: Experiment, storage: str) -> tuple[float, dict]:
    """``run``'s steps/s, and where the CPU went; busy: the trial ran at 3/4 of its threads or more."""
    with CpuSampler(busy=TRIAL, busy_cores=0.75 * exp.cpus_per_trial) as cpu:
        steps_per_s = run(exp, storage)
    return steps_per_s, cpu.result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    a = p.parse_args()
    root = tempfile.mkdtemp(prefix="rsbench")
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rsb", dir="/tmp"))
    out = {}
    with json_stdout() as emit:  # Tune's tables to stderr
        try:
            for n in a.threads:
                workers = (0, 1, 2) if n >= 2 else (0, 1)  # W = 2 needs a thread per worker
                exps = {f"W={w}": Experiment(name=f"overhead-w{w}", space={}, fixed=base(a.steps), search="grid",
                                             workers=w, cpus_per_trial=n, objectives={"ar_mu": "min"})
                        for w in workers}
                torch.set_num_threads(n)
                load_bases(exps["W=0"].trial_config({}), os.path.join(root, "seed", "store"))  # cached; not timed
                rates: dict[str, list] = {k: [] for k in ("direct", *exps)}
                cpu: dict[str, dict] = {}
                for r in range(a.rounds):  # alternate, so machine noise hits all alike
                    rate_, cpu["direct"] = measured(direct, exps["W=0"], fresh(root, f"direct-{n}-{r}"))
                    rates["direct"].append(rate_)
                    for k in exps:
                        rate_, cpu[k] = measured(in_ray, exps[k], fresh(root, f"{k}-{n}-{r}"))
                        rates[k].append(rate_)
                best = {k: round(max(v), 3) for k, v in rates.items()}
                out[f"{n} threads"] = {"steps_per_s": best, "all": rates,
                                       "ratio": {k: round(best[k] / best["direct"], 3) for k in exps},
                                       "cpu_last_round": cpu}
            emit({"bench": "trial_overhead", "what": f"dimum unlearning, digits preset UNet, batch 64, "
                  f"{a.steps} steps, torch threads {a.threads}, best of {a.rounds} alternating rounds",
                  "machine": machine(), **out, "target": {"W=0": 0.95, "W=1": 0.95}})
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
