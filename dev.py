#!/usr/bin/env python3
"""Set up and run raysweep with nothing but python3.

    python3 dev.py run [--smoke]   # the main job: the steps sweep on the embedded default (digits, CPU)
    python3 dev.py test     # the test suite
    python3 dev.py exec -- CMD ...   # any command inside the project's virtual environment

The first call creates .venv/ and installs the project into it (a few minutes); later calls reuse it and
reinstall only when pyproject.toml changed.
"""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("RAYSWEEP_VENV", ROOT / ".venv"))
PY = VENV / "bin" / "python"
MAIN_JOB = ["-m", "raysweep.tune", "experiments/steps_sweep.py", "--report"]


def ensure_env() -> None:
    stamp = VENV / ".raysweep-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"dev.py: creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print("dev.py: installing raysweep and its pinned dependencies (first time: a few minutes)", file=sys.stderr)
    # torch first and alone: pip then takes the pinned build without resolving the rest against it
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "torch==2.14.1", "torchvision==0.29.1"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    stamp.write_text(want)


def ensure_chromium() -> None:
    """The report test opens report.html in headless Chromium (Debian's package; no browser download)."""
    if shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("dev.py: the report test needs Chromium at /usr/bin/chromium: apt-get install chromium",
              file=sys.stderr)
        return
    print("dev.py: installing Debian's chromium for the browser test", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "exec"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        ensure_env()
    except subprocess.CalledProcessError as e:
        print(f"dev.py: setting up the environment failed: {e}", file=sys.stderr)
        return 1
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        args = [str(PY), *MAIN_JOB, *rest]
    elif cmd == "test":
        try:
            ensure_chromium()
        except subprocess.CalledProcessError as e:
            print(f"dev.py: installing chromium failed: {e}", file=sys.stderr)
            return 1
        args = [str(PY), "-m", "pytest", *rest]
    else:
        args = rest[1:] if rest[:1] == ["--"] else rest
        if not args:
            print("dev.py: exec needs a command", file=sys.stderr)
            return 2
        env_bin = str(VENV / "bin")
        os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    os.chdir(ROOT)
    return subprocess.call(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
