"""The robustness-vs-utility report, built from a real smoke sweep and opened in headless Chromium."""
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, assert_one_line_error, run_cli, run_clis

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(smoke_sweep, mlflow_server, tmp_path_factory):
    storage, _ = smoke_sweep
    out = tmp_path_factory.mktemp("report")
    # axes and a constraint every trial meets given explicitly (the smoke sweep's own constraints are feasibility)
    res = run_cli("raysweep.report", str(storage / "smoke"), "--mlflow-uri", mlflow_server, "--out", str(out),
                  "--x", "fid_judge", "--y", "ar_dimra_final", "--constraint", "ar_mu<=1", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads(res.stdout.strip().splitlines()[-1]), storage / "smoke"


def test_report_files_and_frontier(report):
    out, summary, sweep = report
    for name in ("pareto.csv", "pareto.png", "pareto.svg", "curves.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    with (out / "pareto.csv").open() as f:
        frontier = [r["trial_id"] for r in csv.DictReader(f)]
    assert frontier == summary["frontier"] and frontier
    rows = pq.read_table(sweep / "results.parquet").to_pylist()
    x, y = "fid_judge", "ar_dimra_final"
    for r in rows:  # nothing off the frontier dominates a frontier trial
        for f in (q for q in rows if q["trial_id"] in frontier):
            assert not (r[x] <= f[x] and r[y] <= f[y] and (r[x] < f[x] or r[y] < f[y]))
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 1 + len(frontier)  # curves + a sample grid per frontier trial


def test_report_renders_in_chromium(report):
    from playwright.sync_api import sync_playwright

    out, summary, _ = report
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").as_uri())
        page.wait_for_selector("#pareto-plot .main-svg", timeout=30_000)
        box = page.locator("#pareto-plot .main-svg").first.bounding_box()
        points = page.locator("#pareto-plot .scatterlayer .point").count()
        lines = page.locator("#curves-plot .scatterlayer .trace").count()
        rows = page.locator("#pareto-table tr").count()
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert box["width"] > 300 and box["height"] > 200
    assert points >= 3 and lines >= 3  # every smoke trial drawn
    assert rows == 1 + len(summary["frontier"])


def test_a_sweep_feasible_nowhere_is_reported_in_one_line(smoke_sweep, tmp_path):
    storage, _ = smoke_sweep
    res = run_cli("raysweep.report", str(storage / "smoke"), "--constraint", "retain_acc>=1.5", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    note = [ln for ln in res.stdout.splitlines() if "no trial meets the constraints" in ln]
    assert note == ["no trial meets the constraints retain_acc >= 1.5 (3 finished): no Pareto front"]
    assert (tmp_path / "pareto.png").exists() and "no trial meets the constraints" in (tmp_path / "report.html").read_text()
    with (tmp_path / "pareto.csv").open() as f:
        assert len(f.read().strip().splitlines()) == 1  # the header only


def test_report_bad_inputs(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    pq.write_table(pa.table({"trial_id": ["a", "b"], "status": ["error", "error"], "error": ["x", "y"],
                             "fid_judge": [float("nan")] * 2, "ar_dimra_max": [float("nan")] * 2}),
                   sweep / "results.parquet")
    res = run_clis({"missing": ("raysweep.report", str(tmp_path / "nope")), "failed": ("raysweep.report", str(sweep)),
                    "metric": ("raysweep.report", str(sweep), "--y", "happiness"),
                    "constraint": ("raysweep.report", str(sweep), "--constraint", "retain_acc~0.9")})
    assert_one_line_error(res["missing"], "not found")
    assert_one_line_error(res["failed"], "no finished trials")
    assert_one_line_error(res["metric"], "happiness")
    assert_one_line_error(res["constraint"], "constraint 'retain_acc~0.9' is malformed")


def _replicated_sweep(path):
    """Two settings (dimum at 10 and 100 steps) x 3 seeds: the second better in both objectives on every seed."""
    rows = []
    for steps, ar, fid in ((10, 0.6, 3.0), (100, 0.1, 2.0)):
        for seed in range(3):
            jitter = 0.02 * seed
            rows.append({"trial_id": f"t{steps}-{seed}", "status": "ok", "error": "", "unlearn.method": "dimum",
                         "unlearn.steps": steps, "unlearn.seed": seed, "eval.seed": 1234 + seed,
                         "unlearn_steps_run": steps, "ar_dimra_max": ar + jitter, "fid_judge": fid + jitter,
                         "ar_dimra_final": ar, "ar_dimra/0": 0.0, "ar_dimra/250": ar, "ar_mu": 0.0,
                         "retain_acc": 0.99, "convergence": 0.01, "ar_base": 0.97, "mlflow_run_id": ""})
    path.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), path / "results.parquet")
    return rows


def test_seeds_as_an_axis_give_intervals_error_bars_and_dominance(tmp_path):
    from playwright.sync_api import sync_playwright

    from raysweep.report import build

    _replicated_sweep(tmp_path / "sweep")
    res = build(str(tmp_path / "sweep"), "fid_judge", "ar_dimra_max", [], str(tmp_path / "out"), None, {})
    by = {s["setting"]: s for s in res["settings"]}
    assert set(by) == {"steps=10", "steps=100"} and by["steps=100"]["n"] == 3
    assert by["steps=100"]["on_front"] and not by["steps=10"]["on_front"]
    mean, lo, hi = by["steps=100"]["ar_dimra_max"]
    assert mean == pytest.approx(0.12) and 0.1 <= lo < mean < hi <= 0.14
    html = (tmp_path / "out" / "report.html").read_text()
    assert "P(row dominates column)" in html
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto((tmp_path / "out" / "report.html").as_uri())
        page.wait_for_selector("#pareto-plot .main-svg", timeout=30_000)
        error_bars = page.locator("#pareto-plot .errorbar").count()
        cells = page.locator("#dominance-table td").all_inner_texts()
        browser.close()
    assert error_bars == 2  # one per setting
    # rows: the front's setting (100 steps) first; it dominates the other on every resample, never the reverse
    assert cells == ["steps=100", "–", "1.00", "steps=10", "0.00", "–"]
