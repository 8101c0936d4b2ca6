import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from raysweep.config import Config, Judge
from raysweep.data import load_dataset
from raysweep.judge import train_judge

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset(Config().data)


@pytest.fixture(scope="session")
def judge(digits):
    """A real judge, trained briefly on the real digits train split."""
    return train_judge(digits, Judge(epochs=15))


def tiny_config(**overrides) -> Config:
    """Seconds-on-CPU settings for end-to-end tests."""
    from raysweep.config import apply_overrides

    cfg = Config()
    apply_overrides(cfg, {"model.preset": "tiny", "pretrain.steps": 40, "judge.epochs": 3, "eval.steps": 4,
                          "eval.n_forget": 20, "eval.n_per_class": 10, **overrides})
    return cfg.validate()


def run_cli(*args, timeout=300, env=None):
    """Run ``python -m ...`` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite store, stopped by PID at the end."""
    tmp = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{tmp}/mlflow-server.db", "--artifacts-destination", str(tmp / "artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError("mlflow server did not start")
            time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def ray_env():
    """Ray's session files in this test's own directory (short: Unix socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    yield {"RAY_TMPDIR": d}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory, mlflow_server):
    """One real smoke sweep of experiments/steps_sweep.py (local Ray, MLflow server), shared by tests."""
    storage = tmp_path_factory.mktemp("sweeps")
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    try:
        res = run_cli("raysweep.tune", str(ROOT / "experiments" / "steps_sweep.py"), "--smoke", "--storage",
                      str(storage), "--mlflow-uri", mlflow_server, "--num-samples", "3", "--name", "smoke", "--json",
                      timeout=600, env={"RAY_TMPDIR": ray_tmp})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return storage, json.loads(res.stdout.strip().splitlines()[-1])
