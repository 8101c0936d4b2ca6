"""MLflow: one flat run per trial — tags, the flattened resolved config as params, step metrics, final metrics,
sample grids and the loss curve as artifacts. Uses MLflow's client against any tracking URI
(``sqlite:///…`` by default, or ``http://127.0.0.1:PORT`` for a running ``mlflow server``)."""
from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from . import store
from .config import Config, RaysweepError, flatten
from .metrics import CURVES

# A tracking server that is down must not hold a trial for minutes: a few quick retries, then the result waits in
# the sweep's storage and is logged later (``sync``). Users can still override both.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
UNAVAILABLE = (MlflowException, OSError)  # what an unreachable or failing tracking store raises


def check_reachable(uri: str) -> None:
    """Fail early, in one line, when the tracking server is not there."""
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except (urllib.error.URLError, OSError) as e:
            raise RaysweepError(f"MLflow tracking server {uri} is unreachable ({getattr(e, 'reason', e)})") from None
    elif uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)


# MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, no metric columns); the value is
# the one its UI writes for "Machine learning / Model training".
KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(uri: str, name: str, artifact_root: str | None = None) -> str:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            location = None if uri.startswith("http") or artifact_root is None else os.path.join(artifact_root, name)
            return client.create_experiment(name, artifact_location=location, tags=KIND)
        except MlflowException:  # another trial created it first
            exp = client.get_experiment_by_name(name)
    for k, v in KIND.items():
        if exp.tags.get(k) != v:  # an experiment made by an older raysweep or by hand
            client.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id


def relocate(db: str, artifacts: str) -> bool:
    """A sweep's own SQLite store after the sweep was copied or moved: MLflow keeps absolute artifact locations
    and has no call to change them, so the experiment's and its runs' locations are rewritten to the copy's
    ``artifacts`` directory (``<sweep>/mlartifacts``). Returns whether anything moved."""
    import sqlite3

    if not os.path.exists(db):
        return False
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT artifact_location FROM experiments WHERE artifact_location LIKE ?",
                           ("%/mlartifacts/%",)).fetchall()
        old = next((r[0].rsplit("/mlartifacts/", 1)[0] + "/mlartifacts" for r in rows
                    if not r[0].startswith(artifacts + "/")), None)
        if old is None:
            return False
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                        (artifacts, len(old) + 1, len(old) + 1, old + "/"))
    return True


def run_name(method: str, swept: dict) -> str:
    """What ran, readable in the run list: the method and the values the sweep chose (the trial id stays a tag)."""
    def short(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    values = (f"{k.split('.')[-1]}={short(v)}" for k, v in swept.items() if k != "unlearn.method")
    return " ".join([method, *values])[:250]


def start_run(uri: str, exp_id: str, trial_id: str, cfg: Config, tags: dict[str, str], name: str = "") -> str:
    """The trial's run: a restarted or resumed trial continues its own run (found by its trial_id tag), whose tags
    then say where this attempt runs (``host``, ``node_id``: where the trial finishes, as its results row does)."""
    client = MlflowClient(uri)
    found = client.search_runs([exp_id], filter_string=f"tags.trial_id = '{trial_id}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in {**tags, "attempt_restarted": "true"}.items()])
        return run_id
    run = client.create_run(exp_id, run_name=name or trial_id, tags={"trial_id": trial_id, **tags})
    params = [Param(k, str(v)) for k, v in flatten(cfg.to_dict()).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i:i + 100])
    return run.info.run_id


def log_result(uri: str, run_id: str, result: dict) -> None:
    """Final metrics, the AR curve by attack step, the loss curve, tags with checkpoint URIs, and pictures."""
    client = MlflowClient(uri)
    now = 0
    metrics = [Metric(k, float(v), now, 0) for k, v in result.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    for key in CURVES:
        for step, v in (result.get(key) or {}).items():
            metrics.append(Metric(f"{key}_by_step", float(v), now, int(step)))
    losses = result.get("unlearn_loss_curve") or []
    stride = max(1, len(losses) // 500)
    metrics += [Metric("unlearn_loss", float(v), now, i + 1) for i, v in enumerate(losses) if i % stride == 0]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    tags = [RunTag("status", str(result.get("status"))), RunTag("unlearned_uri", str(result.get("unlearned_uri"))),
            RunTag("base_uri", str(result.get("base_uri")))]
    tags += [RunTag(f"attack_uri_{k}", v) for k, v in (result.get("attack_uris") or {}).items()]
    client.log_batch(run_id, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:  # the trial drew them beside its result; log those files
        for name, picture in (result.get("pictures") or {}).items():
            client.log_artifact(run_id, store.get_file(picture, os.path.join(tmp, name)))


def finish(uri: str, exp_id: str, trial_id: str, cfg: Config, tags: dict[str, str], result: dict | None,
           error: str | None = None, pruned: bool = False, name: str = "", interrupted: bool = False) -> str:
    """Start (or find) the trial's run, log its result or its error, and end it. Returns the run id."""
    run_id = start_run(uri, exp_id, trial_id, cfg, tags, name)
    if result is not None:
        log_result(uri, run_id, result)
    end_run(uri, run_id, ok=result is not None, error=error, pruned=pruned, interrupted=interrupted)
    return run_id


def end_run(uri: str, run_id: str, ok: bool, error: str | None = None, pruned: bool = False,
            interrupted: bool = False) -> None:
    client = MlflowClient(uri)
    if interrupted:  # stopped with the sweep, to be continued by --resume: neither a result nor a failure
        client.set_tag(run_id, "status", "interrupted")
        client.set_terminated(run_id, "KILLED")
        return
    if error:
        client.set_tag(run_id, "error", error[:5000])
    elif ok and "error" in client.get_run(run_id).data.tags:  # an earlier attempt failed; this one did not
        client.delete_tag(run_id, "error")
    if pruned:  # stopped by the sweep's scheduler: neither a result nor a failure
        client.set_tag(run_id, "status", "pruned")
    client.set_terminated(run_id, "KILLED" if pruned else "FINISHED" if ok else "FAILED")
