"""The fair comparison's report from committed tuning rows alone (a clone without runs/): the choice per method, an
infeasible method reported as such, no verdict without confirmation rows, the README paragraph rewritten in place."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from fair_comparison import KNOBS, write_tuning_csv  # noqa: E402


def row(trial_id, *, ar_mu, retain_drop, fid, ar_dimra_max, steps, **knobs):
    base_fid, delta = 2.0, 0.2
    met = ar_mu <= 0.1 and retain_drop <= 0.05 and fid <= base_fid + delta
    return {"trial_id": trial_id, "status": "ok", "error": "", "unlearn_steps_run": steps, "ar_mu": ar_mu,
            "ar_dimra_max": ar_dimra_max, "recovery": ar_dimra_max - ar_mu, "retain_acc": 0.99 - retain_drop,
            "retain_drop": retain_drop, "base_retain_acc": 0.99, "fid_judge": fid, "fid_excess": fid - base_fid - delta,
            "base_fid": base_fid, "fid_delta": delta, "constraints_met": met, "seconds": 10.0,
            "unlearn.steps": steps, "unlearn.lr": 1e-4, **knobs}


def test_report_from_committed_tuning_rows(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    tuned = {
        "salun": [row("a", ar_mu=0.0, retain_drop=0.01, fid=2.1, ar_dimra_max=0.3, steps=500, **{"salun.alpha": 0.5}),
                  row("b", ar_mu=0.0, retain_drop=0.01, fid=2.0, ar_dimra_max=0.1, steps=900, **{"salun.alpha": 0.2}),
                  row("c", ar_mu=0.0, retain_drop=0.40, fid=9.0, ar_dimra_max=0.0, steps=90, **{"salun.alpha": 1e-3})],
        "ga": [row("d", ar_mu=0.0, retain_drop=0.80, fid=90.0, ar_dimra_max=0.0, steps=300, **{"ga.alpha": 1e-3}),
               row("e", ar_mu=0.9, retain_drop=0.00, fid=1.9, ar_dimra_max=1.0, steps=20, **{"ga.alpha": 1e-2})],
    }
    write_tuning_csv(tuned, docs / "fair_tuning.csv")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results: written by experiments/fair_comparison.py -->\nold text\n<!-- /results -->\nkept\n")
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "fair_comparison.py"), "--out",
                          str(tmp_path / "runs"), "--phases", "report", "--docs", str(docs), "--readme", str(readme),
                          "--methods", "ga", "salun"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = (docs / "results.md").read_text()
    # the most robust feasible setting is chosen (b: lowest ar_dimra_max), not the destroyed model (c)
    assert "| salun | 3 | 2 | unlearn.steps=900, unlearn.lr=0.0001, salun.alpha=0.2 | 0.000 | 0.100 |" in report
    assert "| ga | 2 | 0 | **infeasible**" in report and "No confirmation rows yet." in report
    text = readme.read_text()
    assert "old text" not in text and text.endswith("<!-- /results -->\nkept\n")
    assert "- **ga**: 0/2 trials feasible; **infeasible**: of its trials, 1 did not forget, 1 lost retain accuracy" \
        in text and "no verdict on the paper's claims" in text
    assert (docs / "fair_tuning.png").exists() and set(KNOBS) <= set((docs / "fair_tuning.csv").read_text()
                                                                      .splitlines()[0].split(","))


def test_the_committed_report_is_what_the_committed_record_gives(tmp_path):
    """docs/results.md, the CSVs and the README's paragraph regenerate byte for byte from the committed rows; running
    only some methods (``--methods sa``) still reports every method's rows (it once dropped them, then failed)."""
    import shutil

    docs, readme = tmp_path / "docs", tmp_path / "README.md"
    shutil.copytree(ROOT / "docs", docs)
    shutil.copy(ROOT / "README.md", readme)
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "fair_comparison.py"), "--out",
                          str(tmp_path / "runs"), "--phases", "report", "--docs", str(docs), "--readme", str(readme),
                          "--methods", "sa"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("results.md", "fair_comparison.csv", "fair_tuning.csv"):
        assert (docs / name).read_text() == (ROOT / "docs" / name).read_text(), name
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_the_committed_threat_model_is_what_its_committed_record_gives(tmp_path):
    """docs/threat_model.md and .csv regenerate byte for byte from docs/threat_model.jsonl (--report-only runs no
    attack)."""
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "threat_model.py"), "--out", str(tmp_path / "runs"),
                          "--docs", str(docs), "--report-only"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (tmp_path / "runs" / "store").exists()
    for name in ("threat_model.md", "threat_model.csv", "threat_model.jsonl"):
        assert (docs / name).read_text() == (ROOT / "docs" / name).read_text(), name


def test_no_verdict_below_the_designed_replicate_count():
    from fair_comparison import rule_line

    # three identical replicates: a zero-width bootstrap interval, still no verdict; nor three that agree
    assert "**inconclusive (n = 3 < 5)**" in rule_line("m", 0.0, 0.0, 0.0, 3, 0.1, "below")
    assert "**inconclusive (n = 4 < 5)**" in rule_line("m", -0.06, -0.08, -0.04, 4, 0.0, "below")
    assert "**reproduced**" in rule_line("m", 0.0, 0.0, 0.02, 6, 0.1, "below")
    assert "**refuted**" in rule_line("m", 0.5, 0.3, 0.7, 6, 0.1, "below")


def test_recovery_within_the_budget_counts_censored_replicates_apart():
    from fair_comparison import reached

    rows = [{"ar_dimra": {"0": 0.0, "250": 0.1, "500": 0.6, "1000": 0.9, "2000": 0.9}},
            {"ar_dimra": {"0": 0.0, "250": 0.7, "500": 0.8, "1000": 0.9, "2000": 0.9}},
            {"ar_dimra": {"0": 0.0, "250": 0.0, "500": 0.1, "1000": 0.2, "2000": 0.3}}]  # never: censored
    assert reached(rows) == "2/3 (375)" and reached(rows[2:]) == "0/1 (> 2,000)"


def test_threat_model_report_from_rows():
    from threat_model import write_report

    def row(method, lr, n, seed, curve):
        return {"phase": "threat", "status": "ok", "seconds": 10.0, "ar_dimra": curve, "ar_mu": curve["0"],
                "ar_dimra_max": max(v for k, v in curve.items() if k != "0"),
                "overrides": {"unlearn.method": method, "attack.lr": lr, "attack.aux_size": n, "attack.lora_rank": 0,
                              "attack.aux": "test", "unlearn.seed": seed}}

    back = {"0": 0.0, "250": 0.6, "500": 0.9, "1000": 0.9, "2000": 0.9}
    never = {"0": 0.0, "250": 0.0, "500": 0.1, "1000": 0.1, "2000": 0.2}
    rows = [row("salun", 1e-3, 50, s, back) for s in range(3)] + [row("dimum", 1e-3, 50, s, never) for s in range(3)]
    rows.append({"phase": "controls", "status": "ok", "ar_dimra": back, "ar_mu": 0.0, "ar_dimra_max": 0.9,
                 "overrides": {"attack.lr": 1e-3, "attack.aux_size": 50, "attack.lora_rank": 0}})
    md = write_report({"dimum": {"dimum.beta": 1.0}, "salun": {"salun.alpha": 0.1}}, rows, ["ga"])
    # AUC of `back`: (250*0.3 + 250*0.75 + 500*0.9 + 1000*0.9) / 2000 = 0.80625
    assert "| salun | salun.alpha=0.1 | DiMRA | full | 0.001 | 50 | 3/3 (250) | 0.806 [0.806, 0.806] |" in md
    assert "| dimum | dimum.beta=1 | DiMRA | full | 0.001 | 50 | 0/3 (> 2,000) |" in md
    assert "| base | – | DiMRA | full | 0.001 | 50 | 1/1 (250) | 0.806 |" in md
    assert "| dimum | dimum.beta=1 | DiMRA | LoRA r=4 | 0.0001 | all | not run yet |" in md and "Not swept: ga" in md
    assert "| retrain | – | adaptive (relabel:8) | full | 0.0001 | all | not run yet |" in md
    assert "**7 of 190 attacks run so far**" in md  # 19 cells × (the controls + 2 methods and retrain × 3 seeds)


def test_threat_model_curves_are_the_seed_means_with_their_intervals(tmp_path, monkeypatch):
    import threat_model
    from threat_model import ADAPTIVE, curves, curves_figure

    def row(method, seed, curve, aux="test", phase="threat"):
        return {"phase": phase, "status": "ok", "ar_dimra": curve,
                "overrides": {"unlearn.method": method, "attack.lr": 1e-4, "attack.aux_size": 0,
                              "attack.lora_rank": 0, "attack.aux": aux, "unlearn.seed": seed}}

    rows = [row("dimum", 0, {"0": 0.0, "500": 0.2}), row("dimum", 1, {"0": 0.0, "500": 0.4}),
            row("dimum", 2, {"0": 0.0, "500": 0.6}), row("dimum", 0, {"0": 0.1, "500": 1.0}, aux=ADAPTIVE),
            row("base", 0, {"0": 1.0, "500": 1.0}, phase="controls"),
            {**row("dimum", 3, {"0": 0.9, "500": 0.9}), "status": "error"}]  # a failed trial is no point
    data = curves(["dimum", "salun"], rows)
    full = data[(1e-4, 0, 0, "test")]
    assert set(full) == {"dimum", "base"}  # salun and retrain: nothing run, nothing drawn
    (k0, m0, lo0, hi0), (k1, m1, lo1, hi1) = full["dimum"]
    assert (k0, m0, lo0, hi0) == (0, 0.0, 0.0, 0.0) and k1 == 500 and abs(m1 - 0.4) < 1e-12
    assert 0.2 <= lo1 < m1 < hi1 <= 0.6  # the bootstrap over the three seeds spans no more than their range
    assert data[(1e-4, 0, 0, ADAPTIVE)]["dimum"][1][:2] == (500, 1.0)  # one seed: a mean, no interval
    assert data[(1e-4, 0, 0, ADAPTIVE)]["dimum"][1][2] != data[(1e-4, 0, 0, ADAPTIVE)]["dimum"][1][2]  # nan
    curves_figure(data, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(threat_model, "LRS", (1e-4,))  # --smoke's single lr still leaves the legend a panel
    curves_figure(data, tmp_path / "smoke.png")
    assert (tmp_path / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fid_limit_and_the_rows_it_rejudges(tmp_path):
    """The limit is controls.reference's rule (mean + 2 std + the retrained model's excess); a row changes its verdict
    only when its FID lies between its recorded limit and the new one, and stays infeasible when another rule fails."""
    import json

    from fair_comparison import read_noise, reference_noise
    from reference_noise import limit, rejudge, windows

    assert limit([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 2.0 + 2.0 + 3.0
    assert limit([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 4.0  # a better retrained model widens nothing
    w = windows([1.0, 1.0, 3.0, 3.0], [0.0] * 4, 2)  # runs (1,1) (1,3) (3,3)
    assert w["n"] == 3 and w["base_fid"] == [1.0, 3.0] and w["limit"] == [1.0, 2.0 + 2 * 2 ** 0.5]
    rows = [{"phase": "tune", "what": "a", "fid": 2.15, "ar_mu": 0.0, "retain_drop": 0.0, "recorded_limit": 2.2,
             "feasible": True},
            {"phase": "tune", "what": "b", "fid": 2.15, "ar_mu": 0.5, "retain_drop": 0.0, "recorded_limit": 2.1,
             "feasible": False},
            {"phase": "tune", "what": "c", "fid": 2.05, "ar_mu": 0.0, "retain_drop": 0.0, "recorded_limit": 2.2,
             "feasible": True}]
    assert [(c["what"], c["feasible_now"]) for c in rejudge(rows, 2.1)] == [("a", False)]
    assert [(c["what"], c["feasible_now"]) for c in rejudge(rows, 2.2)] == [("b", False)]
    rec = {"what": "x", "bases": [{"base_seed": 0, "eval_seeds": list(range(4)), "base_fid": [1.9, 1.8, 2.0],
                                   "base_fid_std": 0.1, "retrain_fid": 1.7, "limit": 2.1, "windows_of_2": w,
                                   "rows_judged": 3, "fid_verdict_changed": rejudge(rows, 2.1),
                                   "rows_between_window_limits": ["a", "b"]}]}
    (tmp_path / "reference_noise.json").write_text(json.dumps(rec))
    text = "\n".join(reference_noise(read_noise(tmp_path / "reference_noise.json")))
    assert "limit **2.100**" in text and "2 of the 3 unlearned models" in text and "1 change their" in text
    assert "tune a: FID 2.150, recorded limit 2.200 → infeasible (was feasible)" in text
    assert reference_noise(read_noise(tmp_path / "absent.json")) == []


def test_a_model_attacked_at_two_learning_rates_is_judged_once(tmp_path):
    """Its FID is one measurement: the rows of its two attacks must not count it twice."""
    import json

    from reference_noise import rows_of

    def row(lr, seed, method="salun"):
        return {"status": "ok", "phase": "confirm", "method": method, "fid_judge": 2.0, "ar_mu": 0.0,
                "retain_drop": 0.0, "base_fid": 1.9, "fid_delta": 0.2, "feasible": True,
                "overrides": {"pretrain.seed": 1, "unlearn.steps": 9, "unlearn.seed": seed, "attack.lr": lr}}

    record = tmp_path / "rows.jsonl"
    record.write_text("\n".join(json.dumps(r) for r in [row(1e-4, 5), row(1e-3, 5), row(1e-4, 6), row(1e-4, 5, "sa")]))
    assert [r["what"] for r in rows_of(1, record, tmp_path / "absent.csv")] == \
        ["salun steps=9 seed=5", "salun steps=9 seed=6", "sa steps=9 seed=5"]


def test_a_rerun_judges_new_rows_against_the_references_its_record_measured_on_the_same_seeds(tmp_path):
    """The record's per-seed FIDs are reused only for the seeds this run would evaluate; the store is never read."""
    from fair_tune import STUDY
    from reference_noise import limit, measure

    from raysweep.config import Config, apply_overrides
    from raysweep.keys import reference_seeds

    seeds = reference_seeds(apply_overrides(Config(), {**STUDY, "pretrain.seed": 0, "judge.seed": 0,
                                                       "eval.reference_seeds": 4}))
    rec = {"eval_seeds": seeds, "base_fid_by_seed": [1.0, 1.0, 3.0, 3.0], "retrain_fid_by_seed": [0.0] * 4}
    m = measure(0, 4, 2, str(tmp_path / "no-store"), rec)
    assert m["eval_seeds"] == seeds and m["limit"] == limit([1.0, 1.0, 3.0, 3.0], [0.0] * 4)
    assert m["windows_of_2"]["limit"] == [1.0, 2.0 + 2 * 2 ** 0.5] and not (tmp_path / "no-store").exists()


def test_rows_are_judged_by_the_precise_reference_and_a_choice_it_overturns_leaves_its_claims_pending(tmp_path):
    import json

    from fair_comparison import choose, judged, precise_references, read_noise, verdicts

    rec = {"bases": [{"base_seed": 0, "eval_seeds": list(range(20)), "base_fid": [2.0, 1.9, 2.1], "limit": 2.1}]}
    (tmp_path / "noise.json").write_text(json.dumps(rec))
    refs = precise_references(read_noise(tmp_path / "noise.json"))
    lucky = row("a", ar_mu=0.0, retain_drop=0.01, fid=2.15, ar_dimra_max=0.0, steps=74,
                **{"dimum.beta": 1.0, "dimum.alternative": "noise"})
    plain = row("b", ar_mu=0.0, retain_drop=0.01, fid=1.5, ar_dimra_max=0.1, steps=900,
                **{"dimum.beta": 2.0, "dimum.alternative": "retain"})
    assert lucky["constraints_met"]  # within its recorded limit 2.0 + 0.2
    j = judged(lucky, refs, 0)
    assert not j["constraints_met"] and abs(j["fid_excess"] - 0.05) < 1e-9
    assert (j["recorded_base_fid"], j["recorded_fid_delta"]) == (2.0, 0.2) and lucky["constraints_met"]
    assert judged(lucky, refs, 1) is lucky  # no precise reference of base 1: the recorded one stands
    assert choose([lucky, plain], "dimum").row["trial_id"] == "a"
    assert choose([judged(r, refs, 0) for r in (lucky, plain)], "dimum").row["trial_id"] == "b"
    confirm = [{"ar_base": 0.99, "attack_lr": lr, "method": "salun", "ar_dimra_max": 0.0, "feasible": 1,
                "overrides": {"pretrain.seed": 0, "unlearn.seed": s}, "convergence": 0.1 * s, "recovery": 0.0}
               for lr in (1e-4, 1e-3) for s in range(3)]
    text = "\n".join(verdicts(confirm, [], {}, ("dimum",)))
    assert "2., 3. DiMUM: **pending**" in text and "5. Convergence predicts attack success: **pending**" in text
    assert "salun reversed by DiMRA" in text and "**pending**" not in text.split("salun reversed")[1].split("\n")[0]


def test_the_budget_claim_says_whether_the_attack_or_the_forgetting_moved():
    """ar_dimra_max = ar_mu + recovery. A method that only finishes forgetting with more steps lowers ar_dimra_max
    while the attack brings back as much: the claim's line must say so, not just 'reproduced'."""
    from fair_comparison import verdicts

    def budget(method, seed, steps, ar_mu, recovery):
        return {"phase": "budgets", "method": method, "ar_base": 1.0, "ar_mu": ar_mu, "recovery": recovery,
                "ar_dimra_max": ar_mu + recovery, "overrides": {"unlearn.seed": seed, "unlearn.steps": steps}}

    rows = [budget("sa", s, 300, 0.5, 0.40 + 0.01 * s) for s in range(5)]  # forgets late, recovers the same
    rows += [budget("sa", s, 3000, 0.05, 0.40 + 0.01 * s + d) for s, d in enumerate((0.02, -0.02, 0.01, -0.01, 0))]
    rows += [budget("dimum", s, 300, 0.02, 0.06 + 0.01 * s) for s in range(5)]  # the attack brings back less
    rows += [{**budget("dimum", s, 3000, 0.0, 0.01 + 0.001 * s), "feasible": True} for s in range(5)]
    lines = {m: next(x for x in verdicts([], rows, {}) if x.startswith(f"- 4. Robustness of {m} "))
             for m in ("sa", "dimum")}
    assert "**reproduced**" in lines["sa"] and "forgetting that completes, not resistance" in lines["sa"]
    assert "**reproduced**" in lines["dimum"] and lines["dimum"].endswith("the attack brings back less")


def test_the_threat_model_attacks_the_setting_the_comparison_chose(tmp_path):
    """Both studies pick a method's setting by one rule: the committed tuning rows judged by the precise reference.
    A setting feasible only under its lenient recorded limit is not the one the attacker's budget is swept for."""
    import json

    from threat_model import feasible_settings

    lucky = row("a", ar_mu=0.0, retain_drop=0.01, fid=2.15, ar_dimra_max=0.0, steps=74,
                **{"dimum.beta": 1.0, "dimum.alternative": "noise"})
    plain = row("b", ar_mu=0.0, retain_drop=0.01, fid=1.5, ar_dimra_max=0.1, steps=900,
                **{"dimum.beta": 2.0, "dimum.alternative": "retain"})
    broken = row("c", ar_mu=0.0, retain_drop=0.40, fid=9.0, ar_dimra_max=0.0, steps=90, **{"salun.alpha": 1e-3})
    write_tuning_csv({"dimum": [lucky, plain], "salun": [broken]}, tmp_path / "fair_tuning.csv")
    assert feasible_settings(tmp_path, ["dimum", "salun"])[0]["dimum"]["unlearn.steps"] == 74  # recorded limits
    rec = {"bases": [{"base_seed": 0, "eval_seeds": list(range(20)), "base_fid": [2.0, 1.9, 2.1], "limit": 2.1}]}
    (tmp_path / "reference_noise.json").write_text(json.dumps(rec))
    settings, infeasible = feasible_settings(tmp_path, ["dimum", "salun"])
    assert settings == {"dimum": {"unlearn.steps": 900, "unlearn.lr": 1e-4, "dimum.beta": 2.0,
                                  "dimum.alternative": "retain"}} and infeasible == ["salun"]


def test_every_study_script_refuses_a_bad_argument_in_one_line(monkeypatch, capsys):
    import importlib

    import pytest

    for name in ("fair_comparison", "threat_model", "reference_noise", "reproduce_styles"):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--bogus"])
        with pytest.raises(SystemExit) as e:
            importlib.import_module(name).main()
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and "unrecognized arguments: --bogus" in err[0], (name, err)


def test_the_budget_claim_on_a_method_feasible_at_no_budget_says_so():
    from fair_comparison import no_utility

    assert no_utility("esd", [{"feasible": False}, {"feasible": False}, {}]) == (
        "; but esd is feasible at no budget (0 of 3 trials): this is the robustness of a model that fails the utility "
        "check, not of a usable unlearner")
    assert no_utility("dimum", [{"feasible": False}, {"feasible": True}]) == ""
