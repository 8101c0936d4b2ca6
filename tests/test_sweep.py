"""The sweep system end to end: a real local Ray, a real MLflow server on 127.0.0.1, Optuna in SQLite."""
import json
import math
import os
import socket
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import assert_one_line_error, in_process, run_cli, storage_with
from raysweep import store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def test_smoke_sweep_three_stores_agree(smoke_sweep, mlflow_server):
    storage, summary = smoke_sweep
    assert summary["trials"] == 3 and summary["error"] == 0 and "numbers mean nothing" in summary["smoke"]
    # a fresh store: what every trial shares was built before them, by Ray tasks (no control attack in a smoke run)
    assert list(summary["shared_seconds"]) == ["judge", "base", "retrain", "utility:base", "utility:retrain",
                                               "reference"]
    # the main job's feasibility constraints went to Optuna and to the table
    assert "meet_constraints" in summary and json.loads((storage / "smoke" / "sweep.json").read_text())[
        "constraints"] == {"ar_mu": ["<=", 0.1], "retain_drop": ["<=", 0.05], "fid_excess": ["<=", 0.0]}

    rows = pq.read_table(storage / "smoke" / "results.parquet").to_pylist()
    assert len(rows) == 3 and {r["status"] for r in rows} <= {"ok", "diverged"}
    for r in rows:
        assert r["unlearn.method"] in ("dimum", "salun", "ga") and r["unlearn.steps"] <= 20
        assert 0 <= r["ar_dimra_max"] <= 1 and r["fid_judge"] >= 0 and r["ar_dimra_final"] == r["ar_dimra/20"]
        assert r["host"] == socket.gethostname() and len(r["node_id"]) == 56  # which Ray node ran it
        uris = [r["unlearned_uri"], *json.loads(r["attack_uris"]).values()]  # relative to the sweep
        assert not any(os.path.isabs(u) for u in uris)
        assert all(Path(store.locate(u, str(storage / "smoke"))).is_file() for u in uris)
    by_id = {r["trial_id"]: r for r in rows}

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("smoke")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's model-training view
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    for run in runs:
        row = by_id[run.data.tags["trial_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["method"] == row["unlearn.method"]
        assert run.data.tags["node_id"] == row["node_id"] and run.data.tags["host"] == row["host"]
        assert run.info.run_name.startswith(f"{row['unlearn.method']} steps={row['unlearn.steps']} ")  # as run
        assert run.data.metrics["ar_dimra_max"] == pytest.approx(row["ar_dimra_max"])
        assert run.data.params["unlearn.steps"] == str(row["unlearn.steps"])
        history = client.get_metric_history(run.info.run_id, "ar_dimra_by_step")
        assert sorted(m.step for m in history) == [0, 10, 20]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"forget_class_samples.png",
                                                                             "loss_curve.png", "retain_samples.png"}

    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{storage / 'smoke' / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all(t.params["unlearn.steps"] <= 20 for t in done)  # sampled as they ran
    for t in done:  # Optuna holds each trial's constraint values (<= 0: holds), as the table's columns say
        row = next(r for r in rows if (round(r["ar_dimra_max"], 5), round(r["fid_judge"], 5))
                   == (round(t.values[0], 5), round(t.values[1], 5)))
        assert t.constraints == pytest.approx({"ar_mu": row["ar_mu"] - 0.1, "retain_drop": row["retain_drop"] - 0.05,
                                               "fid_excess": row["fid_excess"]})
        assert row["constraints_met"] == all(v <= 0 for v in t.constraints.values())
    pairs = lambda it: sorted((round(a, 5), round(b, 5)) for a, b in it)  # noqa: E731
    assert pairs(t.values for t in done) == pairs((r["ar_dimra_max"], r["fid_judge"]) for r in rows)


def test_every_outcome_is_recorded_and_the_sweep_goes_on(tmp_path, ray_env, smoke_store):
    storage = storage_with(tmp_path, smoke_store)
    # --max-failures 0: a trial that fails on its input fails again when retried, each retry on a new actor
    res = run_cli("raysweep.tune", str(DATA / "outcomes_sweep.py"), "--smoke", "--storage", str(storage), "--json",
                  "--max-failures", "0", timeout=600, env=ray_env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = pq.read_table(storage / "outcomes-smoke" / "results.parquet").to_pylist()
    got = sorted((r["data.dataset"], r["unlearn.max_abs_loss"], r["status"]) for r in rows)
    assert got == [("cifar10", 1e-06, "error"), ("cifar10", 10000.0, "error"),
                   ("digits", 1e-06, "diverged"), ("digits", 10000.0, "ok")]
    errors = [r["error"] for r in rows if r["status"] == "error"]
    assert all("cifar10 needs data.root" in e for e in errors), errors
    runs = MlflowClient(f"sqlite:///{storage / 'outcomes-smoke' / 'mlflow.db'}").search_runs(
        [MlflowClient(f"sqlite:///{storage / 'outcomes-smoke' / 'mlflow.db'}")
         .get_experiment_by_name("outcomes-smoke").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


def test_a_sweep_attacks_only_the_trials_that_can_still_be_feasible(tmp_path, ray_env, smoke_store):
    storage = storage_with(tmp_path, smoke_store)
    res = run_cli("raysweep.tune", str(DATA / "feasible_only_sweep.py"), "--storage", str(storage), "--report",
                  "--max-concurrent", "1", "--json", timeout=600, env=ray_env)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["shared_seconds"] == {}  # found in the session's smoke store: the same keys
    sweep = storage / "feasible_only"
    rows = {r["unlearn.steps"]: r for r in pq.read_table(sweep / "results.parquet").to_pylist()}
    assert set(rows) == {2, 8}, "the sampler drew one value twice: pick another Experiment.seed"
    ok, bad = rows[2], rows[8]
    assert ok["status"] == bad["status"] == "ok" and ok["constraints_met"] and not bad["constraints_met"]
    assert math.isfinite(ok["ar_dimra_max"]) and json.loads(ok["attack_uris"])
    assert bad["attack_skipped"] == 1 and math.isnan(bad["ar_dimra_max"]) and json.loads(bad["attack_uris"]) == {}
    assert bad["attack_skipped_because"] == "violates unlearn_steps_run <= 5 after unlearning"
    assert not list((sweep / "trials" / bad["trial_id"]).glob("attack-*"))
    assert summary["not_attacked"] == 1 and summary["meet_constraints"] == 1
    study = optuna.load_study(study_name="feasible_only", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = {t.params["unlearn.steps"]: t.state for t in study.trials}
    assert states == {2: optuna.trial.TrialState.COMPLETE, 8: optuna.trial.TrialState.PRUNED}
    html = Path(summary["report"]).read_text()
    assert "1 of them violated one after unlearning and were not attacked" in html


BAD_SWEEPS = {  # what the one error line must name -> the arguments (none of them starts a local Ray)
    "experiment file not found": [str(DATA / "missing.py")],
    "defines no `experiment": [str(DATA / "no_experiment.py")],
    "unknown config key 'unlearn.stepz'": [str(DATA / "unknown_key_sweep.py")],
    "objective 'happiness'": [str(DATA / "unknown_objective_sweep.py")],
    "constraint on 'happiness' is not a metric": [str(DATA / "unknown_constraint_sweep.py")],
    "constraint on 'retain_acc' is malformed": [str(DATA / "malformed_constraint_sweep.py")],
    "workers must be >= 0": [str(ROOT / "experiments" / "steps_sweep.py"), "--workers", "-1"],
    "cpus_per_trial >= 1": [str(ROOT / "experiments" / "steps_sweep.py"), "--cpus-per-trial", "0"],
    "unreachable": [str(ROOT / "experiments" / "steps_sweep.py"), "--address", "127.0.0.1:1"],
    "MLflow": [str(ROOT / "experiments" / "steps_sweep.py"), "--mlflow-uri", "http://127.0.0.1:1"],
}


def test_a_bad_sweep_command_is_one_line_from_the_shell():
    """One through a real process: nothing printed at import or exit (a warning, a logging handler) adds a line."""
    assert_one_line_error(run_cli("raysweep.tune", str(DATA / "missing.py"), timeout=120),
                          "experiment file not found")


@pytest.mark.parametrize("needle", list(BAD_SWEEPS))
def test_sweep_bad_input_is_one_line(needle, tmp_path, capsys, monkeypatch):
    """The rest in this process (each fails before a Ray runtime starts; a subprocess would only add imports)."""
    from raysweep import tune

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))
    assert_one_line_error(in_process(tune.main, [*BAD_SWEEPS[needle], "--storage", str(tmp_path / "sweeps")],
                                      capsys), needle)
    assert not (tmp_path / "ray").exists()  # no Ray runtime was started


def test_bad_storage_and_a_missing_sweep_to_resume_are_one_line(tmp_path, capsys, monkeypatch):
    from raysweep import trial, tune

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray"))
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    steps = str(ROOT / "experiments" / "steps_sweep.py")
    assert_one_line_error(in_process(tune.main, [steps, "--storage", str(a_file)], capsys),
                          "is a file, not a directory")
    assert_one_line_error(in_process(tune.main, [steps, "--storage", "/proc/raysweep-storage"], capsys),
                          "--storage /proc/raysweep-storage is not writable")
    assert_one_line_error(in_process(tune.main, [steps, "--storage", str(tmp_path / "empty"), "--resume"], capsys),
                          "no sweep 'steps_sweep'", "to resume")
    assert_one_line_error(in_process(trial.main, ["--set", "unlearn.lr=nan", "--out", str(tmp_path / "t")], capsys),
                          "unlearn.lr must be a finite number")
    assert not (tmp_path / "empty" / "steps_sweep" / "results.parquet").exists()
    assert not (tmp_path / "ray").exists()  # all refused before a Ray runtime started


def test_cluster_yaml_passes_rays_schema():
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws" and any("raysweep" in c for c in config["setup_commands"])
    broken = {**config, "provider": {"region": "x"}}  # the schema does catch a broken file
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_asha_pruned_trials_are_recorded_as_pruned(tmp_path, ray_env, smoke_store):
    storage = storage_with(tmp_path, smoke_store)
    res = run_cli("raysweep.tune", str(DATA / "pruned_sweep.py"), "--smoke", "--storage", str(storage),
                  "--max-concurrent", "1", "--json", timeout=600, env=ray_env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["unlearn.steps"]: r for r in pq.read_table(storage / "pruned-smoke" / "results.parquet").to_pylist()}
    assert rows[5]["status"] == "ok" and rows[20]["status"] == "pruned"
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["pruned"] == 1 and summary["shared_seconds"] == {}  # found in the session's smoke store
    client = MlflowClient(f"sqlite:///{storage / 'pruned-smoke' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pruned-smoke").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def test_the_resume_command_keeps_what_the_sweep_was_started_with():
    from raysweep import commands, tune

    args = commands.tune_parser().parse_args(["e.py", "--storage", "s3://b/p", "--workers", "2", "--cpus-per-trial",
                                              "4", "--address", "auto", "--smoke"])
    assert tune.resume_command(args, "n").split()[2:] == ["raysweep.tune", "e.py", "--storage", "s3://b/p", "--name",
                                                          "n", "--smoke", "--address", "auto", "--workers", "2",
                                                          "--cpus-per-trial", "4", "--resume"]


def test_the_searcher_hands_optuna_each_trials_constraints(tmp_path):
    """Optuna 5's constrained NSGA-II reads a trial's constraint values from the trial (``set_constraint``); a
    failed trial violates every one. No Ray runtime: the searcher alone, as Tune drives it."""
    from ray import tune as rtune

    from raysweep.search import ConstrainedOptunaSearch

    cons = {"ar_mu": ("<=", 0.1), "retain_acc": (">=", 0.9)}
    search = ConstrainedOptunaSearch(space={"x": rtune.uniform(0, 1)}, metric=["a", "b"], mode=["min", "min"],
                                     sampler=optuna.samplers.NSGAIISampler(seed=0), constraints=cons,
                                     storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"),
                                     study_name="c")
    for i in range(4):
        assert "x" in search.suggest(f"t{i}")
    search.on_trial_complete("t0", {"a": 0.2, "b": 1.0, "ar_mu": 0.05, "retain_acc": 0.95})
    search.on_trial_complete("t1", {"a": 0.1, "b": 2.0, "ar_mu": 0.30, "retain_acc": 0.99})
    search.on_trial_complete("t2", error=True)
    # not attacked (Experiment.attack_feasible_only): no robustness objective, so pruned, constraints kept
    search.on_trial_complete("t3", {"a": math.nan, "b": 3.0, "ar_mu": 0.5, "retain_acc": 0.5, "attack_skipped": 1})
    trials = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path / 'o.db'}").trials
    assert trials[3].state == optuna.trial.TrialState.PRUNED and trials[3].values is None
    assert trials[3].constraints == pytest.approx({"ar_mu": 0.4, "retain_acc": 0.4})
    assert trials[0].constraints == pytest.approx({"ar_mu": -0.05, "retain_acc": -0.05})  # feasible
    assert trials[1].constraints == pytest.approx({"ar_mu": 0.2, "retain_acc": -0.09})
    assert trials[0].state == trials[1].state == optuna.trial.TrialState.COMPLETE
    assert trials[2].state == optuna.trial.TrialState.FAIL and trials[2].constraints == {"ar_mu": 1.0,
                                                                                          "retain_acc": 1.0}


def test_a_moved_sweeps_trial_finds_its_checkpoint_at_the_new_place(tmp_path):
    """Restoring a moved sweep, Tune re-points each trial and the paths of its checkpoints (``Trial.set_storage``)
    only while the trial's storage still holds the old place; raysweep's restore hook re-points what Tune does not
    (the searcher's experiment spec) and must leave the trials' storage alone. Replays what Tune's controller does
    (``TuneController._restore_trials``) on a trial saved with a checkpoint, without a Ray runtime."""
    import copy
    import pickle

    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune import register_trainable
    from ray.tune.execution.placement_groups import PlacementGroupFactory
    from ray.tune.experiment.trial import Trial

    from raysweep.tune import _restored_here

    register_trainable("raysweep_moved", lambda config: None)
    old, new = tmp_path / "old", tmp_path / "new"
    trial = Trial("raysweep_moved", config={}, trial_id="x", placement_group_factory=PlacementGroupFactory([{"CPU": 1}]),
                  storage=StorageContext(str(old), "surv", trial_dir_name="trainable_x"))
    trial.create_placement_group_factory()  # as Tune does when it adds the trial
    trial.run_metadata.checkpoint_manager.register_checkpoint(
        _TrainingResult(Checkpoint(str(old / "surv" / "trainable_x" / "checkpoint_000002")), {}))
    state, metadata = trial.get_json_state()
    spec = pickle.dumps(StorageContext(str(old), "surv"))  # what the searcher's experiment spec holds
    with _restored_here(str(new), "surv", str(new / "surv"), False):
        restored, spec = Trial.from_json_state(state), pickle.loads(spec)
    restored.restore_run_metadata(metadata)
    moved = copy.copy(restored.storage)
    moved.storage_fs_path = spec.storage_fs_path
    restored.set_storage(moved)
    assert spec.storage_fs_path == str(new)
    assert restored.checkpoint.path == str(new / "surv" / "trainable_x" / "checkpoint_000002")
