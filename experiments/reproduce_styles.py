"""Feature (style) unlearning on digits-styles, without Ray: DiMUM and swap-label (SalUn) forget one style of
every digit, over seeds; writes the "Feature unlearning" section of docs/results.md (the rest of the file is
fair_comparison.py's and is kept).

    python experiments/reproduce_styles.py [--seeds 3] [--target style=inverted] [--out runs/styles] [--set K=V ...]
        [--report-only]

Every trial is appended to OUT/trials.jsonl as it finishes; a rerun skips finished trials.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from raysweep.bases import load_bases
from raysweep.cli import Parser
from raysweep.config import Config, apply_overrides
from raysweep.datasets import digit_styles
from raysweep.evaluate import DiffusionGenerator
from raysweep.resolve import resolve
from raysweep.stats import bootstrap_mean, verdict
from raysweep.study import ci, run_one

ROOT = Path(__file__).resolve().parents[1]


def ms(xs) -> str:
    """Mean over seeds with its 95 % bootstrap interval."""
    return ci(*bootstrap_mean([x for x in xs if x is not None]))

BASE = {"data.dataset": "digits-styles", "pretrain.steps": 3000, "unlearn.steps": 500,
        "attack.steps": (0, 250, 500, 1000), "eval.n_per_class": 25}
# label -> overrides: each method at its own defaults (SalUn's alpha 1e-3 in SalUn's units), and the same unlearned
# models (same seeds; shared through the store) under a 10x stronger attack (lr 1e-3).
METHODS = {"dimum": {"unlearn.method": "dimum"}, "salun": {"unlearn.method": "salun"},
           "dimum, attack lr 1e-3": {"unlearn.method": "dimum", "attack.lr": 1e-3},
           "salun, attack lr 1e-3": {"unlearn.method": "salun", "attack.lr": 1e-3}}
BEGIN, END = "<!-- feature-unlearning -->", "<!-- /feature-unlearning -->"


def config(args, **extra) -> Config:
    cfg = apply_overrides(Config(), {**BASE, "data.target": args.target})
    apply_overrides(cfg, args.overrides)
    return resolve(apply_overrides(cfg, extra)).cfg


def run_all(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = {json.loads(line)["key"]: json.loads(line) for line in log.read_text().splitlines()} if log.exists() else {}
    for seed in range(0 if args.report_only else args.seeds):
        for label, variant in METHODS.items():
            ov = {**variant, "unlearn.seed": seed, "attack.seed": seed}
            key = json.dumps({**ov, "target": args.target, "set": args.overrides}, sort_keys=True)
            if key in done:
                continue
            full = {**BASE, "data.target": args.target, **dict(o.split("=", 1) for o in args.overrides), **ov}
            res = run_one({"key": key, "phase": "styles", "overrides": full}, str(out / "store"))
            done[key] = {**res, "label": label, "overrides": ov}
            with log.open("a") as f:
                f.write(json.dumps(done[key]) + "\n")
            print(f"[{len(done)}] {label} seed {seed} -> {res.get('status')} ua={res.get('ua')} "
                  f"ira={res.get('ira')} cra={res.get('cra')} ar_dimra={res.get('ar_dimra')}", file=sys.stderr)
    return list(done.values())


def base_quality(args) -> dict:
    """The base model's object and style accuracy on its own generations, every (digit, style) pair."""
    cfg = config(args)
    bases = load_bases(cfg, str(Path(args.out) / "store"))
    return bases.evaluator.evaluate(DiffusionGenerator(bases.model, cfg.eval, cfg.schedule))


def section(rows: list[dict], base: dict, args) -> str:
    ok = [r for r in rows if r.get("status") in ("ok", "diverged")]
    first = ok[0]
    steps = list(first["ar_dimra"])
    cmd = ("python3 dev.py exec -- python experiments/reproduce_styles.py --seeds "
           f"{args.seeds} --target {args.target}" + "".join(f" --set {o}" for o in args.overrides))
    lines = [BEGIN, "## Feature unlearning: forgetting a style (digits-styles)", "",
             f"Regenerate: `{cmd}`", "",
             f"Every digit rendered in the styles {', '.join(digit_styles(config(args).data).styles)}; the "
             f"model is conditioned on (digit, style); target `{args.target}` (every digit in that style). Judges "
             f"(real test images): object {base['judge_object_acc']:.3f}, style {base['judge_style_acc']:.3f}. "
             f"Base model on its own generations ({base['n_samples_per_class']} per pair, all 40 pairs): object "
             f"accuracy **{base['object_acc']:.3f}**, style accuracy **{base['style_acc']:.3f}**, fid_judge "
             f"{base['fid_judge']:.3f}.", "",
             f"Unlearning {first['unlearn_steps_run']} steps (budget), DiMRA on the test split minus the style "
             "(learning rate per row). UA = share of target-style samples the style judge does *not* read as the style "
             "(1 − ar_mu); IRA = style accuracy on the other styles; CRA = digit accuracy on the retained pairs.", "",
             "| method | n | attack lr | UA | IRA | CRA | retain_acc | fid_judge | " + " | ".join(f"ar_dimra@{s}" for s in steps)
             + " | ar_dimra_max |", "|---" * (9 + len(steps)) + "|"]
    for m in METHODS:
        rs = [r for r in ok if r.get("label", r["method"]) == m]
        if rs:
            lines.append(f"| {m} | {len(rs)} | {rs[0]['attack_lr']:g} | {ms([r['ua'] for r in rs])} | {ms([r['ira'] for r in rs])} | "
                         f"{ms([r['cra'] for r in rs])} | {ms([r['retain_acc'] for r in rs])} | "
                         f"{ms([r['fid_judge'] for r in rs])} | "
                         + " | ".join(ms([r["ar_dimra"].get(s) for r in rs]) for s in steps)
                         + f" | {ms([r['ar_dimra_max'] for r in rs])} |")
    lines += ["", f"Control (the same attack on the base model): {first.get('ar_dimra_base', {})}.", ""]
    base_ok = base["object_acc"] >= 0.9 and base["style_acc"] >= 0.9
    lines.append(f"- Base ≥ 0.9 object and style accuracy: **{'met' if base_ok else 'not met'}**.")
    for m in METHODS:
        rs = [r for r in ok if r.get("label", r["method"]) == m]
        if rs:
            bars = {"ua": 0.9, "ira": 0.85, "cra": 0.85}
            cis = {k: bootstrap_mean([r[k] for r in rs]) for k in bars}
            each = [verdict(cis[k][1], cis[k][2], bar, "above") for k, bar in bars.items()]
            v = "met" if all(e == "reproduced" for e in each) else "not met" if "refuted" in each else "inconclusive"
            if len(rs) < 5:  # as in the fair comparison: a bootstrap over 2-4 seeds has too little width to decide
                v = f"inconclusive (n = {len(rs)} < 5 seeds; {v} on these intervals)"
            lines.append(f"- {m} (n = {len(rs)} seeds): UA {ci(*cis['ua'])} ≥ 0.9, IRA {ci(*cis['ira'])} and CRA "
                         f"{ci(*cis['cra'])} ≥ 0.85 (met when every interval clears its bar): **{v}**; after DiMRA "
                         f"the style comes back to ar_dimra_max {ms([r['ar_dimra_max'] for r in rs])}.")
    failed = [r for r in rows if r.get("status") == "error"]
    lines += ["", "Failed trials: " + (", ".join(f"{r['key']} ({r['error']})" for r in failed) or "none") + ".", END]
    return "\n".join(lines)


def write_section(text: str, path: Path = ROOT / "docs" / "results.md") -> None:
    old = path.read_text() if path.exists() else ""
    if BEGIN in old:
        old = old[:old.index(BEGIN)] + old[old.index(END) + len(END):].lstrip("\n")
    path.write_text(old.rstrip("\n") + "\n\n" + text + "\n")


def main() -> None:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--target", default="style=inverted")
    p.add_argument("--out", default="runs/styles")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--report-only", action="store_true",
                   help="write the section from the trials finished so far (OUT/trials.jsonl), running none")
    args = p.parse_args()
    rows = run_all(args)
    write_section(section(rows, base_quality(args), args))
    print(f"wrote the feature-unlearning section of {ROOT / 'docs' / 'results.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
