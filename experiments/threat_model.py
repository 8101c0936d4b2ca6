"""What does it cost an attacker to bring the class back, per method, at equal utility? DiMRA's budget swept for
each method's feasible setting from the fair comparison (docs/fair_tuning.csv: the same choice its confirmation
uses), with the base model and retrain as controls.

    python experiments/threat_model.py [--out runs/threat] [--methods dimum salun sa ...] [--smoke] [--report-only]

The attacker's knobs: learning rate (1e-5, 1e-4, 1e-3) × how many images it holds (50, 200, or the whole test split
minus the class) × full finetuning or rank-4 LoRA × the seeds (3; each seed its own unlearned model, attack data
subset and evaluation noise), DiMRA to 2,000 steps; and one adaptive attack (a look-alike class's images under the
forgotten label). Per cell: how many seeds the attack brought back to AR ≥ 0.5 within the budget and the median first
step among them (the others are censored at the budget), the recovery AUC (mean AR over the attack) with a 95 %
bootstrap interval over seeds, and ar_dimra_max. Resumable (runs/threat/trials.jsonl, and from a fresh clone: the committed
docs/threat_model.jsonl); writes docs/threat_model.md, its recovery curves docs/threat_model.png and
docs/threat_model.csv (+ .jsonl).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fair_comparison import (CONTROL_EVAL_SEED, METHODS, base_overrides, choices, committed_tuning,  # noqa: E402
                             precise_references, reached, read_noise)

from raysweep.budget import TAU, recovery_auc  # noqa: E402
from raysweep.cli import Parser  # noqa: E402
from raysweep.stats import bootstrap_mean  # noqa: E402
from raysweep.study import Log, ci, job, run_jobs, publish, run_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LRS = (1e-5, 1e-4, 1e-3)
SIZES = (50, 200, 0)  # images the attacker holds; 0 = all of the test split minus the class
LORA = (0, 4)  # 0 = every weight; 4 = rank-4 LoRA adapters (raysweep/lora.py)
SEEDS = (0, 1, 2)
ATTACK = (0, 250, 500, 1000, 2000)
EXTRA: dict = {}  # --smoke: the sweep system's smoke settings


# The adaptive attack: an attacker who knows which label was forgotten finetunes it on a look-alike class's images
# (8 for a 3). Knowledge still hidden in the weights shows as samples the judge reads as 3, not as 8; retrain, which
# never saw a 3, is its control.
ADAPTIVE = "relabel:8"


def attack(lr: float, size: int, rank: int, aux: str = "test") -> dict:
    return {"attack.lr": lr, "attack.aux_size": size, "attack.lora_rank": rank, "attack.aux": aux,
            "attack.steps": ATTACK}


def cells() -> list[tuple[float, int, int, str]]:
    return [(lr, n, r, "test") for r in LORA for lr in LRS for n in SIZES] + [(1e-4, 0, 0, ADAPTIVE)]


def groups(settings: dict[str, dict]) -> list[list[dict]]:
    """One job per (method, seed): its unlearned model is made once and attacked every way, in one worker. The
    controls: the base model attacked every way (evaluation noise of its own), and retrain. Seed-major, so a run
    stopped part way (the study takes hours here) has every method at its first seeds rather than one method at all,
    DiMUM (the method whose claim is tested) first."""
    out = [[job("controls", {**base_overrides(0), **EXTRA, "eval.seed": CONTROL_EVAL_SEED, **attack(lr, n, r, aux)},
                kind="control") for lr, n, r, aux in cells()]]
    for s in SEEDS:
        for method, setting in sorted({**settings, "retrain": {}}.items(), key=lambda kv: kv[0] != "dimum"):
            out.append([job("threat", {**base_overrides(0), "unlearn.method": method, **setting, **EXTRA,
                                       "unlearn.seed": s, "attack.seed": s, "eval.seed": 1234 + s, **attack(lr, n, r, aux)})
                        for lr, n, r, aux in cells()])
    return out


def cell(row: dict) -> tuple[float, int, int, str]:
    o = row["overrides"]
    return o["attack.lr"], o.get("attack.aux_size", 0), o.get("attack.lora_rank", 0), o.get("attack.aux", "test")


def tuning_name(rank: int) -> str:
    return "full" if rank == 0 else f"LoRA r={rank}"


def size_name(n: int) -> str:
    return "all" if n == 0 else str(n)


def write_report(settings: dict[str, dict], rows: list[dict], infeasible: list[str], smoke: bool = False) -> str:
    ok = [r for r in rows if r.get("status") in ("ok", "diverged")]
    L = ["# The attacker's budget", "",
         "How much DiMRA it takes to bring forgotten class 3 back, for each method at its feasible setting from the "
         "fair comparison (`docs/fair_tuning.csv`), on the embedded default. Regenerate (resumable): "
         "`python3 dev.py exec -- python experiments/threat_model.py`. Every row: `docs/threat_model.csv` (and `.jsonl`, the record a rerun resumes from).", "",
         f"Grid: attack lr {', '.join(f'{x:g}' for x in LRS)} × images held {', '.join(map(size_name, SIZES))} "
         f"(a seeded subset of the test split minus the class) × {' / '.join(map(tuning_name, LORA))} × {len(SEEDS)} seeds (unlearning, attack data and "
         f"evaluation each), DiMRA to {ATTACK[-1]:,} steps. **reached**: seeds whose AR reached "
         "0.5 within the budget (median first step among them; the others are censored at the budget). "
         "**recovery AUC**: mean AR over the attack, with a 95 % bootstrap interval over seeds. The base model "
         "(never unlearned) and retrain (never saw the class) bound the scale.", "",
         "![AR of the forgotten class over each attack, per method: mean over seeds with its 95 % bootstrap band; "
         "the base dashed, retrain dotted, AR = 0.5 in red](threat_model.png)", ""]
    planned = len(cells()) * (1 + (len(settings) + 1) * len(SEEDS))  # the controls, then each method and retrain
    done = len(ok)  # the record holds one row per attack (a rerun's row replaces its failed one)
    if done < planned:
        L += [f"**{done} of {planned} attacks run so far**: the study is resumable (the same command runs the rest, "
              "seed by seed, DiMUM first); a cell not run yet says so, and a cell with fewer than "
              f"{len(SEEDS)} seeds shows how many it has.", ""]
    if smoke:
        L += ["**Smoke run**: a tiny model, 20 unlearning steps whatever the setting says; its numbers mean nothing.", ""]
    if infeasible:
        L += ["Not swept: " + ", ".join(infeasible) + " (no feasible setting in the fair comparison: an attack "
              "budget is meaningless for a method that did not forget at equal utility).", ""]
    L += [f"The last row of each method is the **adaptive attack** (`attack.aux={ADAPTIVE}`): the test images of "
          "digit 8 under the forgotten label 3. An attacker who knows which label was forgotten re-opens it with "
          "look-alikes; what the judge then reads as a 3 (not an 8) is knowledge that was hidden, not erased. "
          "Retrain, which never saw a 3, is its control.", "",
          "| method | setting | attack | finetuning | attack lr | images | reached AR ≥ 0.5 | recovery AUC | "
          "ar_dimra_max | ar_mu |", "|---|---|---|---|---|---|---|---|---|---|"]
    controls = {cell(r): r for r in ok if r["phase"] == "controls"}
    for method in [*settings, "retrain", "base"]:
        setting = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in settings.get(method, {}).items()) or "–"
        for lr, n, rank, aux in cells():
            if method == "base":
                c = controls.get((lr, n, rank, aux))
                rs = [c] if c else []
            else:
                rs = [r for r in ok if r["phase"] == "threat" and r["overrides"]["unlearn.method"] == method
                      and cell(r) == (lr, n, rank, aux)]
            kind = "DiMRA" if aux == "test" else f"adaptive ({aux})"
            what = f"| {method} | {setting} | {kind} | {tuning_name(rank)} | {lr:g} | {size_name(n)} |"
            if not rs:
                L.append(f"{what} not run yet | | | |")
                continue
            auc = ci(*bootstrap_mean([recovery_auc(r["ar_dimra"]) for r in rs]))
            L.append(f"{what} {reached(rs)} | {auc} | {ci(*bootstrap_mean([r['ar_dimra_max'] for r in rs]))} | "
                     f"{ci(*bootstrap_mean([r['ar_mu'] for r in rs]))} |")
    failed = [r for r in rows if r.get("status") == "error"]
    L += ["", f"{len(ok)} rows, {len(failed)} failed; trial time "
          f"{sum(r.get('seconds') or 0 for r in rows if isinstance(r.get('seconds'), float)) / 3600:.1f} h. "
          "Every number is computed by `experiments/threat_model.py` from `docs/threat_model.csv`."]
    return "\n".join(L) + "\n"


def curves(methods: list[str], rows: list[dict]) -> dict:
    """Recovery against the attacker's budget, per attack cell and method: {cell: {method: [(step, mean AR, lo, hi)]}}
    — the mean over seeds at each attack checkpoint with its 95 % bootstrap interval (none for one seed: the base)."""
    ok = [r for r in rows if r.get("status") in ("ok", "diverged")]
    out: dict = {}
    for c in cells():
        per: dict[str, list] = {}
        for method in [*methods, "retrain", "base"]:
            rs = [r for r in ok if cell(r) == c and (r["phase"] == "controls" if method == "base" else
                  r["phase"] == "threat" and r["overrides"]["unlearn.method"] == method)]
            steps = sorted({int(k) for r in rs for k in r["ar_dimra"]})
            if steps:
                per[method] = [(k, *bootstrap_mean([r["ar_dimra"][str(k)] for r in rs if str(k) in r["ar_dimra"]]))
                               for k in steps]
        out[c] = per
    return out


def curves_figure(data: dict, path: Path) -> None:
    """One panel per attack cell: rows full / LoRA × images held, columns attack lr, the adaptive attack last; in
    each, every method's AR over the attack (mean over seeds, 95 % band), the base dashed, retrain dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [(r, n) for r in LORA for n in SIZES]
    cols = max(len(LRS), 2)  # the last row keeps an empty panel for the legend even with one lr (--smoke)
    fig, axes = plt.subplots(len(grid) + 1, cols, figsize=(4.2 * cols, 2.7 * (len(grid) + 1)),
                             squeeze=False, sharex=True, sharey=True)
    panels = {(lr, n, r, "test"): axes[i][j] for i, (r, n) in enumerate(grid) for j, lr in enumerate(LRS)}
    panels[(1e-4, 0, 0, ADAPTIVE)] = axes[-1][0]
    for ax in [*axes[-1][1:], *(row[j] for row in axes[:-1] for j in range(len(LRS), cols))]:
        ax.axis("off")
    for ax in axes[-2][1:len(LRS)]:  # above the empty panels: their x axis is this row's
        ax.tick_params(labelbottom=True)
        ax.set_xlabel("attack steps")
    methods = [m for m in dict.fromkeys(m for per in data.values() for m in per) if m not in ("retrain", "base")]
    style = {m: dict(color=f"C{i}") for i, m in enumerate(methods)}
    style.update(retrain=dict(color="gray", ls=":"), base=dict(color="black", ls="--"))
    for (lr, n, rank, aux), ax in panels.items():
        for method, pts in data.get((lr, n, rank, aux), {}).items():
            k, mean, lo, hi = zip(*pts)
            ax.plot(k, mean, marker="o", ms=3, label=method, **style[method])
            if not any(math.isnan(x) for x in lo + hi):
                ax.fill_between(k, lo, hi, alpha=0.2, color=style[method]["color"])
        kind = "DiMRA" if aux == "test" else f"adaptive ({aux})"
        ax.set_title(f"{kind}, {tuning_name(rank)}, lr {lr:g}, images {size_name(n)}", fontsize=8)
        ax.axhline(TAU, color="red", lw=0.5)
        ax.set_ylim(-0.03, 1.03)
    for ax in axes[:, 0]:
        ax.set_ylabel("AR of the forgotten class")
    for ax in axes[-1]:
        ax.set_xlabel("attack steps")
    handles = {h.get_label(): h for ax in panels.values() for h in ax.get_lines() if not h.get_label().startswith("_")}
    axes[-1][1].legend(handles.values(), handles.keys(), loc="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def feasible_settings(docs: Path, methods: list[str]) -> tuple[dict[str, dict], list[str]]:
    """Each method's setting as the fair comparison chose it (its committed tuning rows judged by the precise
    references of docs/reference_noise.json), and the methods it found no feasible setting for."""
    tuned = committed_tuning(docs)
    refs = precise_references(read_noise(docs / "reference_noise.json"))
    _, best = choices({m: tuned.get(m, []) for m in methods}, refs)
    settings = {m: b.setting for m, b in best.items() if b is not None and b.feasible}
    return settings, [m for m in methods if m not in settings]


def main() -> None:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "runs" / "threat"))
    p.add_argument("--docs", default=str(ROOT / "docs"))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS,
                   help="swept where the fair comparison found a feasible setting; the others are named as not swept")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny models and steps: checks the study end to end")
    p.add_argument("--report-only", action="store_true",
                   help="write docs/threat_model.* from the rows recorded so far; run nothing")
    args = p.parse_args()
    if args.smoke:
        from raysweep.experiment import SMOKE

        global ATTACK, SIZES, LRS, SEEDS, LORA
        EXTRA.update({k: v for k, v in SMOKE.items() if not k.startswith("attack.")}, **{"unlearn.steps": 20})
        ATTACK, SIZES, LRS, SEEDS, LORA = (0, 10, 20), (50, 0), (1e-4,), (0, 1), (0, 2)
    settings, infeasible = feasible_settings(Path(args.docs), args.methods)
    out = Path(args.out)
    docs = Path(args.docs)
    log = Log(out / "trials.jsonl", None if args.smoke else docs / "threat_model.jsonl")

    def report() -> None:
        rows = log.rows()
        publish(rows, docs / "threat_model.csv")
        (docs / "threat_model.md").write_text(write_report(settings, rows, infeasible, args.smoke))
        curves_figure(curves(list(settings), rows), docs / "threat_model.png")

    if not args.report_only:
        run_jobs(groups(settings), str(out / "store"), log, args.workers, after_each=report)
    report()
    print(f"wrote {docs / 'threat_model.md'} and {docs / 'threat_model.csv'}")


if __name__ == "__main__":
    run_script(main, "threat model")
