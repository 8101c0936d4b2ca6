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

from raysweep.config import MIN_PROBE_READS, Config, Judge
from raysweep.datasets import load_dataset
from raysweep.judge import train_judge
from raysweep.resolve import resolve

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset(Config().data)


@pytest.fixture(scope="session")
def judge(digits):
    """A real judge, trained briefly on the real digits train split."""
    return train_judge(digits, Judge(epochs=15), "small")


def tiny_config(**overrides) -> Config:
    """Seconds-on-CPU settings for end-to-end tests."""
    from raysweep.config import apply_overrides

    cfg = Config()
    apply_overrides(cfg, {"model.preset": "tiny", "pretrain.steps": 40, "judge.epochs": 3, "eval.steps": 4,
                          "eval.n_forget": 20, "eval.n_per_class": 10, "unlearn.probes": MIN_PROBE_READS, **overrides})
    return resolve(cfg).cfg


def run_cli(*args, timeout=300, env=None, cwd=None):
    """Run ``python -m ...`` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def run_clis(commands: dict, timeout=300, env=None) -> dict:
    """Several ``python -m ...`` commands at once, each as a user would run it; key -> CompletedProcess. A command
    that fails on its input spends its time importing, so two cores run these about twice as fast together."""
    procs = {k: start_cli(*args, env=env) for k, args in commands.items()}
    done = {}
    for k, p in procs.items():
        out, err = finish(p, timeout)
        done[k] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    return done


def in_process(main, argv: list[str], capsys) -> subprocess.CompletedProcess:
    """A command's ``main(argv)`` run in this process, for inputs it must refuse: its exit code and output, as
    ``run_cli`` gives them, without paying a fresh interpreter's imports (what import or exit print is checked
    through a real process once per command)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return subprocess.CompletedProcess(argv, e.value.code, *capsys.readouterr())


def wait_for(predicate, proc, timeout=600):
    """Poll until ``predicate()``; the process exiting first, or ``timeout`` seconds, fails the test with what it
    printed. 600 s by default: 300 s timed out the killed-driver survival test beside other work (the whole test took
    214 s alone here). A longer limit only makes a failure take longer to report, never a pass out of a wrong result."""
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {output(proc)[1][-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out; it printed: {output(proc)[1][-3000:]}")
        time.sleep(0.1)


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    """Bad input: a non-zero exit and one stderr line that names the problem."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and all(n in lines[0] for n in needles), res.stderr[-2000:]


_STARTED: list[subprocess.Popen] = []


def _as_in_a_terminal():
    """Ctrl-C as a terminal delivers it: a runner that starts tests in the background hands its children SIGINT
    ignored (POSIX shells do that without job control), and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args, env=None, cwd=None) -> subprocess.Popen:
    """``python -m ...`` in the background, in its own process group (so a test can kill all of it). Its output
    goes to files, not pipes: a sweep prints Tune's status tables for minutes, and a full pipe nobody reads
    would stall the driver. Whatever is still running when the test ends is killed (``_no_leftovers``)."""
    out, err = (tempfile.TemporaryFile("w+") for _ in range(2))
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=err, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)
    proc.logs = (out, err)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A test that fails while its command still runs must not leave it running: a stray training process at
    normal priority starves every later test's Ray workers (Ray starts them at nice 15)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def output(proc: subprocess.Popen) -> tuple[str, str]:
    """What a ``start_cli`` process printed so far (stdout, stderr)."""
    texts = []
    for f in proc.logs:
        f.seek(0)
        texts.append(f.read())
    return texts[0], texts[1]


def finish(proc: subprocess.Popen, timeout=600) -> tuple[str, str]:
    """Wait for a ``start_cli`` process; (stdout, stderr). One still running at ``timeout`` fails the test with what
    it printed (the one place that says where it was)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout} s; it printed: {output(proc)[1][-3000:]}") from None
    return output(proc)


ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], health_url: str, timeout: float = 90, env: dict | None = None) -> subprocess.Popen:
    """Start a server in its own process group and wait until ``health_url`` answers."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})})
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(health_url, timeout=2)
            return proc
        except OSError as e:
            if getattr(e, "code", None):  # an HTTP error status: the server is up
                return proc
            if time.time() > deadline or proc.poll() is not None:
                stop(proc)
                raise RuntimeError(f"{cmd[:3]} did not start")
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session, and its children, by PID."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_mlflow(db: Path, port: int) -> subprocess.Popen:
    """A real MLflow tracking server on 127.0.0.1 with a SQLite store. Without MLflow's job runner (raysweep runs
    no MLflow jobs): it starts eight more processes, ~20 s of CPU on every start."""
    return start_server([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                         "--artifacts-destination", str(db.parent / "artifacts"), "--host", "127.0.0.1",
                         "--port", str(port), "--workers", "1"], f"http://127.0.0.1:{port}/health",
                        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite store, stopped by PID at the end."""
    port = _free_port()
    proc = start_mlflow(tmp_path_factory.mktemp("mlflow") / "mlflow-server.db", port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def kill_ray_under(tmpdir: str) -> None:
    """SIGKILL what is left of a Ray runtime whose session lives under ``tmpdir`` (by PID, nothing else)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        # Ray's agents rename themselves; their open session logs still say whose they are
        if tmpdir in cmdline or f"RAY_TMPDIR={tmpdir}" in environ or any(f.startswith(tmpdir) for f in files):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def ray_env():
    """Ray's session files in this test's own directory (short: Unix socket paths are limited to 107 bytes);
    whatever of that Ray runtime is still alive at the end is killed by PID."""
    d = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    yield {"RAY_TMPDIR": d}
    kill_ray_under(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory):
    """What the trials of the tests' smoke sweeps share (tiny judge, base, retrained model, utility reference), built
    once per session and copied into a sweep's storage (``storage_with``): the sweep finds it there and starts no
    task to build it (raysweep/shared.py). Every sweep on SMOKE's model, judge and evaluation settings has these
    keys; ``smoke_sweep`` builds its own, as the main job does."""
    from raysweep import shared
    from raysweep.experiment import load

    root = tmp_path_factory.mktemp("smoke-store") / "store"
    exp = load(str(ROOT / "tests" / "data" / "survival_sweep.py"))
    cfg = exp.trial_config({})
    for what in shared.shared(cfg, list(exp.space)):
        shared.make(what, cfg, str(root), "cpu", 2)
    return root


def storage_with(tmp_path: Path, smoke_store: Path) -> Path:
    """A sweep storage directory under ``tmp_path`` that holds the session's smoke store."""
    storage = tmp_path / "sweeps"
    shutil.copytree(smoke_store, storage / "store")
    return storage


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
