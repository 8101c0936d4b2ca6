"""``python -m raysweep.tune EXPERIMENT.py``: a sweep of unlearn -> attack -> evaluate trials on Ray Tune, each trial
a Ray Train ``TorchTrainer`` job, searched by Optuna (multi-objective NSGA-II), tracked in MLflow, with results in
``<storage>/<name>/results.parquet``.

Without --address a local Ray sized to this machine is started (and stopped); ``--address auto`` joins the
cluster ``ray up cluster.yaml`` started. ``--resume`` continues a sweep whose driver died; a trial whose worker
died is restarted (``--max-failures``) and continues from the loop state it saved in its trial directory.
"""
from __future__ import annotations

if __name__ == "__main__":  # answer --help and bad arguments before the imports below load torch, Ray, MLflow
    from raysweep.commands import tune_parser

    tune_parser().parse_args()

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from . import parallel, restarts, stop, store, tracking
from . import commands
from .cli import device_from, run
from .config import RaysweepError, flatten
from .experiment import SMOKE_MAX_SAMPLES, SMOKE_MAX_UNLEARN_STEPS, Experiment, load, smoke_space, violated_before_attack
from .metrics import CURVES
from .resolve import resolve
from .results import result_rows, trial_id_of, write_table


@dataclasses.dataclass
class Setup:
    """What every trial of a sweep needs besides its sampled parameters (shipped to trials by Ray)."""
    exp: Experiment
    smoke: bool
    sweep_dir: str  # <storage>/<name>
    store_root: str  # base artefacts, shared by sweeps on the same storage
    ray_storage: str
    mlflow_uri: str
    mlflow_experiment_id: str
    device: str


def scalars(metrics: dict) -> dict:
    """Tune-friendly metrics: numbers and short strings; curves flattened as name/step."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or isinstance(v, (int, float, str)) and not (isinstance(v, str) and len(v) > 500):
            out[k] = v
        elif isinstance(v, dict) and k in CURVES:
            out.update({f"{k}/{s}": float(x) for s, x in v.items()})
    return out


URIS = ("unlearned_uri", "base_uri", "trial_dir")


def portable(metrics: dict, sweep_dir: str) -> dict:
    """A trial's URIs as Tune keeps them (and results.parquet holds them): relative to the sweep directory when
    on the same storage, so a copied or moved sweep reports and resumes in place."""
    out = {k: store.relative(v, sweep_dir) if k in URIS and isinstance(v, str) else v for k, v in metrics.items()}
    if isinstance(out.get("attack_uris"), dict):
        out["attack_uris"] = json.dumps({k: store.relative(v, sweep_dir) for k, v in out["attack_uris"].items()})
    return out


def _ray_checkpoint(uri: str, tmp: str):
    """A Ray checkpoint directory holding the Parquet weights from the store."""
    fs, path = store.resolve(uri)
    local = os.path.join(tmp, os.path.basename(path))
    with fs.open_input_stream(path) as src, open(local, "wb") as dst:
        dst.write(src.read())
    return tmp


def trainable(params: dict, setup: Setup) -> None:
    """One Tune trial: resolve its config, run the trial as a Ray Train job, log to MLflow, report to Tune.

    A restarted trial (worker lost, ``--resume``) keeps its trial id, so ``run_trial`` finds what the earlier
    attempt left in the trial directory and continues from there, and MLflow continues the trial's own run.
    """
    import ray.tune
    import torch

    torch.set_num_threads(max(1, setup.exp.cpus_per_trial))
    trial_id = ray.tune.get_context().get_trial_id()
    cfg = setup.exp.trial_config(params, setup.smoke)
    trial_dir = store.join(setup.sweep_dir, "trials", trial_id)
    tags = _tags(setup, cfg, trial_dir)
    run_id = _mlflow(lambda: tracking.start_run(setup.mlflow_uri, setup.mlflow_experiment_id, trial_id, cfg, tags,
                                                _run_name(setup, cfg, params)))
    try:
        _train(cfg, setup, trial_id, trial_dir)
        result = store.read_json(store.join(trial_dir, "result.json"))
    except Exception as e:
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if run_id:
            _mlflow(lambda: tracking.end_run(setup.mlflow_uri, run_id, ok=False, error=msg))
        raise RuntimeError(f"trial {trial_id} failed: {msg}") from e
    logged = bool(run_id) and _mlflow(lambda: (tracking.log_result(setup.mlflow_uri, run_id, result),
                                               tracking.end_run(setup.mlflow_uri, run_id, ok=True), True)[-1])
    final = portable({"attack_uris": {}, **result}, setup.sweep_dir)
    ray.tune.report({**scalars(final), **parallel.where(), "phase": "final", "trial_id": trial_id,
                     "mlflow_run_id": run_id or "", "mlflow_status": "logged" if logged else "pending",
                     "attack_uris": final["attack_uris"]})


def _tags(setup: Setup, cfg, trial_dir: str) -> dict[str, str]:
    return {"experiment": setup.exp.name, "method": cfg.unlearn.method, "forget_class": str(cfg.data.forget_class),
            "target": resolve(cfg).target.spec, "trial_dir": trial_dir, "smoke": str(setup.smoke), **parallel.where()}


def _run_name(setup: Setup, cfg, params: dict) -> str:
    """The swept values as the trial runs them (a smoke run caps the steps the sampler chose)."""
    ran = flatten(cfg.to_dict())
    return tracking.run_name(cfg.unlearn.method, {k: ran.get(k, params.get(k)) for k in setup.exp.space})


def _mlflow(call):
    """MLflow being down must not fail a trial: its result is in storage and ``sync_mlflow`` logs it later."""
    try:
        return call()
    except tracking.UNAVAILABLE as e:
        print(f"raysweep: MLflow unavailable, logging deferred ({type(e).__name__})", file=sys.stderr)
        return None


def sync_mlflow(grid, rows: list[dict], setup: Setup) -> int:
    """Log every trial MLflow missed (the server was down) from the trial's stored result. Returns how many are
    still pending. A trial's run is found by its trial_id tag, so nothing is logged twice as a new run."""
    pending = 0
    for r, row in zip(grid, rows):
        if row.get("mlflow_status") == "logged":
            continue
        trial_dir = store.join(setup.sweep_dir, "trials", row["trial_id"])
        try:
            cfg = setup.exp.trial_config(r.config or {}, setup.smoke)
        except RaysweepError:
            continue  # no valid config, nothing ran: the error is in results.parquet
        result_uri = store.join(trial_dir, "result.json")
        result = store.read_json(result_uri) if row["status"] in ("ok", "diverged") and store.exists(result_uri) \
            else None
        stopped = row["status"] == "interrupted"
        run_id = _mlflow(lambda: tracking.finish(setup.mlflow_uri, setup.mlflow_experiment_id, row["trial_id"], cfg,
                                                  _tags(setup, cfg, trial_dir), result,
                                                  None if stopped else row.get("error") or None,
                                                  pruned=row["status"] == "pruned", interrupted=stopped,
                                                  name=_run_name(setup, cfg, r.config or {})))
        row["mlflow_run_id"] = run_id or ""
        row["mlflow_status"] = "logged" if run_id and not stopped else "pending"  # a stopped trial: again on resume
        pending += run_id is None
    return pending


def _train(cfg, setup: Setup, trial_id: str, trial_dir: str) -> None:
    import ray.train
    import ray.tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    workers = setup.exp.workers
    use_gpu = setup.exp.gpus_per_worker > 0

    def train_fn(_config: dict) -> None:
        import torch

        from .trial import run_trial  # here, not at the top: the driver never loads the model stack

        torch.set_num_threads(threads_per_worker(setup.exp))  # a Train worker starts with Ray's 1 thread

        def report(metrics: dict, uri: str | None) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                if workers == 0:  # local mode runs in this process: report straight to Tune
                    ckpt = ray.tune.Checkpoint.from_directory(_ray_checkpoint(uri, tmp)) if uri else None
                    ray.tune.report(scalars(portable(metrics, setup.sweep_dir)), checkpoint=ckpt)
                else:  # every Train worker reports (rank 0's metrics and checkpoint reach Tune)
                    ckpt = (ray.train.Checkpoint.from_directory(_ray_checkpoint(uri, tmp))
                            if uri and parallel.leader() else None)
                    ray.train.report(scalars(portable(metrics, setup.sweep_dir)), checkpoint=ckpt)

        device = "cuda" if use_gpu else setup.device
        exp = setup.exp
        skip = (lambda out: violated_before_attack(out, exp.constraints)) \
            if exp.attack_feasible_only and not setup.smoke else None
        run_trial(cfg, setup.store_root, trial_dir, report=report, device=device, resume=True, skip_attack=skip)

    callbacks = []
    if workers > 0:
        from ray.tune.integration.ray_train import TuneReportCallback
        callbacks.append(TuneReportCallback())
    resources = {"CPU": cpus_per_worker(setup.exp), **({"GPU": setup.exp.gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(train_fn, scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                                                  resources_per_worker=resources if workers else None),
                           run_config=RunConfig(name=f"train-{trial_id}", storage_path=setup.ray_storage,
                                                callbacks=callbacks))
    trainer.fit()


# With Train workers the trial's own process only waits for them (as Train's controller does, with 0 CPUs): it
# reserves a token CPU share, since Tune needs a non-empty bundle, and the workers share the rest of the trial's.
WAITING_CPU = 0.01


def threads_per_worker(exp: Experiment) -> int:
    return max(1, exp.cpus_per_trial // max(1, exp.workers))


def cpus_per_worker(exp: Experiment) -> float:
    return (exp.cpus_per_trial - WAITING_CPU) / max(1, exp.workers)


def _searcher(exp: Experiment, sweep_dir_local: str, name: str):
    if exp.search != "optuna":
        if exp.search == "random":
            from ray.tune.search.basic_variant import BasicVariantGenerator
            return BasicVariantGenerator(random_state=exp.seed)
        return None
    import optuna

    from .search import ConstrainedOptunaSearch, SweepStorage

    storage = SweepStorage(f"sqlite:///{os.path.join(sweep_dir_local, 'optuna.db')}")
    sampler = optuna.samplers.NSGAIISampler(seed=exp.seed)  # constraints come with each trial (set_constraint)
    return ConstrainedOptunaSearch(metric=list(exp.objectives), mode=list(exp.objectives.values()), sampler=sampler,
                                 storage=storage, study_name=name, constraints=exp.constraints)


def _scheduler(exp: Experiment):
    if exp.prune is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    pr = exp.prune
    return ASHAScheduler(metric=pr["metric"], mode=pr["mode"], time_attr="training_iteration",
                         grace_period=pr.get("grace_period", 2), reduction_factor=pr.get("reduction_factor", 2),
                         max_t=pr.get("max_t", 100))


def build_shared(exp: Experiment, smoke: bool, setup: Setup, cpus: float) -> dict[str, float]:
    """The artefacts every trial shares (judge, base, retrained model, control attack, utility reference), built
    before the trials as Ray tasks side by side (raysweep/shared.py). A failure here fails nothing: each trial then
    builds what it needs itself, and records its own error."""
    from . import shared

    try:
        cfg = exp.trial_config({}, smoke)
    except RaysweepError:
        return {}  # the fixed config alone is not a valid trial: the trials will say why
    gpus = min(1.0, exp.gpus_per_worker)
    try:
        seconds = shared.build(cfg, list(exp.space), setup.store_root, "cuda" if gpus else setup.device,
                               min(threads_per_worker(exp), int(cpus)), gpus,
                               attacked=not exp.attack_feasible_only or smoke)
    except Exception as e:  # a task's error (RayTaskError wraps it): the trials meet it again and record it
        print(f"raysweep: the shared artefacts were not built before the trials ({type(e).__name__}: "
              f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}); each trial builds what it needs",
              file=sys.stderr)
        return {}
    if any(v > 1 for v in seconds.values()):
        print("raysweep: built before the trials: " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()),
              file=sys.stderr)
    return {k: round(v, 1) for k, v in seconds.items()}


def _local_dir(storage: str, name: str) -> str:
    """Where SQLite stores (Optuna, default MLflow) live: beside the sweep when storage is local."""
    path = os.path.join(os.path.abspath(storage), name) if not store.is_remote(storage) else os.path.abspath(
        os.path.join("runs", name))
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def _restored_here(ray_storage: str, name: str, local_dir: str, optuna_study: bool):
    """Tune's restore unpickles its saved state with the paths it was made with. Ray re-points the restored trials
    at a moved experiment, but not the experiment spec its searcher keeps (trials it has yet to start would be
    created at the old place) nor, of course, the searcher's Optuna storage. Inside this context both are re-pointed
    at where the sweep is now (Ray's StorageContext has no pickling hook of its own; this one is installed only
    while the state loads)."""
    from ray.train._internal.storage import StorageContext, get_fs_and_path

    from . import search

    fs, fs_path = get_fs_and_path(ray_storage, None)

    def setstate(self, state: dict) -> None:
        # a trial's own storage is left as saved: Ray re-points it (Trial.set_storage), and the paths of the trial's
        # checkpoints with it, only while it still holds the old place
        if state.get("experiment_dir_name") == name and state.get("storage_fs_path") != fs_path \
                and state.get("trial_dir_name") is None:
            state = {**state, "storage_fs_path": fs_path, "storage_filesystem": fs}
        self.__dict__.update(state)

    StorageContext.__setstate__ = setstate
    search.MOVED_TO = local_dir if optuna_study else None
    try:
        yield
    finally:
        del StorageContext.__setstate__
        search.MOVED_TO = None


def _beside(uri: str | None, sweep_dir: str) -> str | None:
    """A SQLite store inside the sweep directory by its file name there (sweep.json's paths are relative to the
    sweep, so a copy stays self-contained); any other URI as given."""
    if uri and uri.startswith("sqlite:///") and not store.is_remote(sweep_dir):
        path = uri.removeprefix("sqlite:///")
        if os.path.dirname(path) == sweep_dir:
            return os.path.basename(path)
    return uri


def connect(address: str | None, num_cpus: int | None = None) -> None:
    import ray

    if address and address != "auto" and ":" in address and "://" not in address:
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise RaysweepError(f"Ray cluster at {address} is unreachable ({e})") from None
    try:
        if address:
            # quietly: a refusal after connecting (e.g. local storage on a multi-node cluster) stays one line
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    except (OSError, RuntimeError, ValueError) as e:
        raise RaysweepError(f"could not connect to Ray at {address or 'a new local runtime'}: "
                            f"{str(e).strip().splitlines()[0]}") from None


def sweep(exp: Experiment, *, storage: str, name: str, mlflow_uri: str | None, num_samples: int | None,
          max_concurrent: int | None, smoke: bool, resume: bool, address: str | None, device: str,
          max_failures: int = 1) -> dict:
    import ray
    from ray import tune

    exp.validate()
    # After an interrupt Tune suggests its own Tuner.restore(...); raysweep prints its --resume command instead.
    logging.getLogger("ray.tune.tune").addFilter(lambda r: "Tuner.restore" not in r.getMessage())
    # Trials report after unlearning and at each attack checkpoint, before the objectives exist; the searcher
    # reads only the final result (multi-objective Optuna gets no intermediate results anyway).
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    local_dir = _local_dir(storage, name)
    own_store = f"sqlite:///{os.path.join(local_dir, 'mlflow.db')}"
    mlflow_uri = mlflow_uri or own_store
    tracking.check_reachable(mlflow_uri)
    if mlflow_uri == own_store:  # the sweep's own store, maybe moved
        tracking.relocate(os.path.join(local_dir, "mlflow.db"), os.path.join(local_dir, "mlartifacts"))
    ray_storage = storage if store.is_remote(storage) else os.path.abspath(storage)
    sweep_dir = store.join(ray_storage, name)
    n = num_samples or exp.num_samples
    if smoke:
        n = min(n, SMOKE_MAX_SAMPLES)
    if exp.search == "grid" and not num_samples:
        n = 1  # every grid point once
    if resume and not tune.Tuner.can_restore(sweep_dir):
        raise RaysweepError(f"--resume: there is no sweep {name!r} under {ray_storage} to resume")
    artifacts = os.path.join(local_dir, "mlartifacts")
    # MLflow's first connection to a new SQLite store migrates its schema (~3 s here): done while a new local Ray
    # runtime starts; with a cluster, only once the cluster has accepted the storage (the check below)
    early = ThreadPoolExecutor(1).submit(tracking.experiment_id, mlflow_uri, name, artifacts) if not address else None
    connect(address)
    try:
        nodes = sum(n.get("Alive", False) for n in ray.nodes())
        if nodes > 1 and not store.shared(ray_storage):
            raise RaysweepError(
                f"--storage {storage} is on this machine's own disk, but the Ray cluster has {nodes} nodes: trials on "
                "the others could not read or write it; use s3://… (or a network filesystem mounted at the same path "
                "on every node; set RAYSWEEP_SHARED_STORAGE=1 if raysweep does not recognise yours)")
        cpus = ray.cluster_resources().get("CPU", 1)
        concurrent = max_concurrent or max(1, int(cpus // exp.cpus_per_trial))
        exp_id = early.result() if early else tracking.experiment_id(mlflow_uri, name, artifacts)
        setup = Setup(exp, smoke, sweep_dir, store.join(ray_storage, "store"), ray_storage, mlflow_uri, exp_id,
                      device)
        optuna_uri = f"sqlite:///{os.path.join(local_dir, 'optuna.db')}" if exp.search == "optuna" else None
        store.write_json(store.join(sweep_dir, "sweep.json"), {  # where everything of this sweep lives
            "experiment": exp.name, "name": name, "storage": store.relative(ray_storage, sweep_dir),
            "mlflow_uri": _beside(mlflow_uri, sweep_dir), "mlflow_experiment_id": exp_id,
            "optuna_storage": _beside(optuna_uri, sweep_dir), "optuna_study": name if optuna_uri else None,
            "smoke": smoke, "objectives": exp.objectives, "constraints": exp.constraints})
        start = time.perf_counter()  # the sweep's seconds include what the trials share
        shared_seconds = build_shared(exp, smoke, setup, cpus)
        resources = {"cpu": exp.cpus_per_trial if exp.workers == 0 else WAITING_CPU,
                     "gpu": exp.gpus_per_worker if exp.workers == 0 else 0}
        fn = tune.with_resources(tune.with_parameters(trainable, setup=setup), resources)
        run_config = tune.RunConfig(name=name, storage_path=ray_storage,
                                    failure_config=tune.FailureConfig(max_failures=max_failures),
                                    callbacks=[restarts.recorder(sweep_dir)])
        path = store.join(ray_storage, name)
        space = smoke_space(exp.space) if smoke else exp.space
        if resume:
            tuner = None
        else:
            # reuse_actors: a trial starts in the process its predecessor ran in, imports done (0.2 s between two
            # trials instead of ~9 s measured here); Tune falls back to a new process when a reset does not finish
            tuner = tune.Tuner(fn, param_space=space, run_config=run_config, tune_config=tune.TuneConfig(
                search_alg=_searcher(exp, local_dir, name), scheduler=_scheduler(exp), num_samples=n,
                max_concurrent_trials=concurrent, reuse_actors=True))
        try:
            # a restored sweep's state is unpickled at restore and again at fit: both where the sweep is now
            with (_restored_here(ray_storage, name, local_dir, exp.search == "optuna") if resume
                  else contextlib.nullcontext()), stop_signals() as stop:
                tuner = tuner or tune.Tuner.restore(path, trainable=fn, param_space=space, resume_unfinished=True,
                                                    resume_errored=False, restart_errored=False)
                grid = tuner.fit()
        except Exception as e:  # the sweep itself (not a trial) failed
            raise RaysweepError(f"sweep {name} could not run: {type(e).__name__}: "
                                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        unfinished = unfinished_trials(grid) if stop else frozenset()
        rows = result_rows(grid, exp, smoke, unfinished)
        for row in rows:
            row["restarted_because"] = restarts.last_cause(sweep_dir, row["trial_id"])
        mlflow_pending = sync_mlflow(grid, rows, setup)
        if unfinished and optuna_uri:
            fail_running(optuna_uri, name)
    finally:
        ray.shutdown()
    table = store.join(sweep_dir, "results.parquet")
    write_table(rows, table)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "diverged", "error", "pruned")}
    if exp.constraints:
        counts["meet_constraints"] = sum(bool(r.get("constraints_met")) for r in rows)
    if exp.attack_feasible_only:
        counts["not_attacked"] = sum(r.get("attack_skipped") == 1 for r in rows)
    return {"experiment": exp.name, "name": name, "trials": len(rows), **counts, "results": table,
            "mlflow_uri": mlflow_uri, "mlflow_pending": mlflow_pending, "optuna_storage": optuna_uri,
            "seconds": round(time.perf_counter() - start, 1), "shared_seconds": shared_seconds,
            "objectives": exp.objectives,
            **({"smoke": SMOKE_NOTE} if smoke else {}),
            **({"interrupted": len(unfinished), "signal": stop.get("signal", signal.SIGINT)} if unfinished else {})}


@contextlib.contextmanager
def stop_signals():
    """Record whether the sweep was stopped by a signal. Tune handles Ctrl-C itself (it saves its state, ends the
    running trials and returns as if finished); SIGTERM is turned into the same graceful stop instead of killing
    the driver. Yields a dict that holds ``signal`` once one came."""
    seen: dict = {}

    def on_int(signum, frame):  # Tune's handler puts this one back when it fires; a second Ctrl-C lands here
        raise KeyboardInterrupt

    def on_term(signum, frame):
        seen["signal"] = signum
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_int), signal.signal(signal.SIGTERM, on_term)
    try:
        yield seen
    finally:
        if signal.getsignal(signal.SIGINT) is on_int:  # Tune's handler fired: the sweep was interrupted
            seen.setdefault("signal", signal.SIGINT)
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def unfinished_trials(grid) -> frozenset[str]:
    """After an interrupt: the trials without a final result (Tune returns instead of raising, and marks them
    terminated once it has stopped them)."""
    return frozenset(trial_id_of(r) for r in grid if r.error is None and (r.metrics or {}).get("phase") != "final")


def fail_running(optuna_uri: str, name: str) -> None:
    """An interrupted trial's Optuna trial is closed as FAIL, not left RUNNING; on --resume, the searcher records
    the resumed trial's result as a new COMPLETE trial with the same parameters (search.py)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=optuna_uri)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "raysweep_status", "interrupted")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


SMOKE_NOTE = (f"a smoke run checks that the sweep runs end to end; its numbers mean nothing (a 60-step tiny base "
              f"that may draw no digit, at most {SMOKE_MAX_UNLEARN_STEPS} unlearning steps)")


# Experiment fields a command-line flag overrides; the resume command repeats the flags given
EXPERIMENT_FLAGS = {"workers": "--workers", "cpus_per_trial": "--cpus-per-trial"}


def main(argv: list[str] | None = None) -> None:
    args = commands.tune_parser().parse_args(argv)

    def job() -> dict:
        if args.num_samples is not None and args.num_samples <= 0:
            raise RaysweepError(f"--num-samples must be positive, got {args.num_samples}")
        if args.max_failures < 0:
            raise RaysweepError(f"--max-failures must be >= 0, got {args.max_failures}")
        exp = load(args.experiment)
        given = {field: getattr(args, field) for field in EXPERIMENT_FLAGS if getattr(args, field) is not None}
        if given:
            exp = dataclasses.replace(exp, **given).validate()
        store.ensure_writable(args.storage, "--storage")
        name = args.name or (exp.name + ("-smoke" if args.smoke else ""))
        out = sweep(exp, storage=args.storage, name=name, mlflow_uri=args.mlflow_uri, num_samples=args.num_samples,
                    max_concurrent=args.max_concurrent, smoke=args.smoke, resume=args.resume, address=args.address,
                    device=device_from(args.device), max_failures=args.max_failures)
        if args.report and out["ok"] + out["diverged"] > 0:
            from .report import build

            objs = [f"{k}:{v}" for k, v in exp.objectives.items()]
            x, y = (objs + objs)[:2] if len(objs) < 2 else (objs[1], objs[0])
            sweep_dir = store.join(args.storage if store.is_remote(args.storage) else os.path.abspath(args.storage),
                                   out["name"])
            local_out = os.path.join(sweep_dir, "report") if not store.is_remote(sweep_dir) else os.path.join("runs", name,
                                                                                                      "report")
            built = build(sweep_dir, x, y, objs[2:], local_out, out["mlflow_uri"], exp.constraints)
            out["report"], out["report_note"] = built["report"], built.get("note", "")
        if not args.json:
            print(f"\nsweep {out['name']}: {out['trials']} trials ({out['ok']} ok, {out['diverged']} diverged, "
                  f"{out['error']} error" + (f", {out['pruned']} pruned" if out["pruned"] else "")
                  + f") in {out['seconds']}s"
                  + (f"; {out['meet_constraints']} meet the constraints {exp.constraints}" if exp.constraints else "")
                  + (f" ({out['not_attacked']} violated one after unlearning and were not attacked)"
                     if out.get("not_attacked") else "")
                  + f"\n  results: {out['results']}\n"
                  f"  MLflow:  {sys.executable} -m mlflow ui --backend-store-uri {out['mlflow_uri']} --host 127.0.0.1 "
                  "--port 5000 (any free port), then http://127.0.0.1:5000"
                  + (f"\n  Optuna:  {out['optuna_storage']} (study {out['name']})" if out["optuna_storage"] else "")
                  + (f"\n  {out['mlflow_pending']} trial(s) not yet in MLflow (server unreachable): rerun with "
                     "--resume once it is back" if out["mlflow_pending"] else "")
                  + (f"\n  report:  {out['report']}" if out.get("report") else "")
                  + (f"\n  smoke:   {out['smoke']}" if out.get("smoke") else "")
                  + (f"\n  {out['report_note']}" if out.get("report_note") else ""))
        if out.get("interrupted"):
            out["resume"] = resume_command(args, out["name"])
            out["signal"] = int(out["signal"])
            if not args.json:
                print(f"  interrupted: {out['interrupted']} trial(s) stopped before finishing (status interrupted); "
                      f"continue the sweep with:\n{out['resume']}")
        return out

    out = run(job, args.json)
    if out and out.get("interrupted"):
        stop.exit_with(128 + out["signal"])  # 130 after Ctrl-C, 143 after SIGTERM, as a shell reports them


def resume_command(args, name: str) -> str:
    """The exact command that continues this sweep."""
    import shlex

    parts = [sys.executable, "-m", "raysweep.tune", args.experiment, "--storage", args.storage, "--name", name]
    parts += ["--smoke"] if args.smoke else []
    parts += ["--mlflow-uri", args.mlflow_uri] if args.mlflow_uri else []
    parts += ["--address", args.address] if args.address else []
    for field, flag in EXPERIMENT_FLAGS.items():
        parts += [flag, getattr(args, field)] if getattr(args, field) is not None else []
    return " ".join(shlex.quote(str(p)) for p in [*parts, "--resume"])


if __name__ == "__main__":
    main()
