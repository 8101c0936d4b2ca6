"""Is DiMUM irreversible where the baselines are not, at the same utility? The study behind docs/results.md.

    python experiments/fair_comparison.py [--out runs/fair] [--phases controls tune confirm budgets]
        [--tune-trials 12] [--workers 2]

Phases (resumable: every finished trial is in OUT/trials.jsonl and, committed, in docs/fair_comparison.jsonl, every
tuning sweep in OUT/fair-tune-<method>/ and, committed, in docs/fair_tuning.csv; a rerun does only what is missing,
so the study can be finished over several sessions and from a fresh clone):
  controls  per base seed: the base model, judge and utility reference; DiMRA on the base at lr 1e-4 and 1e-3
  tune      per method, a sweep on the sweep system (experiments/fair_tune.py: Ray Tune + Optuna's constrained
            NSGA-II) over its own knobs on a tuning seed; its best feasible setting = the lowest ar_dimra_max
            (attack to 1,000 steps at lr 1e-4) among trials meeting the feasibility rule
  confirm   each best feasible setting, and retrain, on 6 fresh replicates (2 base/judge seeds x 3 unlearning/
            attack/evaluation seeds), attacked at lr 1e-4 and 1e-3 to 2,000 steps; a method with no feasible
            setting whose closest one failed only the FID rule has that one confirmed too, for reference only
  budgets   every method at 300 / 1,000 / 3,000 unlearning steps (its tuned knobs otherwise), base 0, 5 seeds,
            attacked at lr 1e-4 to 2,000 steps
Writes docs/results.md (the verdicts, with intervals) and docs/fair_comparison.csv (every row).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fair_tune import FEASIBLE, STUDY, tuning  # noqa: E402

from raysweep.budget import TAU, steps_to_recovery  # noqa: E402
from raysweep.cli import Parser  # noqa: E402
from raysweep.experiment import violations  # noqa: E402
from raysweep.study import Log, ci, job, run_jobs, publish, run_script  # noqa: E402
from raysweep.stats import bootstrap_mean, paired_difference, spearman, verdict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["ga", "salun", "sa", "esd", "erasediff", "dimum"]
BASELINES = [m for m in METHODS if m != "dimum"]
BASES = {0: [0, 1, 2], 1: [3, 4, 5]}  # base/judge seed -> its unlearning/attack/evaluation seeds
# The fewest seeds a verdict over seeds can rest on: n seeds all land on one side of the threshold by chance 1 time
# in 2^n (one-sided sign test), and 2^-5 = 0.031 is the first below 0.05; three seeds agree 1 time in 8 whatever
# the effect, so no interval over three can hold 95 %. The confirmation has 6 per claim, the budgets 5.
MIN_SEEDS = 5
BUDGET_SEEDS = list(range(MIN_SEEDS))  # on base 0: the fewest that can decide claim 4
LRS = (1e-4, 1e-3)
ATTACK = (0, 250, 500, 1000, 2000)
BUDGETS = (300, 1000, 3000)
PARITY = 0.05  # "as robust as retrain": AR within half the forgetting bar (ar_mu <= 0.1) of the control's
CONTROL_EVAL_SEED = 999


EXTRA: dict = {}  # --smoke: the sweep system's smoke settings on every trial


def base_overrides(b: int) -> dict:
    return {**STUDY, **EXTRA, "pretrain.seed": b, "judge.seed": b}


def replicate(b: int, s: int) -> dict:
    return {"unlearn.seed": s, "attack.seed": s, "eval.seed": 1234 + s}


# ---- tuning ------------------------------------------------------------------------------------------------

def tune_all(args) -> dict[str, list[dict]]:
    from ray.tune import Tuner

    from raysweep.tune import sweep

    out = {}
    committed = committed_tuning(Path(args.docs))
    for method in METHODS:
        name = f"fair-tune-{method}"
        table = Path(args.out) / name / "results.parquet"
        stopped = table.exists() and any(r["status"] == "interrupted" for r in pq.read_table(table).to_pylist())
        if (stopped or not table.exists()) and "tune" in args.phases and method in args.methods:
            exp = tuning(method, args.tune_trials)
            exp.fixed.update({"pretrain.seed": 0, "judge.seed": 0})
            start = time.perf_counter()
            resume = Tuner.can_restore(str(Path(args.out).resolve() / name))  # an interrupted tuning sweep
            done = sweep(exp, storage=args.out, name=name, mlflow_uri=None, num_samples=args.tune_trials,
                         max_concurrent=args.workers, smoke=args.smoke, resume=resume, address=None, device="cpu")
            if done.get("interrupted"):  # the study stops with the sweep; a rerun resumes it
                raise KeyboardInterrupt
            print(f"study: tuned {method} in {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
        rows = pq.read_table(table).to_pylist() if table.exists() else committed.get(method, [])
        if rows and not any(r["status"] == "interrupted" for r in rows):  # an interrupted sweep is not tuned yet
            out[method] = rows
    return out


TUNING_COLUMNS = ("trial_id", "status", "error", "unlearn_steps_run", "ar_mu", "ar_mu_lo", "ar_mu_hi", "ar_dimra_max",
                  "recovery", "retain_acc", "retain_drop", "base_retain_acc", "fid_judge", "fid_excess", "base_fid",
                  "fid_delta", "constraints_met", "convergence", "convergence_floor", "seconds")


def write_tuning_csv(tuned: dict[str, list[dict]], path: Path) -> None:
    """Every tuning trial (method, its knobs, what decides feasibility and robustness), committed beside the study's
    rows, so a clone without runs/ still has the tuning and the choice made from it."""
    import pandas as pd

    cols = ["method", *TUNING_COLUMNS, *KNOBS]
    pd.DataFrame([{"method": m, **{k: r.get(k) for k in cols[1:]}} for m, rs in tuned.items() for r in rs],
                 columns=cols).to_csv(path, index=False)


def committed_tuning(docs: Path) -> dict[str, list[dict]]:
    """The tuning rows of docs/fair_tuning.csv by method (used when runs/ holds no tuning sweep of a method)."""
    import pandas as pd

    path = docs / "fair_tuning.csv"
    if not path.exists():
        return {}
    df = pd.read_csv(path, keep_default_na=True)
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) and k in ("error",) else v) for k, v in r.items()}
            for r in df.to_dict("records")]
    out: dict[str, list[dict]] = {}
    for r in rows:
        r["constraints_met"] = bool(r["constraints_met"]) if r.get("constraints_met") == r.get("constraints_met") \
            else False
        out.setdefault(r["method"], []).append({k: v for k, v in r.items() if not (isinstance(v, float)
                                                                                  and math.isnan(v) and k in KNOBS)})
    return out


KNOBS = ("unlearn.steps", "unlearn.lr", "ga.alpha", "salun.alpha", "sa.lam", "esd.eta", "erasediff.lam",
         "dimum.beta", "dimum.alternative")


@dataclass
class Choice:
    """A method's setting for the confirmation: its best feasible tuning trial; when none was feasible, the closest
    one (fewest violated rules, then the smallest FID excess), confirmed for reference only if it failed the FID
    rule alone (it forgot and kept its retain accuracy)."""
    setting: dict
    feasible: bool
    row: dict

    @property
    def confirm(self) -> bool:
        return self.feasible or self.violated() == "FID above base + δ"

    def violated(self) -> str:
        names = {"ar_mu": "not forgotten", "retain_drop": "retain accuracy lost", "fid_excess": "FID above base + δ"}
        return ", ".join(names[k] for k, v in zip(FEASIBLE, violations(self.row, FEASIBLE)) if v > 0)


def choose(rows: list[dict], method: str) -> Choice | None:
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    feasible = [r for r in ok if r.get("constraints_met")]
    if feasible:  # the most robust feasible setting (ties: lower FID)
        r = min(feasible, key=lambda r: (r["ar_dimra_max"], r["fid_judge"]))
    else:
        r = min(ok, key=lambda r: (sum(v > 0 for v in violations(r, FEASIBLE)), r["ar_mu"] > FEASIBLE["ar_mu"][1],
                                   r["fid_excess"]))
    space = tuning(method).space
    return Choice({k: r[k] for k in KNOBS if k in space}, bool(feasible), r)


def read_noise(path: Path) -> dict | None:
    """experiments/reference_noise.py's record, when it has been run."""
    return json.loads(path.read_text()) if path.exists() else None


def runs_of(b: dict) -> tuple[dict, int]:
    """A base's runs of consecutive seeds in that record, and how many seeds each run holds."""
    w = next(v for k, v in b.items() if k.startswith("windows_of_"))
    return w, len(b["eval_seeds"]) - w["n"] + 1


def precise_references(noise: dict | None) -> dict[int, dict]:
    """base seed -> the utility reference experiments/reference_noise.py measured over more evaluation seeds (20)
    than a trial's store holds (5, and until 0e3e452 which 5 depended on the trial that built it)."""
    return {b["base_seed"]: {"base_fid": b["base_fid"][0], "fid_delta": b["limit"] - b["base_fid"][0],
                             "seeds": len(b["eval_seeds"])} for b in (noise or {"bases": []})["bases"]}


def choices(tuning_rows: dict[str, list[dict]], refs: dict[int, dict]) -> tuple[dict, dict]:
    """Each method's tuning rows judged by base 0's precise reference (tuning runs on base 0), and its choice among
    them: the one rule by which the comparison and every study after it (experiments/threat_model.py) pick a
    method's feasible setting. ``refs``: precise_references()."""
    tuned = {m: [judged(r, refs, 0) for r in rs] for m, rs in tuning_rows.items()}
    return tuned, {m: choose(rs, m) for m, rs in tuned.items()}


def judged(row: dict, refs: dict[int, dict], base_seed: int) -> dict:
    """``row`` judged by its base's precise reference when there is one: the FID rule with that limit, the other
    two rules as measured; the reference recorded with the row stays, as ``recorded_base_fid`` / ``_fid_delta``."""
    ref = refs.get(base_seed)
    if ref is None or "fid_judge" not in row or "fid_excess" not in row:
        return row
    out = {**row, "recorded_base_fid": row["base_fid"], "recorded_fid_delta": row["fid_delta"],
           "base_fid": ref["base_fid"], "fid_delta": ref["fid_delta"],
           "fid_excess": row["fid_judge"] - ref["base_fid"] - ref["fid_delta"]}
    met = not any(v > 0 for v in violations(out, FEASIBLE))
    for k, value in (("constraints_met", met), ("feasible", int(met))):
        if k in row:
            out[k] = value
    return out


# ---- jobs --------------------------------------------------------------------------------------------------

def control_groups() -> list[list[dict]]:
    return [[job("controls", {**base_overrides(b), "eval.seed": CONTROL_EVAL_SEED, "attack.lr": lr,
                              "attack.steps": ATTACK}, kind="control") for lr in LRS] for b in BASES]


def confirm_groups(best: dict[str, Choice | None]) -> list[list[dict]]:
    groups = []
    for method, choice in {**best, "retrain": Choice({}, True, {})}.items():
        if choice is None or not choice.confirm:
            continue
        setting = choice.setting
        for b, seeds in BASES.items():
            groups.append([job("confirm", {**base_overrides(b), "unlearn.method": method, **setting,
                                           **replicate(b, s), "attack.lr": lr, "attack.steps": ATTACK})
                           for s in seeds for lr in LRS])
    return groups


def selected(groups: list[list[dict]], methods: list[str]) -> list[list[dict]]:
    """The groups of the methods asked for, and retrain's: every method's verdict needs that control."""
    return [g for g in groups if g[0]["overrides"]["unlearn.method"] in [*methods, "retrain"]]


def budget_groups(best: dict[str, Choice | None]) -> list[list[dict]]:
    groups = []
    for method in METHODS:
        choice = best.get(method)
        tuned = choice.setting if choice is not None and choice.feasible else {}  # else the method's defaults
        setting = {k: v for k, v in tuned.items() if k != "unlearn.steps"}
        for s in BUDGET_SEEDS:  # longest first, in one worker: the shorter budgets continue its saved trajectory
            groups.append([job("budgets", {**base_overrides(0), "unlearn.method": method, **setting,
                                           "unlearn.steps": n, **replicate(0, s), "attack.lr": 1e-4,
                                           "attack.steps": ATTACK}) for n in sorted(BUDGETS, reverse=True)])
    return groups


# ---- the report ----------------------------------------------------------------------------------------------

def mean_ci(values, strata=None) -> str:
    return ci(*bootstrap_mean(values, strata))


def by_replicate(rows, metric) -> dict:
    return {(r["overrides"]["pretrain.seed"], r["overrides"]["unlearn.seed"]): r[metric] for r in rows}


def reached(rs: list[dict], tau: float = TAU) -> str:
    """How many replicates the attack brought back to AR >= tau within its budget, and the median first checkpoint
    among those (the others are censored at the budget: a median over all would understate them)."""
    hits = [k for k, censored in (steps_to_recovery(r["ar_dimra"], tau) for r in rs) if not censored]
    budget = max(int(k) for r in rs for k in r["ar_dimra"])
    return f"{len(hits)}/{len(rs)}" + (f" ({statistics.median(hits):g})" if hits else f" (> {budget:,})")


def rule_line(name: str, mean: float, lo: float, hi: float, n: int, threshold: float, holds_when: str) -> str:
    """A claim's line; with fewer than ``MIN_SEEDS`` seeds it is inconclusive whatever the interval: a percentile
    bootstrap over three values spans them, and three values on one side happen 1 time in 8 by chance."""
    v = verdict(lo, hi, threshold, holds_when) if n >= MIN_SEEDS else f"inconclusive (n = {n} < {MIN_SEEDS})"
    side = f"within ±{threshold:g}" if holds_when == "within" else f"{holds_when} {threshold:g}"
    return f"{name}: {ci(mean, lo, hi)} (n = {n}; the claim holds when the interval lies {side}) → **{v}**"


def no_utility(method: str, rows: list[dict]) -> str:
    """Claim 4 read on a method that passes the utility check at no budget says so: the robustness it measures is that
    of a model the feasibility rule rejects, not of a usable unlearner."""
    if any(r.get("feasible") for r in rows):
        return ""
    return (f"; but {method} is feasible at no budget (0 of {len(rows)} trials): this is the robustness of a model "
            f"that fails the utility check, not of a usable unlearner")


def recovery_part(mean: float, lo: float, hi: float, n: int, dropped: bool) -> str:
    """ar_dimra_max = ar_mu + recovery: a drop in it (``dropped``) may be forgetting that completes (ar_mu) while the
    attack brings back as much as before. The recovery's own paired difference says which (from MIN_SEEDS seeds)."""
    which = (f"not read at n < {MIN_SEEDS}" if n < MIN_SEEDS else "the attack brings back less" if hi < 0 else
             "the attack brings back more" if lo > 0 else
             "what the attack brings back is not shown to change"
             + (": the drop is forgetting that completes, not resistance to the attack" if dropped else ""))
    return f"; of it, recovery (max over attack steps k ≥ 1 − ar_mu): {ci(mean, lo, hi)} — {which}"


def write_report(args, tuned: dict[str, list[dict]], best: dict[str, Choice | None], rows: list[dict],
                 pending: tuple[str, ...] = (), record: list[dict] | None = None, noise: dict | None = None) -> str:
    """``rows``: those of the current plan, judged; ``record``: every row ever run (what the compute counts)."""
    record = rows if record is None else record
    ok = [r for r in rows if r.get("status") in ("ok", "diverged")]
    failed = [r for r in rows if r.get("status") == "error"]
    confirm = [r for r in ok if r["phase"] == "confirm"]
    budgets = [r for r in ok if r["phase"] == "budgets"]
    controls = {(r["overrides"]["pretrain.seed"], r["overrides"]["attack.lr"]): r for r in ok
                if r["phase"] == "controls"}
    any_row = next(iter(confirm or budgets), None)
    tune_seconds = sum(r.get("seconds") or 0 for rs in tuned.values() for r in rs if isinstance(r.get("seconds"), float))
    study_seconds = sum(r.get("seconds") or 0 for r in record if isinstance(r.get("seconds"), float))
    dropped = len(record) - len(rows)
    L = ["# Is DiMUM irreversible where the baselines are not, at the same utility?", "",
         "The fair comparison on the embedded default (scikit-learn's 8×8 digits, forget class 3). Regenerate (resumable; "
         "finished trials are skipped, from a fresh clone too): `python3 dev.py exec -- python experiments/fair_comparison.py`. "
         "Every row: `docs/fair_comparison.csv` (and `.jsonl`, the record a rerun resumes from); tuning sweeps: `runs/fair/fair-tune-<method>/` (results.parquet, Optuna study, "
         "MLflow runs).", "",
         f"Compute on this 2-core CPU (two trials at a time, one thread each): tuning {tune_seconds / 3600:.1f} h, "
         f"controls + confirmation + budgets {study_seconds / 3600:.1f} h, each the sum of the trials' wall times "
         f"({len(record)} rows, {sum(r.get('status') == 'error' for r in record)} failed"
         + (f"; {dropped} of them of settings no longer chosen, not reported below" if dropped else "")
         + ") — an upper bound on the work: it includes time the study was "
         "paused or shared the machine with other jobs.", ""]
    if any_row:
        L += [f"Evaluation of every number: sampler {any_row['sampler']}, {any_row['sampling_steps']} steps, guidance "
              f"{any_row['guidance_scale']} (diffusers convention); {any_row['n_samples_forget']} samples of the forgotten "
              f"class (AR with its Wilson 95 % interval), {any_row['n_samples_per_class']} per retained class "
              f"(retain_acc, FID); FID extractor `{any_row['fid_extractor']}` against the {any_row['fid_reference']}. "
              f"Batches of 32 for unlearning and the attack; DiMRA aux = test split minus class 3.", ""]
    L += ["**Feasible** (DESIGN.md §Metrics): `ar_mu` ≤ 0.1, `retain_acc` ≥ base − 0.05, FID ≤ base FID + δ, where "
          "δ = 2 std of the base's FID over its reference's evaluation seeds (20 per base where "
          "`experiments/reference_noise.py` measured them, as below; else the 5 recorded with the row) + the "
          "retrained gold standard's FID above the base's "
          "(a tolerance of sampling noise alone refuses even the gold standard). A method is compared at its best "
          "feasible setting; a method with none is **infeasible**, never robust. **Intervals**: AR — Wilson 95 % over "
          "samples; means over replicates — percentile bootstrap (10,000 resamples) stratified by base seed; "
          "differences — the same bootstrap over replicates paired by (base seed, seed). A verdict is "
          "reproduced / refuted only when its interval lies wholly on one side of the threshold, else inconclusive.",
          ""]

    refs = {}
    for r in ok:
        if "base_fid" in r:
            ref = (r["overrides"]["pretrain.seed"], r["base_retain_acc"], r.get("recorded_base_fid", r["base_fid"]),
                   r.get("recorded_fid_delta", r["fid_delta"]), r.get("fid_delta_noise", math.nan),
                   r.get("fid_retrain_gap", math.nan))
            refs.setdefault(ref, set()).add(r["phase"])
    L += ["## Utility references (per base seed)", "",
          "Recorded with the rows: the reference in the trial's store when it ran, over 5 evaluation seeds, which "
          "until 0e3e452 came from the eval.seed of the trial that built it (now from the base), so one base has "
          "several. Where a base's 20-seed reference has been measured (below), every verdict in this report judges "
          "that base's rows by it instead.",
          "", "| base seed | base retain_acc | base FID | δ (noise + retrain gap) | rows recorded with it |",
          "|---|---|---|---|---|"]
    L += [f"| {b} | {a:.3f} | {f:.3f} | {d:.3f} ({dn:.3f} + {dr:.3f}) | {', '.join(sorted(phases))} |"
          for (b, a, f, d, dn, dr), phases in sorted(refs.items())]
    L += reference_noise(noise)

    L += ["", "## 1. Tuning: each method's best feasible setting", "",
          f"Each method's own knobs (`experiments/fair_tune.py`: steps 20–3,000 log-uniform, lr 1e-5–1e-3, and its "
          f"weight in its original's units), {args.tune_trials} trials of Optuna's constrained NSGA-II on tuning seed "
          "100 (base seed 0), attacked at lr 1e-4 to 1,000 steps; best = lowest `ar_dimra_max` among feasible trials. "
          "A method with no feasible trial is **infeasible**; its closest trial (fewest violated rules, then the "
          "smallest FID excess) is shown, and confirmed below for reference (never for a robustness claim) when it "
          "failed only the FID rule.", "", "![every tuning trial, robustness vs utility](fair_tuning.png)",
          "", "| method | trials | feasible | chosen setting | ar_mu | ar_dimra_max | retain_acc | fid_judge (limit) |",
          "|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        rs = tuned.get(m, [])
        b = best.get(m)
        if not rs or b is None:
            L.append(f"| {m} | {len(rs) or '–'} | – | not tuned yet | | | | |")
            continue
        r = b.row
        setting = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in b.setting.items())
        what = setting if b.feasible else f"**infeasible** — closest: {setting} ({b.violated()})"
        L.append(f"| {m} | {len(rs)} | {sum(bool(r.get('constraints_met')) for r in rs)} | {what} | "
                 f"{r['ar_mu']:.3f} | {r['ar_dimra_max']:.3f} | {r['retain_acc']:.3f} | "
                 f"{r['fid_judge']:.3f} ({r['base_fid'] + r['fid_delta']:.3f}) |")

    L += ["", "## 2. Confirmation: fresh replicates of each best setting", "",
          "2 base/judge seeds × 3 unlearning/attack/evaluation seeds each (none used in tuning); DiMRA to 2,000 "
          "steps. Means with 95 % bootstrap intervals over the replicates.", "",
          "![robustness vs utility at each method's chosen setting](fair_comparison.png)", ""]
    for lr in LRS:
        L += [f"### Attack lr {lr:g}", "",
              "| method | feasible | ar_mu | " + " | ".join(f"AR@{k}" for k in ATTACK[1:])
              + " | ar_dimra_max | recovery | AR ≥ 0.5 reached (median first step) | retain_acc → after attack "
              "| FID (vs base + δ) |",
              "|---|---|---|" + "---|" * (len(ATTACK) - 1) + "---|---|---|---|---|"]
        for m in [*METHODS, "retrain"]:
            rs = [r for r in confirm if r["method"] == m and r["attack_lr"] == lr]
            if not rs:
                why = ("infeasible, not confirmed (see 1)" if best.get(m) is not None and not best[m].confirm
                       else "not run yet")
                L.append(f"| {m} | {why} |" + " |" * (len(ATTACK) + 6))
                continue
            label = m if m == "retrain" or best.get(m) is None or best[m].feasible else f"{m} (infeasible: closest)"
            strata = [r["overrides"]["pretrain.seed"] for r in rs]
            feas = sum(r["feasible"] for r in rs)
            L.append(f"| {label} | {feas}/{len(rs)} | {mean_ci([r['ar_mu'] for r in rs], strata)} | "
                     + " | ".join(mean_ci([r["ar_dimra"].get(str(k), math.nan) for r in rs], strata)
                                  for k in ATTACK[1:])
                     + f" | {mean_ci([r['ar_dimra_max'] for r in rs], strata)} | "
                     f"{mean_ci([r['recovery'] for r in rs], strata)} | {reached(rs)} | "
                     f"{statistics.mean(r['retain_acc'] for r in rs):.3f} → "
                     f"{statistics.mean(r['retain_acc_final'] for r in rs):.3f} | "
                     f"{statistics.mean(r['fid_judge'] for r in rs):.2f} "
                     f"(≤ {statistics.mean(r['base_fid'] + r['fid_delta'] for r in rs):.2f}) |")
        ctl = [controls.get((b, lr)) for b in BASES]
        L += ["", "Control, the same attack on the base model: " + "; ".join(
            f"base seed {b}: " + ", ".join(f"{k}: {v:.2f}" for k, v in c["ar_dimra"].items())
            for b, c in zip(BASES, ctl) if c) + ".", ""]

    L += ["## 3. Equal budgets", "",
          "Every method at 300 / 1,000 / 3,000 unlearning steps with its tuned knobs otherwise (its defaults when "
          f"tuning found no feasible setting), base seed 0, {len(BUDGET_SEEDS)} seeds, DiMRA at lr 1e-4 to 2,000 steps."
          + (f" **{len(budgets)} of {len(METHODS) * len(BUDGETS) * len(BUDGET_SEEDS)} trials so far**: the study is "
             f"resumable and runs the rest next; a verdict on fewer than {MIN_SEEDS} seeds is inconclusive."
             if len(budgets) < len(METHODS) * len(BUDGETS) * len(BUDGET_SEEDS) else ""), "",
          "| method | steps | feasible | ar_mu | ar_dimra_max | recovery | retain_acc | fid_judge | convergence (floor) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        for n in BUDGETS:
            rs = [r for r in budgets if r["method"] == m and r["overrides"]["unlearn.steps"] == n]
            if not rs:
                continue
            L.append(f"| {m} | {n} | {sum(r['feasible'] for r in rs)}/{len(rs)} | {mean_ci([r['ar_mu'] for r in rs])} | "
                     f"{mean_ci([r['ar_dimra_max'] for r in rs])} | {mean_ci([r['recovery'] for r in rs])} | "
                     f"{statistics.mean(r['retain_acc'] for r in rs):.3f} | "
                     f"{statistics.mean(r['fid_judge'] for r in rs):.2f} | "
                     f"{statistics.mean(r['convergence'] for r in rs):.3f} "
                     f"({statistics.mean(r['convergence_floor'] for r in rs):.3f}) |")

    L += ["", "## 4. The paper's claims, here", ""]
    L += verdicts(confirm, budgets, best, pending)
    L += ["", "Every number above is computed by `experiments/fair_comparison.py` from the rows in "
          "`docs/fair_comparison.csv`; none is typed by hand."]
    if failed:
        L += ["", "Failed trials: " + "; ".join(f"{r['key']} ({r.get('error')})" for r in failed) + "."]
    return "\n".join(L) + "\n"


README_MARK = ("<!-- results: written by experiments/fair_comparison.py -->", "<!-- /results -->")


def reference_noise(rec: dict | None) -> list[str]:
    """The limit's own noise, from experiments/reference_noise.py's record when it has been run."""
    if rec is None:
        return []
    L = ["", "### How far the FID limit moves with the evaluation noise it is estimated from", "",
         f"`python experiments/reference_noise.py`: {rec['what']} (`docs/reference_noise.json`).", ""]
    for b in rec["bases"]:
        w, k = runs_of(b)
        n = len(b["eval_seeds"])
        changed = b["fid_verdict_changed"]
        L.append(f"- base seed {b['base_seed']}: base FID over {n} seeds {ci(*b['base_fid'])} (std "
                 f"{b['base_fid_std']:.3f}), retrained {b['retrain_fid']:.3f}: limit **{b['limit']:.3f}**. Over the "
                 f"{w['n']} runs of {k} consecutive seeds: base FID {w['base_fid'][0]:.3f}–{w['base_fid'][1]:.3f}, "
                 f"δ {w['fid_delta'][0]:.3f}–{w['fid_delta'][1]:.3f}, "
                 f"limit {w['limit'][0]:.3f}–{w['limit'][1]:.3f}; "
                 f"{len(b['rows_between_window_limits'])} of the {b['rows_judged']} unlearned models of this base lie "
                 f"in that range (their verdict depended on which {k} seeds their reference happened to use). "
                 f"Judged against the {n}-seed limit, {len(changed)} change their FID verdict" +
                 (":" if changed else "."))
        word = {True: "feasible", False: "infeasible"}
        L += [f"  - {c['phase']} {c['what']}: FID {c['fid']:.3f}, recorded limit {c['recorded_limit']:.3f} → "
              f"{word[c['feasible_now']]} (was {word[bool(c['feasible'])]})" for c in changed]
    return L


def readme_summary(tuned: dict[str, list[dict]], best: dict[str, Choice | None], rows: list[dict],
                   noise: dict | None = None, pending: tuple[str, ...] = ()) -> str:
    """The README's results paragraph: what tuning found per method and the verdicts so far, from the same rows
    (and, when ``noise`` holds experiments/reference_noise.py's record, what the FID limit's own noise changes)."""
    ok = [r for r in rows if r.get("status") in ("ok", "diverged")]
    confirm = [r for r in ok if r["phase"] == "confirm"]
    budgets = [r for r in ok if r["phase"] == "budgets"]
    L = ["Tuning (12 constrained Optuna trials per method, base seed 0, DiMRA at lr 1e-4 to 1,000 steps; "
         "[docs/results.md](docs/results.md) §1):", ""]
    for m in METHODS:
        rs, b = tuned.get(m, []), best.get(m)
        if not rs or b is None:
            L.append(f"- **{m}**: not tuned yet")
            continue
        n_ok = sum(bool(r.get("constraints_met")) for r in rs)
        r = b.row
        what = (f"best feasible setting: ar_mu {r['ar_mu']:.3f}, ar_dimra_max {r['ar_dimra_max']:.3f}, retain_acc "
                f"{r['retain_acc']:.3f}, FID {r['fid_judge']:.2f} (limit {r['base_fid'] + r['fid_delta']:.2f})"
                if b.feasible else f"**infeasible**: {why_infeasible(rs)}")
        L.append(f"- **{m}**: {n_ok}/{len(rs)} trials feasible; {what}")
    L += ["", "One tuning trial per setting is a single seed: these rows choose settings, they decide nothing. The "
          "verdicts come from the confirmation on fresh seeds (§2, §4):", ""]
    L += (verdicts(confirm, budgets, best, pending) if confirm
          else ["- no confirmation rows yet: no verdict on the paper's claims is made here."])
    if noise is not None:
        parts = []
        for b in noise["bases"]:
            (w, k), n = runs_of(b), len(b["eval_seeds"])
            flips = sorted({f"{c['phase']} {c['what']}" for c in b["fid_verdict_changed"]
                            if c["feasible"] != c["feasible_now"]})
            parts.append(f"base {b['base_seed']}: {w['limit'][0]:.3f}–{w['limit'][1]:.3f} over runs of "
                         f"{k} seeds, {b['limit']:.3f} over {n}; feasibility changes against it: "
                         + ("; ".join(flips) + " (now infeasible)" if flips else "none"))
        L += ["", "The FID limit is itself estimated from evaluation noise (§Utility references): " + "; ".join(parts)
              + ". Every verdict above judges the rows of a base by its 20-seed limit."]
    return "\n".join(L) + "\n"


def why_infeasible(rows: list[dict]) -> str:
    """How a method's tuning trials failed the rule, counted: which rules each broke."""
    names = {"ar_mu": "did not forget", "retain_drop": "lost retain accuracy", "fid_excess": "FID above the limit"}
    counts = {v: 0 for v in names.values()}
    bad = 0
    for r in rows:
        if r.get("status") != "ok":
            bad += 1
            continue
        for k, v in zip(FEASIBLE, violations(r, FEASIBLE)):
            counts[names[k]] += v > 0
    parts = [f"{n} {what}" for what, n in counts.items() if n] + ([f"{bad} diverged or failed"] if bad else [])
    return "of its trials, " + ", ".join(parts)


def write_readme(path: Path, text: str) -> None:
    if not path.exists():
        return
    readme = path.read_text()
    start, end = README_MARK
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        path.write_text(head + start + "\n" + text + end + rest.split(end, 1)[1])


def verdicts(confirm: list[dict], budgets: list[dict], best: dict, pending: tuple[str, ...] = ()) -> list[str]:
    """The paper's claims from the confirmation and budget rows; ``pending``: the methods whose chosen setting's
    confirmation is not complete (no verdict on them, nor on a claim pooled over methods)."""
    base_ar = [r["ar_base"] for r in confirm + budgets if isinstance(r.get("ar_base"), float)]
    if not base_ar:
        return ["No confirmation rows yet."]
    if statistics.mean(base_ar) < 0.9:  # a base that does not draw the class has nothing to forget
        return [f"Not testable: the base models draw the class only {statistics.mean(base_ar):.2f} of the time "
                "(< 0.9), so forgetting and recovery cannot be told apart."]
    L = [f"The base models draw class 3 {statistics.mean(base_ar):.3f} of the time (mean over {len(base_ar)} rows), "
         "so there is something to forget and to recover.", ""]
    for lr in LRS:
        rows = [r for r in confirm if r["attack_lr"] == lr]
        by = {m: [r for r in rows if r["method"] == m] for m in [*METHODS, "retrain"]}
        L.append(f"**Attack lr {lr:g}, to 2,000 steps.**")
        L.append("")
        for m in BASELINES:
            rs = by[m]
            if m in pending:
                L.append(f"- 1. {m} reversed by DiMRA: **pending** — its chosen setting's confirmation is not "
                         "complete")
                continue
            if best.get(m) is not None and not best[m].feasible:
                mean, lo, hi = bootstrap_mean([r["ar_dimra_max"] for r in rs], [r["overrides"]["pretrain.seed"] for r
                                                                                in rs]) if rs else (math.nan,) * 3
                L.append(f"- 1. {m} reversed by DiMRA: **infeasible** — no tuning trial both forgot and kept its "
                         f"utility ({best[m].violated()}), so no robustness claim either way (its closest setting: "
                         f"mean ar_dimra_max {ci(mean, lo, hi)}, n = {len(rs)}, for reference)")
                continue
            if not rs:
                continue
            mean, lo, hi = bootstrap_mean([r["ar_dimra_max"] for r in rs], [r["overrides"]["pretrain.seed"] for r in rs])
            L.append(f"- 1. {m} reversed by DiMRA — " + rule_line("mean ar_dimra_max", mean, lo, hi, len(rs), 0.5,
                                                                  "above")
                     + f" (feasible in {sum(r['feasible'] for r in rs)}/{len(rs)} replicates)")
        if "dimum" in pending:
            L.append("- 2., 3. DiMUM: **pending** — its chosen setting's confirmation is not complete")
        elif by["dimum"]:
            rs = by["dimum"]
            mean, lo, hi = bootstrap_mean([r["ar_dimra_max"] for r in rs], [r["overrides"]["pretrain.seed"] for r in rs])
            L.append("- 2. DiMUM stays forgotten under DiMRA at the base's utility — "
                     + rule_line("mean ar_dimra_max", mean, lo, hi, len(rs), 0.1, "below")
                     + f" (feasible in {sum(r['feasible'] for r in rs)}/{len(rs)} replicates)")
            d = by_replicate(rs, "ar_dimra_max")
            strata = {k: k[0] for k in d}
            for m in [*BASELINES, "retrain"]:
                if not by[m]:
                    continue
                mean, lo, hi, n = paired_difference(d, by_replicate(by[m], "ar_dimra_max"), strata)
                if best.get(m) is not None and not best[m].feasible:
                    L.append(f"- 3. DiMUM more robust than {m}: **not comparable** — {m} has no feasible setting "
                             f"(DiMUM − its closest: {ci(mean, lo, hi)}, n = {n}, for reference)")
                    continue
                if m == "retrain":  # the control: the paper's claim is parity with it, not beating it
                    L.append(f"- 3. DiMUM as robust as retrain (paired difference of ar_dimra_max, DiMUM − retrain; "
                             f"parity = within ±{PARITY:g}) — "
                             + rule_line("mean difference", mean, lo, hi, n, PARITY, "within"))
                    continue
                L.append(f"- 3. DiMUM more robust than {m} (paired difference of ar_dimra_max, DiMUM − {m}) — "
                         + rule_line("mean difference", mean, lo, hi, n, 0.0, "below"))
        L.append("")
    L.append("**Unlearning budget (section 3).**")
    L.append("")
    for m in METHODS:
        def per(key: str) -> dict[int, dict[int, float]]:  # steps -> seed -> value
            return {n: {r["overrides"]["unlearn.seed"]: r[key] for r in budgets
                        if r["method"] == m and r["overrides"]["unlearn.steps"] == n} for n in BUDGETS}

        arm, rec = per("ar_dimra_max"), per("recovery")
        if arm[BUDGETS[0]] and arm[BUDGETS[-1]]:
            mean, lo, hi, n = paired_difference(arm[BUDGETS[-1]], arm[BUDGETS[0]])
            L.append(f"- 4. Robustness of {m} grows with unlearning steps (ar_dimra_max at {BUDGETS[-1]} minus at "
                     f"{BUDGETS[0]}, paired by seed) — " + rule_line("mean difference", mean, lo, hi, n, 0.0, "below")
                     + recovery_part(*paired_difference(rec[BUDGETS[-1]], rec[BUDGETS[0]]), hi < 0)
                     + no_utility(m, [r for r in budgets if r["method"] == m]))
    pairs = [(r["convergence"], r["recovery"]) for r in confirm if r["attack_lr"] == 1e-4 and r["method"] != "retrain"
             and math.isfinite(r.get("convergence", math.nan)) and math.isfinite(r.get("recovery", math.nan))]
    if pending:
        L += ["", f"- 5. Convergence predicts attack success: **pending** — pooled over every confirmed method, and "
              f"the confirmation of {', '.join(pending)} is not complete"]
    elif len(pairs) >= 3:
        rho, p, how = spearman(*zip(*pairs))
        v = "reproduced" if rho > 0 and p < 0.05 else "refuted" if rho < 0 and p < 0.05 else "inconclusive"
        L += ["", f"- 5. Convergence predicts attack success (Spearman ρ of `convergence` vs `recovery`, confirmation "
              f"rows at lr 1e-4, one per unlearned model): ρ = {rho:.2f}, permutation p = {p:.3f} ({how}), "
              f"n = {len(pairs)} → **{v}**"]
    return L


def tuning_figure(tuned: dict[str, list[dict]], path: Path) -> None:
    """Every tuning trial, robustness against utility: filled where feasible, hollow where not; the feasibility
    limit on FID (base seed 0) as a line. FID on a log axis: destroyed models sit two orders of magnitude out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    limits = []
    for i, m in enumerate(METHODS):
        rs = [r for r in tuned.get(m, []) if r.get("status") == "ok"]
        for feasible in (True, False):
            pts = [r for r in rs if bool(r.get("constraints_met")) == feasible]
            if pts:
                ax.scatter([r["fid_judge"] for r in pts], [r["ar_dimra_max"] for r in pts], s=36, color=f"C{i}",
                           facecolors=f"C{i}" if feasible else "none",
                           label=f"{m}: {len(pts)} {'feasible' if feasible else 'infeasible'}")
        limits += [r["base_fid"] + r["fid_delta"] for r in rs]
    if limits:
        ax.axvline(statistics.mean(limits), color="gray", ls=":", label="base FID + δ")
    ax.set_xscale("log")
    ax.set(xlabel="fid_judge after unlearning (log; lower is better)", ylabel="ar_dimra_max, lr 1e-4 to 1,000 steps",
           title="Tuning trials (base seed 0, tuning seed 100)", ylim=(-0.03, 1.03))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure(confirm: list[dict], path: Path) -> None:
    """Robustness against utility at each method's chosen setting: mean over replicates with 95 % bootstrap
    intervals on both axes, one panel per attack lr; the base's FID + delta drawn as the feasibility line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LRS), figsize=(6 * len(LRS), 4.2), squeeze=False)
    for ax, lr in zip(axes[0], LRS):
        for i, m in enumerate([*METHODS, "retrain"]):
            rs = [r for r in confirm if r["method"] == m and r["attack_lr"] == lr]
            if not rs:
                continue
            strata = [r["overrides"]["pretrain.seed"] for r in rs]
            fx, fl, fh = bootstrap_mean([r["fid_judge"] for r in rs], strata)
            ay, al, ah = bootstrap_mean([r["ar_dimra_max"] for r in rs], strata)
            ax.errorbar(fx, ay, xerr=[[fx - fl], [fh - fx]], yerr=[[ay - al], [ah - ay]], fmt="*" if m == "retrain"
                        else "o", color=f"C{i}", capsize=3, label=f"{m} ({sum(r['feasible'] for r in rs)}/{len(rs)} "
                        "feasible)")
        limit = [r["base_fid"] + r["fid_delta"] for r in confirm if r["attack_lr"] == lr]
        if limit:
            ax.axvline(statistics.mean(limit), color="gray", ls=":", label="base FID + δ (feasibility)")
        ax.set(xlabel="fid_judge after unlearning (lower is better)", ylabel="ar_dimra_max (lower is better)",
               title=f"DiMRA lr {lr:g} to {ATTACK[-1]} steps; mean and 95% CI over replicates", ylim=(-0.03, 1.03))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "fair"))
    p.add_argument("--phases", nargs="+", default=["controls", "tune", "confirm", "budgets"])
    p.add_argument("--tune-trials", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where results.md and fair_comparison.csv go")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS,
                   help="run only these methods' trials (and retrain's, the control); the report covers every row")
    p.add_argument("--readme", default=str(ROOT / "README.md"), help="whose results paragraph is rewritten")
    p.add_argument("--smoke", action="store_true",
                   help="tiny models and steps: checks the study end to end in minutes (its numbers mean nothing)")
    args = p.parse_args()
    if args.smoke:
        from raysweep.experiment import SMOKE

        global ATTACK, BUDGETS
        EXTRA.update({k: v for k, v in SMOKE.items() if not k.startswith("attack.")})
        ATTACK, BUDGETS = (0, 10, 20), (5, 10, 20)
    out = Path(args.out)
    root = str(out / "store")
    # a smoke run's keys never match the committed rows: it takes none of them in
    log = Log(out / "trials.jsonl", None if args.smoke else Path(args.docs) / "fair_comparison.jsonl")
    tuned: dict = {}  # as judged by the precise references
    recorded: dict = {}
    best: dict = {}

    def report() -> None:
        record = log.rows()
        docs = Path(args.docs)
        publish(record, docs / "fair_comparison.csv")
        planned = {j["key"] for g in control_groups() + confirm_groups(best) + budget_groups(best) for j in g}
        rows = [judged(r, refs, r["overrides"]["pretrain.seed"]) for r in record if r["key"] in planned]
        done = {r["key"] for r in record}
        pending = tuple(sorted({j["overrides"]["unlearn.method"] for g in confirm_groups(best) for j in g
                                if j["key"] not in done}))
        old = (docs / "results.md").read_text() if (docs / "results.md").exists() else ""
        marker = "<!-- feature-unlearning -->"  # experiments/reproduce_styles.py's section, kept
        kept = old[old.index(marker):] if marker in old else ""
        (docs / "results.md").write_text(write_report(args, tuned, best, rows, pending, record, noise) +
                                         ("\n" + kept if kept else ""))
        if tuned:
            tuning_figure(tuned, docs / "fair_tuning.png")
            write_tuning_csv(recorded, docs / "fair_tuning.csv")  # the record: as measured, not as judged here
        write_readme(Path(args.readme), readme_summary(tuned, best, rows, noise, pending))
        confirm = [r for r in rows if r["phase"] == "confirm" and r.get("status") in ("ok", "diverged")]
        if confirm:
            figure(confirm, docs / "fair_comparison.png")

    if "controls" in args.phases:
        run_jobs(control_groups(), root, log, args.workers)
    noise = read_noise(Path(args.docs) / "reference_noise.json")
    refs = precise_references(noise)
    recorded.update(tune_all(args))
    judged_rows, chosen = choices(recorded, refs)
    tuned.update(judged_rows)
    best.update(chosen)
    report()
    if "confirm" in args.phases:
        run_jobs(selected(confirm_groups(best), args.methods), root, log, args.workers, after_each=report)
    if "budgets" in args.phases:
        run_jobs(selected(budget_groups(best), args.methods), root, log, args.workers, after_each=report)
    report()
    print(f"wrote {Path(args.docs) / 'results.md'} and {Path(args.docs) / 'fair_comparison.csv'}")


if __name__ == "__main__":
    run_script(main, "study")
