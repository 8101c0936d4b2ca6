"""How long a command takes to answer --help, against how long importing its module (the whole stack) takes.

    python bench/cli_help.py [--repeat 3]

Prints JSON: per command, the best of N wall times of `python -m raysweep.<command> --help` and of
`python -c "import raysweep.<command>"` (what --help cost when the stack was imported before parsing), and
their ratio.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

COMMANDS = ("trial", "tune", "pretrain", "report")


def best(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    rows = {}
    for c in COMMANDS:
        help_s = best([sys.executable, "-m", f"raysweep.{c}", "--help"], a.repeat)
        import_s = best([sys.executable, "-c", f"import raysweep.{c}"], a.repeat)
        rows[c] = {"help_s": round(help_s, 3), "import_stack_s": round(import_s, 3),
                   "speedup": round(import_s / help_s, 1)}
    print(json.dumps({"bench": "cli_help", "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                      "repeat": a.repeat, "commands": rows}))


if __name__ == "__main__":
    main()
