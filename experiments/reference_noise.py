"""How much does the feasibility rule's FID limit move with the evaluation noise it is estimated from, and which of
the fair comparison's verdicts does that move?

    python experiments/reference_noise.py [--store runs/fair/store] [--bases 0 1] [--seeds 20] [--window 5]

Per base seed of the study (its settings: experiments/fair_tune.py STUDY), the utility reference over ``--seeds``
evaluation seeds (raysweep/controls.py: the base's and the retrained model's FID on each; trained and cached in
``--store``, the study's own store, when missing). From those: the FID limit base_fid + δ of the whole set, and of
every run of ``--window`` consecutive seeds (what a reference of ``eval.reference_seeds`` = window would have
given on that noise). Then every committed row of that base (docs/fair_comparison.jsonl, and the tuning trials in
docs/fair_tuning.csv for base 0) is judged again against the ``--seeds`` limit: the rows whose feasibility changes
are listed, and the rows whose FID lies between the lowest and highest window limit (their verdict depended on
which seeds a reference happened to use). Writes docs/reference_noise.json and prints it. A rerun takes the per-seed
FIDs its last record measured on the same settings and seeds (``--remeasure`` measures them again), so new rows are
judged in seconds even where the study's store is gone.
"""
from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fair_tune import FEASIBLE, STUDY  # noqa: E402

from raysweep.cli import Parser  # noqa: E402
from raysweep.config import Config, apply_overrides  # noqa: E402
from raysweep.experiment import meets  # noqa: E402
from raysweep.metrics import fid_tolerance  # noqa: E402
from raysweep.resolve import resolve  # noqa: E402
from raysweep.stats import bootstrap_mean  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def limit(base: list[float], retrain: list[float]) -> float:
    """controls.reference's limit: the base's mean FID + δ (metrics.fid_tolerance)."""
    return statistics.mean(base) + sum(fid_tolerance(base, retrain))


def windows(base: list[float], retrain: list[float], w: int) -> dict:
    runs = [(base[i:i + w], retrain[i:i + w]) for i in range(len(base) - w + 1)]
    lims = [limit(b, r) for b, r in runs]
    means = [statistics.mean(b) for b, _ in runs]
    deltas = [lim - m for lim, m in zip(lims, means)]
    return {"n": len(runs), "base_fid": [min(means), max(means)], "fid_delta": [min(deltas), max(deltas)],
            "limit": [min(lims), max(lims)]}


def rows_of(base_seed: int, record: Path, tuning: Path) -> list[dict]:
    """Every unlearned model on that base with what its feasibility was judged by: the study's rows (``record``;
    a model attacked at two learning rates is two rows with one FID, counted once) and, for base 0, the tuning
    trials (``tuning``)."""
    out, seen = [], set()
    for line in record.read_text().splitlines():
        r = json.loads(line)
        if r.get("status") == "ok" and r["overrides"].get("pretrain.seed") == base_seed and "fid_judge" in r:
            o = r["overrides"]
            model = (r["phase"], r["method"], json.dumps({k: v for k, v in o.items() if not k.startswith("attack.")}, sort_keys=True))
            if model in seen:
                continue
            seen.add(model)
            what = f"{r['method']} steps={o.get('unlearn.steps', '-')} seed={o.get('unlearn.seed', '-')}"
            out.append({"phase": r["phase"], "what": what, "fid": r["fid_judge"], "ar_mu": r["ar_mu"],
                        "retain_drop": r["retain_drop"], "recorded_limit": r["base_fid"] + r["fid_delta"],
                        "feasible": bool(r.get("feasible"))})
    if base_seed == 0 and tuning.exists():  # the tuning sweeps ran on base 0
        for r in csv.DictReader(tuning.open()):
            if r["status"] == "ok" and r["fid_judge"]:
                out.append({"phase": "tune", "what": f"{r['method']} trial {r['trial_id']}",
                            "fid": float(r["fid_judge"]), "ar_mu": float(r["ar_mu"]),
                            "retain_drop": float(r["retain_drop"]),
                            "recorded_limit": float(r["base_fid"]) + float(r["fid_delta"]),
                            "feasible": r["constraints_met"] == "True"})
    return out


def rejudge(rows: list[dict], lim: float) -> list[dict]:
    """The rows whose FID verdict differs against ``lim``, with their feasibility then (the other two rules as
    recorded)."""
    return [{**row, "limit_now": lim, "feasible_now": meets({**row, "fid_excess": row["fid"] - lim}, FEASIBLE)}
            for row in rows if (row["fid"] <= lim) != (row["fid"] <= row["recorded_limit"])]


def measured(base_seed: int, n: int, store: str, recorded: dict | None) -> tuple[list[int], list[float], list[float]]:
    """The evaluation seeds and the base's and the retrained model's FID on each: from ``recorded`` (the last
    record's entry for this base) when it measured these settings on these seeds — evaluation is deterministic in
    them, so only the rows are judged again — else measured (models and references cached in ``store``)."""
    from raysweep.keys import reference_seeds

    cfg = apply_overrides(Config(), {**STUDY, "pretrain.seed": base_seed, "judge.seed": base_seed,
                                     "eval.reference_seeds": n})
    seeds = reference_seeds(cfg)
    if recorded is not None and recorded["eval_seeds"] == seeds:
        return seeds, recorded["base_fid_by_seed"], recorded["retrain_fid_by_seed"]
    from raysweep.bases import load_bases
    from raysweep.controls import utility

    target = resolve(cfg).target
    bases = load_bases(cfg, store, progress=True)
    b = utility(cfg, bases, target, store, "base", progress=True)
    r = utility(cfg, bases, target, store, "retrain", progress=True)
    return b["seeds"], b["fid"], r["fid"]


def measure(base_seed: int, n: int, w: int, store: str, recorded: dict | None = None) -> dict:
    seeds, base, retrain = measured(base_seed, n, store, recorded)
    lim = limit(base, retrain)
    mean, lo, hi = bootstrap_mean(base)
    rows = rows_of(base_seed, ROOT / "docs" / "fair_comparison.jsonl", ROOT / "docs" / "fair_tuning.csv")
    runs = windows(base, retrain, w)
    lo_lim, hi_lim = runs["limit"]
    return {"base_seed": base_seed, "eval_seeds": seeds, "base_fid_by_seed": base, "retrain_fid_by_seed": retrain,
            "base_fid": [mean, lo, hi], "base_fid_std": statistics.stdev(base), "retrain_fid": statistics.mean(retrain),
            "limit": lim, f"windows_of_{w}": runs, "rows_judged": len(rows), "fid_verdict_changed": rejudge(rows, lim),
            "rows_between_window_limits": [x["what"] for x in rows if lo_lim < x["fid"] <= hi_lim]}


def main() -> None:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=str(ROOT / "runs" / "fair" / "store"))
    p.add_argument("--bases", type=int, nargs="+", default=[0, 1])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--window", type=int, default=5, help="the study's eval.reference_seeds")
    p.add_argument("--json", default=str(ROOT / "docs" / "reference_noise.json"))
    p.add_argument("--remeasure", action="store_true",
                   help="measure the references again even where --json recorded them on the same seeds")
    args = p.parse_args()
    if args.seeds < 2 * args.window:
        raise SystemExit(f"--seeds {args.seeds} must be at least twice --window {args.window}")
    last = json.loads(Path(args.json).read_text()) if Path(args.json).exists() and not args.remeasure else {}
    recorded = {b["base_seed"]: b for b in last.get("bases", [])} if last.get("settings") == STUDY else {}
    out = {"what": f"FID limit from {args.seeds} evaluation seeds vs runs of {args.window}, and the committed rows "
                   f"it re-judges", "settings": STUDY,
           "bases": [measure(b, args.seeds, args.window, args.store, recorded.get(b)) for b in args.bases]}
    text = json.dumps(out, indent=1)
    Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    from raysweep.study import run_script

    run_script(main, "reference_noise")
