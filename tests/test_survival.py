"""Sweeps that survive: a killed driver resumed (after the sweep was moved), Ctrl-C on a sweep then resumed, a killed
trial worker restarted from its saved state, an MLflow outage, object storage through a real S3-protocol server on
loopback, a two-node cluster with nothing on a shared disk. Real Ray, real servers, all local."""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from conftest import (_free_port, finish, kill_ray_under, run_cli, start_cli, start_mlflow, start_server, stop,
                      storage_with,
                      wait_for)
from raysweep import store
from raysweep.experiment import load
from raysweep.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
EXP = str(ROOT / "tests" / "data" / "survival_sweep.py")


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in (sweep / "trials").glob("*") if p.is_dir()) if (sweep / "trials").exists() else []


def attempts(d: Path) -> list[dict]:
    return json.loads((d / "attempts.json").read_text())


def rows_of(sweep: Path) -> list[dict]:
    return pq.read_table(sweep / "results.parquet").to_pylist()


def _text(path: Path) -> str:
    """A file Tune may be replacing right now: its text, or nothing."""
    try:
        return path.read_text()
    except OSError:
        return ""


def test_killed_driver_then_resume_finishes_the_sweep(tmp_path, ray_env, smoke_store):
    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "surv"
    # Tune saves its own state every second (by default: as its overhead allows, ~10 s), so that it has saved the
    # midway trial while that one still unlearns; a trial killed before Tune saved it is unknown to the resumed
    # sweep, which starts a new one in its place
    proc = start_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "surv", "--num-samples", "2", "--json",
                     env={**ray_env, "TUNE_GLOBAL_CHECKPOINT_S": "1"})

    def one_done_one_midway():
        dirs = trial_dirs(sweep)
        midway = [d.name for d in dirs if (d / "unlearn-state.parquet").exists() and not (d / "result.json").exists()]
        saved = "".join(_text(p) for p in sweep.glob("experiment_state-*.json"))
        unlearning = len(list((storage / "store" / "unlearned").glob("*.parquet"))) == 1  # only the done trial's model
        return any((d / "result.json").exists() for d in dirs) and any(m in saved for m in midway) and unlearning

    wait_for(one_done_one_midway, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its process group, mid-trial
    proc.wait()
    kill_ray_under(ray_env["RAY_TMPDIR"])
    finished = {d.name: json.loads((d / "result.json").read_text()) for d in trial_dirs(sweep)
                if (d / "result.json").exists()}
    interrupted = [d.name for d in trial_dirs(sweep) if not (d / "result.json").exists()]
    assert not (sweep / "results.parquet").exists()

    old, storage = storage, tmp_path / "moved"  # the user moves the whole storage before resuming
    shutil.move(old, storage)
    sweep = storage / "surv"
    res = run_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "surv", "--num-samples", "2",
                  "--resume", "--json", timeout=600, env=ray_env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = rows_of(sweep)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}, [(r["status"], r["error"]) for r in rows]
    assert len({r["trial_id"] for r in rows}) == 2
    assert not old.exists()  # nothing was written at the old place...
    assert not [v for r in rows for v in r.values() if isinstance(v, str) and str(old) in v]  # ...or points there
    for r in rows:
        uris = [r["unlearned_uri"], *json.loads(r["attack_uris"]).values()]
        assert uris and all(Path(store.locate(u, str(sweep))).is_file() for u in uris)
    assert json.loads((sweep / "sweep.json").read_text())["optuna_storage"] == "optuna.db"
    numbers = lambda res: json.dumps({k: v for k, v in res.items() if isinstance(v, (int, float))},  # noqa: E731
                                     sort_keys=True)  # NaN compares equal as text
    for name, before in finished.items():  # finished trials were not rerun (if the driver died before Tune saved
        # that they had finished, Tune starts them again: they find their result and only point it at the copy)
        assert len(attempts(sweep / "trials" / name)) == 1
        assert numbers(json.loads((sweep / "trials" / name / "result.json").read_text())) == numbers(before)
    for name in interrupted:  # the interrupted one continued from its saved loop state
        result = json.loads((sweep / "trials" / name / "result.json").read_text())
        assert result["attempts"] == 2 and result["resumed_from"]["unlearn"] >= 20

    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("surv").experiment_id])
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(r["trial_id"] for r in rows)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.info.artifact_uri.startswith(str(sweep / "mlartifacts")) for r in runs)  # the copy's artifacts

    # the restored searcher continued the same study: no stale RUNNING trial, no duplicate (cf. ray#30861)
    study = optuna.load_study(study_name="surv", storage=f"sqlite:///{sweep / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == len(done) == 2
    pairs = lambda it: sorted((round(a, 5), round(b, 5)) for a, b in it)  # noqa: E731
    assert pairs(t.values for t in done) == pairs((r["ar_dimra_max"], r["fid_judge"]) for r in rows)


def test_ctrl_c_records_the_stopped_trial_and_resume_finishes_it(tmp_path, ray_env, smoke_store):
    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "intr"
    proc = start_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "intr", "--num-samples", "2",
                     "--json", env=ray_env)
    wait_for(lambda: any((d / "unlearn-state.parquet").exists() and not (d / "result.json").exists()
                         for d in trial_dirs(sweep)), proc)
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends the driver
    out, err = finish(proc, timeout=300)
    assert proc.returncode == 130, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] >= 1 and summary["resume"].endswith("--name intr --resume")

    rows = pq.read_table(sweep / "results.parquet").to_pylist()
    stopped = [r for r in rows if r["status"] == "interrupted"]
    assert len(stopped) == summary["interrupted"] and "--resume" in stopped[0]["error"]
    study = optuna.load_study(study_name="intr", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.FAIL in states
    client = MlflowClient(f"sqlite:///{sweep / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("intr").experiment_id
    by_trial = {r.data.tags["trial_id"]: r for r in client.search_runs([exp_id])}
    for r in stopped:
        if r["trial_id"] in by_trial:  # a trial that had started has a run, ended as interrupted
            run = by_trial[r["trial_id"]]
            assert run.info.status == "KILLED" and run.data.tags["status"] == "interrupted"

    res = subprocess.run(shlex.split(summary["resume"]) + ["--json"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **ray_env})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = pq.read_table(sweep / "results.parquet").to_pylist()
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    study = optuna.load_study(study_name="intr", storage=f"sqlite:///{sweep / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert sorted((round(a, 5), round(b, 5)) for a, b in (t.values for t in done)) == \
        sorted((round(r["ar_dimra_max"], 5), round(r["fid_judge"], 5)) for r in rows)
    runs = client.search_runs([exp_id])
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(r["trial_id"] for r in rows)
    assert {r.info.status for r in runs} == {"FINISHED"} and {r.data.tags["status"] for r in runs} == {"ok"}


def test_a_killed_data_parallel_worker_restarts_its_trial_from_the_last_checkpoint(tmp_path, ray_env, smoke_store):
    """A trial on two Train workers (data-parallel): the rank that does not write dies mid-unlearning; the trial
    restarts on two fresh workers and continues from rank 0's last saved state to the uninterrupted result."""
    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "worker"
    proc = start_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "worker", "--num-samples", "1",
                     "--workers", "2", "--max-failures", "1", "--json", env=ray_env)
    wait_for(lambda: any((d / "unlearn-state.parquet").exists() for d in trial_dirs(sweep)), proc)
    (trial,) = trial_dirs(sweep)
    first = attempts(trial)[0]
    assert len(first["pids"]) == 2 and first["pid"] == first["pids"][0]
    os.kill(first["pids"][1], signal.SIGKILL)  # rank 1, mid-unlearning
    out, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    (row,) = rows_of(sweep)
    assert row["status"] == "ok" and row["attempts"] == 2 and row["world_size"] == 2
    print("restarted_because:", row["restarted_because"])
    assert row["restarted_because"] and "unknown" not in row["restarted_because"]  # the failure it recovered from
    result = json.loads((trial / "result.json").read_text())
    assert result["resumed_from"]["unlearn"] >= 20 and result["world_size"] == 2

    # the same trial, uninterrupted, in this process (same seed, same thread count, cached base)
    exp = load(EXP)
    cfg = exp.trial_config({"unlearn.seed": row["unlearn.seed"]})
    clean = run_trial(cfg, str(storage / "store"), str(tmp_path / "clean"))
    for k in ("ar_mu", "ar_dimra_final", "ar_dimra_max", "retain_acc", "fid_judge"):
        assert result[k] == pytest.approx(clean[k], abs=0.05), k
    assert result["unlearn_loss_curve"] == pytest.approx(clean["unlearn_loss_curve"], rel=1e-3)


def test_mlflow_outage_loses_nothing(tmp_path, ray_env, smoke_store):
    port = _free_port()
    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    server = start_mlflow(db, port)
    uri = f"http://127.0.0.1:{port}"
    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "outage"
    try:
        env = {**ray_env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # fail fast while it is down
        proc = start_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "outage", "--num-samples", "2",
                         "--mlflow-uri", uri, "--json", env=env)
        wait_for(lambda: any((d / "config.json").exists() for d in trial_dirs(sweep)), proc)
        stop(server)  # the tracking server goes away mid-sweep
        out, err = finish(proc)
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        rows = rows_of(sweep)
        assert summary["mlflow_pending"] == 2 and [r["status"] for r in rows] == ["ok", "ok"]
        assert {r["mlflow_status"] for r in rows} == {"pending"}

        server = start_mlflow(db, port)  # back, same store
        res = run_cli("raysweep.tune", EXP, "--storage", str(storage), "--name", "outage", "--mlflow-uri", uri,
                      "--resume", "--json", timeout=300, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads(res.stdout.strip().splitlines()[-1])["mlflow_pending"] == 0
        rows = rows_of(sweep)
        assert {r["mlflow_status"] for r in rows} == {"logged"}
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
        assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # one run per trial
        by_id = {r["trial_id"]: r for r in rows}
        for run in runs:
            assert run.data.metrics["ar_dimra_max"] == pytest.approx(by_id[run.data.tags["trial_id"]]["ar_dimra_max"])
    finally:
        stop(server)


@pytest.fixture
def s3(tmp_path):
    """A real S3-protocol endpoint (moto's server) on 127.0.0.1; credentials through the AWS environment."""
    import boto3

    port = _free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "raysweep-test",
           "AWS_SECRET_ACCESS_KEY": "raysweep-test", "AWS_DEFAULT_REGION": "us-east-1"}
    server = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                          env["AWS_ENDPOINT_URL"], timeout=60)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        boto3.client("s3").create_bucket(Bucket="raysweep")
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop(server)


def test_s3_checkpoint_round_trip_is_bit_identical(s3, tmp_path):
    import torch

    state = {"w": torch.randn(7, 5), "h": torch.randn(3).half(), "b": torch.randn(4).bfloat16(),
             "i": torch.arange(6).reshape(2, 3)}
    store.save_state("s3://raysweep/x/ck.parquet", state, kind="t", step=3)
    store.save_state(str(tmp_path / "ck.parquet"), state, kind="t", step=3)
    back, meta = store.load_state("s3://raysweep/x/ck.parquet")
    assert meta["step"] == 3 and all(torch.equal(state[k], back[k]) and back[k].dtype == state[k].dtype for k in state)
    fs, path = store.resolve("s3://raysweep/x/ck.parquet")
    with fs.open_input_stream(path) as f:
        assert f.read() == (tmp_path / "ck.parquet").read_bytes()


def test_sweep_on_s3_storage(s3, tmp_path, ray_env, smoke_store):
    import pyarrow.fs as pafs

    fs, path = store.resolve("s3://raysweep/sweeps/store")  # the session's smoke store, uploaded (built on S3 below)
    pafs.copy_files(str(smoke_store), path, destination_filesystem=fs)
    res = run_cli("raysweep.tune", EXP, "--storage", "s3://raysweep/sweeps", "--name", "ons3", "--num-samples", "1",
                  "--smoke", "--json", timeout=600, env={**ray_env, **s3}, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["shared_seconds"] == {}  # found on S3: nothing built
    fs, path = store.resolve("s3://raysweep/sweeps/ons3/results.parquet")
    with fs.open_input_file(path) as f:
        (row,) = pq.read_table(f).to_pylist()
    # the unlearned model lives in the storage's shared store (trials that differ only in the attack share it);
    # the table holds URIs relative to the sweep, so a synced copy of it finds them too
    assert row["status"] == "ok" and row["unlearned_uri"].startswith("../store/unlearned/")
    assert all(u.startswith("trials/") for u in json.loads(row["attack_uris"]).values())
    uri = store.locate(row["unlearned_uri"], "s3://raysweep/sweeps/ons3")
    assert uri.startswith("s3://raysweep/sweeps/store/unlearned/")
    state, meta = store.load_state(uri)  # content hash verified on the way
    assert meta["kind"] == "unlearned" and state
    info = store.read_json("s3://raysweep/sweeps/ons3/sweep.json")
    assert info["optuna_storage"].startswith("sqlite:///") and Path(info["optuna_storage"][10:]).exists()
    assert info["mlflow_uri"].startswith("sqlite:///")


def test_a_two_node_cluster_runs_a_sweep_with_nothing_on_a_shared_disk(s3, tmp_path, ray_env, monkeypatch):
    """Two Ray nodes on this machine (ray.cluster_utils.Cluster), each with room for one trial, storage on the
    S3-protocol server: what the trials share is built into the object store, trials run on both nodes and
    everything lands there; local storage is refused up front. One CPU per node and per trial: the two nodes share this machine's two cores (two trials of
    two threads each would oversubscribe them)."""
    from ray.cluster_utils import Cluster

    from conftest import assert_one_line_error

    monkeypatch.setenv("RAY_TMPDIR", ray_env["RAY_TMPDIR"])  # the nodes' session files, killed by ray_env
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)  # a trial asks for 1 CPU: one per node
    cluster.wait_for_nodes()
    try:
        args = (EXP, "--address", cluster.address, "--smoke", "--name", "multi", "--num-samples", "2",
                "--cpus-per-trial", "1", "--json")
        refused = run_cli("raysweep.tune", *args, "--storage", str(tmp_path / "local"), cwd=str(tmp_path))
        assert_one_line_error(refused, "on this machine's own disk", "has 2 nodes")
        res = run_cli("raysweep.tune", *args, "--storage", "s3://raysweep/multi", "--max-concurrent", "2",
                      timeout=600, cwd=str(tmp_path))
        assert res.returncode == 0, res.stderr[-3000:]
        assert {"judge", "base"} <= set(json.loads(res.stdout.strip().splitlines()[-1])["shared_seconds"])
    finally:
        cluster.shutdown()
    fs, path = store.resolve("s3://raysweep/multi/multi/results.parquet")
    with fs.open_input_file(path) as f:
        rows = pq.read_table(f).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"]
    # one trial started on each node; a trial may finish on the other: Tune restarts a failed attempt (seen once in a
    # full suite run, whose cause went with the test's in-memory S3; the row then says ok, the run's tags say where)
    started = {a["node_id"] for r in rows
               for a in store.read_json(f"s3://raysweep/multi/multi/trials/{r['trial_id']}/attempts.json")}
    assert len(started) == 2
    for r in rows:  # a restarted trial says why; one that was not says nothing
        assert bool(r["restarted_because"]) == (r["attempts"] > 1), (r["attempts"], r["restarted_because"])
    for r in rows:  # its checkpoints and its own record are in the object store
        uris = [store.locate(u, "s3://raysweep/multi/multi") for u in [r["unlearned_uri"],
                                                                       *json.loads(r["attack_uris"]).values()]]
        assert all(u.startswith("s3://raysweep/multi/") and store.exists(u) for u in uris)
        assert store.exists(f"s3://raysweep/multi/multi/trials/{r['trial_id']}/result.json")
    local = tmp_path / "runs" / "multi"  # the driver's machine holds only the SQLite stores (and MLflow's files)
    assert set(os.listdir(local)) <= {"mlflow.db", "optuna.db", "mlartifacts"}
    client = MlflowClient(f"sqlite:///{local / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("multi").experiment_id])
    assert sorted(run.data.tags["node_id"] for run in runs) == sorted(r["node_id"] for r in rows)
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{local / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert not (tmp_path / "local").exists() or not any((tmp_path / "local").rglob("*.parquet"))


def test_a_node_dying_mid_trial_restarts_the_trial_on_another_node(tmp_path, ray_env, smoke_store, monkeypatch):
    """Two worker nodes (the head holds no CPU): the node running the trial dies mid-unlearning; Tune restarts the
    trial on the other node, which continues from the last saved state (storage both nodes reach)."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_TMPDIR", ray_env["RAY_TMPDIR"])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "node"
    try:  # one machine: its disk is the nodes' shared storage (as a network filesystem would be)
        proc = start_cli("raysweep.tune", EXP, "--address", cluster.address, "--storage", str(storage), "--name",
                         "node", "--num-samples", "1", "--max-failures", "1", "--json",
                         env={**ray_env, "RAYSWEEP_SHARED_STORAGE": "1"}, cwd=str(tmp_path))
        wait_for(lambda: any((d / "unlearn-state.parquet").exists() for d in trial_dirs(sweep)), proc)
        (trial,) = trial_dirs(sweep)
        (running,) = [n for n in nodes if n.node_id == attempts(trial)[0]["node_id"]]
        cluster.remove_node(running, allow_graceful=False)
        out, err = finish(proc)
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, err[-3000:]
    (row,) = rows_of(sweep)
    assert row["status"] == "ok" and row["attempts"] == 2
    first, second = attempts(trial)
    assert first["node_id"] == running.node_id != second["node_id"] == row["node_id"]
    assert json.loads((trial / "result.json").read_text())["resumed_from"]["unlearn"] >= 20
