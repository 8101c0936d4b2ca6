"""MLflow runs as a user finds them in the UI: a model-training experiment, runs named for what ran, no stale error."""
from mlflow.tracking import MlflowClient

from raysweep import tracking
from raysweep.config import Config


def test_experiment_kind_run_names_and_a_cleared_error(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(uri, "sweep", str(tmp_path / "artifacts"))
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    old = client.create_experiment("made-by-hand")  # no kind: MLflow 3 would open it as GenAI
    assert tracking.experiment_id(uri, "made-by-hand") == old
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"

    name = tracking.run_name("dimum", {"unlearn.method": "dimum", "unlearn.steps": 20, "dimum.beta": 0.123456, "dimum.alternative": "noise"})
    assert name == "dimum steps=20 beta=0.123 alternative=noise"
    run_id = tracking.start_run(uri, exp_id, "abc123", Config(), {"method": "dimum"}, name)
    run = client.get_run(run_id)
    assert run.info.run_name == name and run.data.tags["trial_id"] == "abc123"

    tracking.end_run(uri, run_id, ok=False, error="RuntimeError: worker died")
    assert client.get_run(run_id).data.tags["error"] == "RuntimeError: worker died"
    again = tracking.start_run(uri, exp_id, "abc123", Config(), {"method": "dimum", "node_id": "n2"}, name)  # retried,
    assert again == run_id  # on another node: the run says where it runs now
    assert {k: client.get_run(run_id).data.tags[k] for k in ("node_id", "attempt_restarted", "trial_id")} == \
        {"node_id": "n2", "attempt_restarted": "true", "trial_id": "abc123"}
    tracking.end_run(uri, run_id, ok=True)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "error" not in run.data.tags


def test_a_moved_sweeps_store_finds_its_artifacts_in_the_copy(tmp_path):
    sweep = tmp_path / "runs" / "s"
    uri = f"sqlite:///{sweep / 'mlflow.db'}"
    sweep.mkdir(parents=True)
    exp_id = tracking.experiment_id(uri, "s", str(sweep / "mlartifacts"))
    client = MlflowClient(uri)
    run_id = client.create_run(exp_id).info.run_id
    (tmp_path / "grid.png").write_bytes(b"png")
    client.log_artifact(run_id, str(tmp_path / "grid.png"))
    assert not tracking.relocate(str(sweep / "mlflow.db"), str(sweep / "mlartifacts"))  # in place: nothing to do

    moved = tmp_path / "elsewhere" / "s"
    moved.parent.mkdir()
    sweep.rename(moved)
    assert tracking.relocate(str(moved / "mlflow.db"), str(moved / "mlartifacts"))
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    assert client.get_experiment(exp_id).artifact_location == str(moved / "mlartifacts" / "s")
    assert client.get_run(run_id).info.artifact_uri.startswith(str(moved / "mlartifacts" / "s" / run_id))
    got = client.download_artifacts(run_id, "grid.png", str(tmp_path))
    assert open(got, "rb").read() == b"png" and not sweep.exists()
