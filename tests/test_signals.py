"""Ctrl-C, SIGTERM and errors of the machine end a command with one line and the shell's codes (130, 143, 1),
never a traceback."""
import os
import signal

import pytest

from conftest import finish, start_cli, storage_with, wait_for


@pytest.mark.parametrize("sig, code, line", [(signal.SIGINT, 130, "error: interrupted (SIGINT)"),
                                             (signal.SIGTERM, 143, "error: terminated (SIGTERM)")])
def test_a_stopped_trial_command_says_so_in_one_line(tmp_path, sig, code, line):
    proc = start_cli("raysweep.trial", "--out", str(tmp_path), "--set", "model.preset=tiny",
                     "--set", "pretrain.steps=100000", "--json")  # pretraining long enough to be stopped
    wait_for(lambda: any(tmp_path.glob("trials/*/attempts.json")), proc, timeout=120)
    proc.send_signal(sig)
    out, err = finish(proc, timeout=60)
    assert proc.returncode == code and err.strip().splitlines() == [line], err[-2000:]
    assert out == ""


def test_ctrl_c_through_an_extensions_python_still_exits_130(tmp_path):
    """A Ctrl-C raised while an extension runs Python through ``PyRun_*`` (here: ctypes) makes CPython end a
    ``python -m`` process by SIGINT (-2) however the command handled it; the command's 130 must hold all the same.
    The race the trial test above meets now and then, made certain."""
    import subprocess
    import sys

    from conftest import ROOT

    (tmp_path / "nested.py").write_text(
        "import ctypes\n"
        "from raysweep import cli\n"
        "run = ctypes.pythonapi.PyRun_String\n"
        "run.restype, run.argtypes = ctypes.py_object, [ctypes.c_char_p, ctypes.c_int, ctypes.py_object,"
        " ctypes.py_object]\n"
        "cli.run(lambda: run(b'raise KeyboardInterrupt', 257, {}, {}), as_json=True)\n")
    res = subprocess.run([sys.executable, "-m", "nested"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (res.returncode, res.stdout, res.stderr) == (130, "", "error: interrupted (SIGINT)\n")


def test_an_error_of_the_machine_is_one_line_and_exit_1(capsys):
    from raysweep import cli

    def disk_full():
        raise OSError(28, "No space left on device")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        cli.run(disk_full, as_json=True)
    assert e.value.code == 1 and capsys.readouterr() == ("", "error: [Errno 28] No space left on device\n")
    assert signal.getsignal(signal.SIGTERM) is before  # run in-process, it leaves the caller's handler


def test_sigterm_stops_a_sweep_like_ctrl_c_and_says_how_to_resume(tmp_path, ray_env, smoke_store):
    """What a cluster scheduler or `kill` sends: the same graceful stop as Ctrl-C (tested with a resume in
    test_survival.py), reported with the shell's 143."""
    import json

    import pyarrow.parquet as pq

    from conftest import ROOT

    storage = storage_with(tmp_path, smoke_store)
    sweep = storage / "term"
    proc = start_cli("raysweep.tune", str(ROOT / "tests" / "data" / "survival_sweep.py"), "--smoke",
                     "--storage", str(storage), "--name", "term", "--num-samples", "1", "--json",
                     env=ray_env)
    wait_for(lambda: any(sweep.glob("trials/*/config.json")), proc, timeout=300)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, timeout=300)
    assert proc.returncode == 143, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["signal"] == 15 and summary["interrupted"] == 1
    assert summary["resume"].endswith("--name term --smoke --resume")
    (row,) = pq.read_table(sweep / "results.parquet").to_pylist()
    assert row["status"] == "interrupted" and "--resume" in row["error"]


def test_a_signal_landing_inside_an_extension_import_is_still_one_line(capsys):
    """SIGTERM during pandas' import surfaces as a SystemError whose context is the signal (seen in a suite run)."""
    from raysweep import cli, stop

    def importing():
        try:
            raise stop.Terminated()
        except stop.Terminated:
            raise SystemError("<class 'x'> returned a result with an exception set")

    with pytest.raises(SystemExit) as e:
        cli.run(importing, as_json=True)
    assert e.value.code == 143 and capsys.readouterr() == ("", "error: terminated (SIGTERM)\n")

    def broken():
        raise SystemError("a real one")

    with pytest.raises(SystemError):  # no signal behind it: not turned into a stop
        cli.run(broken, as_json=True)


def test_a_sigterm_landing_in_a_librarys_except_exception_still_stops_the_command(capsys):
    """Libraries catch Exception around optional work (a fallback, a logging handler): SIGTERM arriving there
    must end the command as anywhere else, not be swallowed while the command runs on."""
    from raysweep import cli

    def optional_work_then_more():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode, inside the try
            for _ in range(1000):
                pass
        except Exception:  # what a library's fallback does
            pass
        return {"ran on": True}

    with pytest.raises(SystemExit) as e:
        cli.run(optional_work_then_more, as_json=True)
    assert e.value.code == 143 and capsys.readouterr() == ("", "error: terminated (SIGTERM)\n")


def test_a_stop_swallowed_by_a_finalizer_still_ends_the_command_at_the_next_step(capsys, monkeypatch):
    """A signal whose exception is raised inside a ``__del__`` is printed as ignored and dropped by Python; the
    finetune loop still stops at its next step, and the command ends with its one line, no traceback."""
    import sys

    import torch

    from raysweep import cli
    from raysweep.loop import optimize

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # Python's printing hook, not pytest's

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode: inside this __del__
            for _ in range(1000):
                pass

    steps = []

    def train():
        Finalized()  # collected at once: the stop lands in its finalizer and is swallowed there
        model = torch.nn.Linear(2, 1)
        stream = iter(lambda: (torch.ones(4, 2), torch.zeros(4)), None)
        optimize(model, lambda m, b, step: steps.append(step) or m(b["x"][0]).square().mean(), {"x": stream}, 5,
                 lr=1e-3)
        return {"ran on": True}

    with pytest.raises(SystemExit) as e:
        cli.run(train, as_json=True)
    assert e.value.code == 143 and capsys.readouterr() == ("", "error: terminated (SIGTERM)\n")
    assert steps == []  # stopped before the first step, not after the fifth
    assert cli.run(lambda: {"after": 1}, as_json=False) == {"after": 1}  # the stop ended with its command
