"""``python -m raysweep.report SWEEP_DIR_OR_URI [--x METRIC] [--y METRIC] [--constraint M<=V] [--out DIR]``

Reads a sweep's ``results.parquet`` (and, when it can, its MLflow runs for sample grids) and writes
``pareto.csv``, ``pareto.png``/``.svg``, ``curves.png`` and a self-contained ``report.html``. Axes and
constraints default to the sweep's own (its ``sweep.json``): the front is over the trials that meet the
constraints; the others are drawn, marked, and never on it.
"""
from __future__ import annotations

if __name__ == "__main__":  # answer --help and bad arguments before the imports below load torch, Ray, MLflow
    from raysweep.commands import report_parser

    report_parser().parse_args()

import base64
import csv
import json
import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from . import store  # noqa: E402
from . import commands  # noqa: E402
from .cli import run  # noqa: E402
from .config import RaysweepError  # noqa: E402
from .experiment import meets, parse_constraints  # noqa: E402
from .pareto import DIRECTIONS, front  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1] / "dashboards" / "report.html.j2"
SETTINGS = ["eval.sampler", "eval.steps", "eval.guidance", "eval.n_forget", "eval.n_per_class",
            "eval.fid_extractor", "eval.seed", "data.dataset", "data.forget_class", "data.target", "attack.aux", "attack.lr"]


def load_rows(sweep: str) -> list[dict]:
    uri = store.join(sweep, "results.parquet")
    if not store.exists(uri):
        raise RaysweepError(f"no sweep results at {uri}")
    fs, path = store.resolve(uri)
    try:
        with fs.open_input_file(path) as f:
            return pq.read_table(f).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise RaysweepError(f"damaged results table {uri}: {str(e).splitlines()[0][:200]}") from None


def parse_objectives(specs: list[str], columns: set[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, _, mode = spec.partition(":")
        mode = mode or DIRECTIONS.get(name, "")
        if name not in columns:
            raise RaysweepError(f"objective {name!r} is not a column of the results table")
        if mode not in ("min", "max"):
            raise RaysweepError(f"objective {name!r}: say name:min or name:max")
        out[name] = mode
    return out


def _method(r: dict) -> str:
    return str(r.get("unlearn.method", "?"))


def _settings_label(rows: list[dict]) -> str:
    r = rows[0]
    return (f"{r.get('eval.sampler')} {r.get('eval.steps')} steps, guidance {r.get('eval.guidance')}, "
            f"n={r.get('eval.n_forget')}/{r.get('eval.n_per_class')}, FID extractor {r.get('eval.fid_extractor')}")


def pareto_plot(rows, idx, x, y, objectives, constraints, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    methods = sorted({_method(rows[i]) for i in idx})
    for m in methods:
        pts = [rows[i] for i in idx if _method(rows[i]) == m and meets(rows[i], constraints)]
        marker = "*" if m == "retrain" else "o"
        ax.scatter([p[x] for p in pts], [p[y] for p in pts], label=m, marker=marker, s=90 if marker == "*" else 30)
    bad = [rows[i] for i in idx if not meets(rows[i], constraints)]
    if bad:
        ax.scatter([p[x] for p in bad], [p[y] for p in bad], marker="x", color="0.6", s=30,
                   label="infeasible (violates a constraint)")
    fr = sorted(front([rows[i] for i in idx], objectives, constraints)[0], key=lambda j: rows[idx[j]][x])
    ax.plot([rows[idx[j]][x] for j in fr], [rows[idx[j]][y] for j in fr], "k--", lw=1, label="Pareto frontier")
    if y.startswith("ar_") and any(isinstance(rows[i].get("ar_base"), float) for i in idx):
        base = [rows[i]["ar_base"] for i in idx if isinstance(rows[i].get("ar_base"), float)]
        ax.axhline(sum(base) / len(base), color="gray", ls=":", label="base model AR(c_u)")
    ax.set_xlabel(f"{x} ({objectives.get(x, '')})")
    ax.set_ylabel(f"{y} ({objectives.get(y, '')})")
    ax.set_title(_settings_label(rows), fontsize=8)
    ax.legend(fontsize=7)
    fig.savefig(out / "pareto.png", dpi=130, bbox_inches="tight")
    fig.savefig(out / "pareto.svg", bbox_inches="tight")
    plt.close(fig)


def _curve(r: dict) -> list[tuple[int, float]]:
    pts = [(int(k.split("/")[1]), v) for k, v in r.items() if k.startswith("ar_dimra/") and isinstance(v, float)
           and math.isfinite(v)]
    return sorted(pts)


def curves_plot(rows, idx, out: Path) -> float:
    """Returns the Spearman correlation of convergence with ar_dimra_max (nan when undefined)."""
    from scipy.stats import spearmanr

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colors = {m: f"C{i}" for i, m in enumerate(sorted({_method(rows[i]) for i in idx}))}
    for i in idx:
        c = _curve(rows[i])
        axes[0].plot([s for s, _ in c], [v for _, v in c], color=colors[_method(rows[i])], alpha=0.7, marker=".")
    axes[0].set(xlabel="DiMRA attack steps", ylabel="AR(c_u)", title="attack curves", ylim=(-0.02, 1.02))
    for m, col in colors.items():
        pts = sorted((rows[i]["unlearn_steps_run"], rows[i]["ar_dimra_final"]) for i in idx if _method(rows[i]) == m)
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=col, label=m)
    axes[1].set(xscale="log", xlabel="unlearning steps run", ylabel="ar_dimra_final",
                title="attack success vs unlearning steps", ylim=(-0.02, 1.02))
    axes[1].legend(fontsize=7)
    pairs = [(rows[i]["convergence"], rows[i]["ar_dimra_max"]) for i in idx
             if isinstance(rows[i].get("convergence"), float) and math.isfinite(rows[i]["convergence"])]
    rho = float("nan")
    if len(pairs) >= 3 and len({p[0] for p in pairs}) > 1 and len({p[1] for p in pairs}) > 1:
        rho = float(spearmanr(*zip(*pairs))[0])
    for i in idx:
        if isinstance(rows[i].get("convergence"), float):
            axes[2].scatter(rows[i]["convergence"], rows[i]["ar_dimra_max"], color=colors[_method(rows[i])])
    axes[2].set(xscale="symlog", xlabel="convergence (relative loss change, end of unlearning)",
                ylabel="ar_dimra_max", title=f"convergence vs attack success (Spearman ρ = {rho:.2f})")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    return rho


def sample_grids(rows, frontier, mlflow_uri: str | None) -> dict[str, str]:
    """trial_id -> data URI of its forget-class sample grid (from MLflow), for the frontier trials."""
    if not mlflow_uri:
        return {}
    from mlflow.tracking import MlflowClient

    client, grids = MlflowClient(mlflow_uri), {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in frontier:
            run_id = rows[i].get("mlflow_run_id")
            if not run_id:
                continue
            try:
                path = client.download_artifacts(run_id, "forget_class_samples.png", tmp)
            except Exception:  # a run without that artifact (e.g. logged before a crash): no picture, no failure
                continue
            grids[rows[i]["trial_id"]] = "data:image/png;base64," + base64.b64encode(open(path, "rb").read()).decode()
    return grids


def _mlflow_default(sweep: str) -> str | None:
    """The sweep's own SQLite store, its artifact locations pointed at this copy of the sweep."""
    db = os.path.abspath(os.path.join(sweep, "mlflow.db"))
    if store.is_remote(sweep) or not os.path.exists(db):
        return None
    from . import tracking  # MLflow only when there is a store to read

    tracking.relocate(db, os.path.join(os.path.dirname(db), "mlartifacts"))
    return f"sqlite:///{db}"


MAX_DOMINANCE = 8  # settings in the dominance table: the front's first, then the closest to it


def replicate_view(rows, idx, objectives, constraints) -> dict | None:
    """Seeds as an axis (uncertainty.py): when some setting ran with more than one seed, each setting's mean and
    95 % interval per objective, the front over the feasible settings' means, and P(row dominates column)."""
    from .uncertainty import dominance_table, replicate_groups, summarize, varying

    groups = [summarize(rows, g, objectives, constraints) for g in replicate_groups(rows, idx)]
    if not any(g["n"] > 1 for g in groups):
        return None
    means = [{"status": "ok", **{m: g[m][0] for m in objectives}} for g in groups]
    feasible_means = [i for i, g in enumerate(groups) if g["feasible"]]
    on_front = set(front([means[i] for i in feasible_means], objectives, {})[0])
    on_front = {feasible_means[j] for j in on_front}
    keys = varying(rows, groups)
    for i, g in enumerate(groups):
        g["label"] = ", ".join(f"{k.split('.')[-1]}={rows[g['rows'][0]].get(k)}" for k in keys) or "all trials"
        g["on_front"] = i in on_front
    x = list(objectives)[0]
    order = sorted(range(len(groups)), key=lambda i: (not groups[i]["on_front"], groups[i][x][0]))
    shown = [groups[i] for i in order[:MAX_DOMINANCE]]
    return {"groups": groups, "shown": shown, "dominance": dominance_table(rows, shown, objectives)}


def sweep_settings(sweep: str) -> dict:
    """The sweep's own objectives and constraints (sweep.json), when it has them."""
    uri = store.join(sweep, "sweep.json")
    return store.read_json(uri) if store.exists(uri) else {}


def build(sweep: str, x: str | None, y: str | None, extra: list[str], out_dir: str, mlflow_uri: str | None,
          constraints: dict | list | None = None) -> dict:
    rows = load_rows(sweep)
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    own = sweep_settings(sweep)
    goals = [f"{k}:{v}" for k, v in (own.get("objectives") or {}).items()]
    if x is None or y is None:  # the sweep's objectives (utility on x, robustness on y), else the usual pair
        pair = (goals[1], goals[0]) if len(goals) >= 2 else ("fid_judge", goals[0] if goals else "ar_dimra_max")
        x, y = x or pair[0], y or pair[1]
    objectives = parse_objectives([x, y, *extra], columns)
    constraints = parse_constraints(own.get("constraints") or {} if constraints is None else constraints)
    x, y = list(objectives)[:2]
    frontier, dropped = front(rows, objectives, constraints)
    idx = [i for i in range(len(rows)) if i not in set(dropped)]
    if not idx:
        raise RaysweepError(f"no finished trials with finite {', '.join(objectives)} in {sweep}")
    feasible = [i for i in idx if meets(rows[i], constraints)]
    note = "" if feasible else ("no trial meets the constraints "
                                + ", ".join(f"{k} {op} {v:g}" for k, (op, v) in constraints.items())
                                + f" ({len(idx)} finished): no Pareto front")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "pareto.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[i] for i in frontier)
    pareto_plot(rows, idx, x, y, objectives, constraints, out)
    rho = curves_plot(rows, idx, out)
    mlflow_uri = mlflow_uri or _mlflow_default(sweep)
    replicates = replicate_view(rows, idx, objectives, constraints)
    html = render(rows, idx, frontier, dropped, objectives, constraints, note, rho,
                  sample_grids(rows, frontier, mlflow_uri), mlflow_uri, out, sweep, replicates)
    (out / "report.html").write_text(html)
    return {"report": str(out / "report.html"), "frontier": [rows[i]["trial_id"] for i in frontier],
            "left_out": [rows[i]["trial_id"] for i in dropped],
            "infeasible": [rows[i]["trial_id"] for i in idx if i not in set(feasible)],
            "objectives": objectives, "constraints": constraints, "note": note,
            "spearman_conv_ar": None if math.isnan(rho) else rho,
            "settings": None if replicates is None else [
                {"setting": g["label"], "n": g["n"], "feasible": g["feasible"], "on_front": g["on_front"],
                 **{m: list(g[m]) for m in objectives}} for g in replicates["groups"]]}


def render(rows, idx, frontier, dropped, objectives, constraints, note, rho, grids, mlflow_uri, out: Path,
           sweep: str, replicates: dict | None = None) -> str:
    import jinja2
    import plotly.graph_objects as go
    import plotly.io as pio

    x, y = list(objectives)[:2]
    hover = lambda r: "<br>".join(f"{k}={r.get(k)}" for k in ("trial_id", "unlearn.method", "unlearn.steps",  # noqa
                                                               "unlearn.stop_ar", "dimum.beta", "dimum.alternative",
                                                               "status") if k in r)
    scatter = go.Figure()
    for m in sorted({_method(rows[i]) for i in idx}):
        pts = [rows[i] for i in idx if _method(rows[i]) == m and meets(rows[i], constraints)]
        scatter.add_trace(go.Scatter(x=[p[x] for p in pts], y=[p[y] for p in pts], mode="markers", name=m,
                                     text=[hover(p) for p in pts], hoverinfo="text"))
    bad = [rows[i] for i in idx if not meets(rows[i], constraints)]
    if bad:
        scatter.add_trace(go.Scatter(x=[p[x] for p in bad], y=[p[y] for p in bad], mode="markers",
                                     name="infeasible", marker={"symbol": "x", "color": "#999"},
                                     text=[hover(p) for p in bad], hoverinfo="text"))
    fr = sorted(frontier, key=lambda i: rows[i][x])
    scatter.add_trace(go.Scatter(x=[rows[i][x] for i in fr], y=[rows[i][y] for i in fr], mode="lines",
                                 name="Pareto frontier", line={"dash": "dash", "color": "black"}))
    if replicates:  # each setting's mean over its seeds, with 95 % bootstrap intervals as error bars
        gs = [g for g in replicates["groups"] if g["n"] > 1]

        def bars(m, lo_or_hi):
            return [abs(g[m][lo_or_hi] - g[m][0]) if math.isfinite(g[m][lo_or_hi]) else 0 for g in gs]

        scatter.add_trace(go.Scatter(
            x=[g[x][0] for g in gs], y=[g[y][0] for g in gs], mode="markers", name="setting mean over seeds (95 % CI)",
            marker={"symbol": "diamond-open", "size": 11, "color": "black"},
            error_x={"type": "data", "symmetric": False, "array": bars(x, 2), "arrayminus": bars(x, 1)},
            error_y={"type": "data", "symmetric": False, "array": bars(y, 2), "arrayminus": bars(y, 1)},
            text=[f"{g['label']} (n = {g['n']})" for g in gs], hoverinfo="text"))
    scatter.update_layout(xaxis_title=f"{x} ({objectives[x]})", yaxis_title=f"{y} ({objectives[y]})",
                          height=480, margin={"t": 30})
    curves = go.Figure()
    for i in idx:
        c = _curve(rows[i])
        curves.add_trace(go.Scatter(x=[s for s, _ in c], y=[v for _, v in c], mode="lines+markers",
                                    name=f"{rows[i]['trial_id']} ({_method(rows[i])})"))
    curves.update_layout(xaxis_title="DiMRA attack steps", yaxis_title="AR(c_u)", height=420, margin={"t": 30})
    link = None
    if mlflow_uri and mlflow_uri.startswith("http"):
        link = lambda r: f"{mlflow_uri.rstrip('/')}/#/runs/{r.get('mlflow_run_id')}"  # noqa: E731
    columns = ["trial_id", "unlearn.method", "unlearn.steps", "unlearn_steps_run", "status", *objectives,
               "ar_mu", "retain_acc", "convergence"]
    columns = list(dict.fromkeys(c for c in columns if any(c in r for r in rows)))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), autoescape=True)
    settings = {k: rows[idx[0]].get(k) for k in SETTINGS}
    return env.get_template(TEMPLATE.name).render(
        title=f"raysweep report: {rows[idx[0]].get('experiment', '')}", objectives=objectives,
        scatter=pio.to_html(scatter, full_html=False, include_plotlyjs=True, div_id="pareto-plot"),
        curves=pio.to_html(curves, full_html=False, include_plotlyjs=False, div_id="curves-plot"),
        frontier=[rows[i] for i in frontier], columns=columns, dropped=[rows[i] for i in dropped],
        constraints=constraints, note=note, infeasible=[rows[i] for i in idx if not meets(rows[i], constraints)],
        grids=grids, link=link, settings=settings, rho=rho, n=len(rows), replicates=replicates, isfinite=math.isfinite,
        static_png="data:image/png;base64," + base64.b64encode((out / "curves.png").read_bytes()).decode(),
        uris=lambda r: {k: store.locate(v, sweep) for k, v in
                        {"unlearned": r.get("unlearned_uri"), **json.loads(r.get("attack_uris") or "{}")}.items()})


def main(argv: list[str] | None = None) -> None:
    args = commands.report_parser().parse_args(argv)

    def job() -> dict:
        if not store.is_remote(args.sweep) and not os.path.isdir(args.sweep):
            raise RaysweepError(f"sweep directory not found: {args.sweep}")
        out = args.out or (os.path.join(args.sweep, "report") if not store.is_remote(args.sweep) else "report")
        store.ensure_writable(out, "--out")
        res = build(args.sweep, args.x, args.y, args.objective, out, args.mlflow_uri, args.constraint)
        if not args.json:
            print(f"report: {res['report']}  (frontier: {len(res['frontier'])} trials; infeasible: "
                  f"{len(res['infeasible'])}; left out: {len(res['left_out'])})"
                  + (f"\n{res['note']}" if res["note"] else ""))
        return res

    run(job, args.json)


if __name__ == "__main__":
    main()
