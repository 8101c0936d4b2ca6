"""What the study scripts in ``experiments/`` share: a resumable log of finished trials, a pool that runs trials
two at a time on one thread each, flat rows for a CSV, and intervals printed the same way everywhere.

A study is a list of jobs; a job is one or more trials (config overrides) run in order in one process, so trials
that share an unlearned model (two attacks on it) find it in the store instead of computing it twice.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from . import stop
from .config import Config, apply_overrides, content_hash
from .metrics import CURVES

Job = dict[str, Any]  # {"key": str, "phase": str, "overrides": {...}}


class Log:
    """``trials.jsonl``: one line per finished trial, appended as it finishes; a rerun skips what is there.

    ``record`` is the study's committed record (``docs/<study>.jsonl``, written by :func:`publish`): its rows not yet
    in the log are taken in first, so a fresh clone, or a session whose ``runs/`` was lost, resumes where the committed
    study stopped instead of recomputing hours of trials.
    """

    def __init__(self, path: Path, record: Path | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if record is not None and record.exists():
            done = {r["key"] for r in self.rows()}
            new = [r for r in read_jsonl(record) if r["key"] not in done]
            for r in new:
                self.append(r)
            if new:
                print(f"study: {len(new)} finished trials taken from {record}", file=sys.stderr, flush=True)

    def rows(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []

    def done(self) -> set[str]:
        return {r["key"] for r in self.rows() if r.get("status") != "error"}

    def append(self, row: dict) -> None:
        line = (json.dumps(row) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # one write(2) with O_APPEND: two workers appending at once never interleave a line
            os.write(fd, line)
        finally:
            os.close(fd)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_key(phase: str, overrides: dict) -> str:
    return phase + ":" + json.dumps(overrides, sort_keys=True)


def run_control(cfg: Config, root: str) -> dict:
    """The attack of ``cfg`` on the untouched base (the control), with the base's utility reference."""
    from .bases import load_bases
    from .controls import control_curve, reference
    from .resolve import resolve

    start = time.perf_counter()
    target = resolve(cfg).target
    bases = load_bases(cfg, root)
    ref = reference(cfg, bases, target, root)
    curve = control_curve(cfg, bases, target, root)
    attacked = {int(k): v for k, v in curve.items() if int(k) > 0}
    return {"method": "base", "status": "ok", "ar_dimra": curve, "ar_mu": curve.get("0"),
            "ar_dimra_max": max(attacked.values()) if attacked else math.nan, "attack_lr": cfg.attack.lr, **ref,
            "seconds": time.perf_counter() - start}


def run_one(job: Job, root: str) -> dict:
    """One trial (or, for ``kind: control``, the base's control attack) in this process, as a row (loss curves
    left out); a failure is a row too."""
    from .trial import run_trial

    cfg = apply_overrides(Config(), dict(job["overrides"]))
    trial_dir = os.path.join(root, "trials", f"{job['phase']}-{content_hash(job['overrides'])}")
    try:
        if job.get("kind") == "control":
            res = run_control(cfg, root)
        else:
            res = run_trial(cfg, root, trial_dir, resume=True)
    except Exception as e:  # recorded as failed, with why; the study goes on
        res = {"status": "error", "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()[-2000:]}
    for k in ("unlearn_loss_curve", "unlearn_probe"):
        res.pop(k, None)
    return {"key": job["key"], "phase": job["phase"], "overrides": job["overrides"], **res}


def job(phase: str, overrides: dict, **extra) -> Job:
    return {"key": job_key(phase, overrides), "phase": phase, "overrides": overrides, **extra}


def _worker(jobs: list[Job], root: str, threads: int, log: Log) -> int:
    """Run a group in order; each row goes to the log as soon as its trial ends (a study stopped mid-group keeps
    it, and progress shows per trial)."""
    import torch

    torch.set_num_threads(threads)
    for job in jobs:
        row = run_one(job, root)
        log.append(row)
        print(f"study: {label(row)} -> {row.get('status')} ({row.get('seconds') or 0:.0f}s)"
              + (f": {row.get('error')}" if row.get("status") == "error" else ""), file=sys.stderr, flush=True)
    return len(jobs)


def run_jobs(groups: list[list[Job]], root: str, log: Log, workers: int = 2, threads: int = 1,
             after_each: Callable[[], None] | None = None) -> None:
    """Run every group of jobs not yet in ``log``; ``workers`` groups at a time, each on ``threads`` threads."""
    done = log.done()
    todo = [[j for j in g if j["key"] not in done] for g in groups]
    todo = [g for g in todo if g]
    if not todo:
        return
    print(f"study: {sum(len(g) for g in todo)} trials to run in {len(todo)} jobs, {workers} at a time",
          file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_worker, g, root, threads, log) for g in todo]
        for f in as_completed(futures):
            f.result()
            if after_each is not None:
                after_each()


def run_script(main: Callable[[], None], name: str) -> None:
    """A study script's entry point: Ctrl-C keeps what finished and says the same command resumes it (exit 130)."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"{name}: interrupted; finished trials are kept, the same command resumes it", file=sys.stderr)
        stop.exit_with(130)


def label(row: dict) -> str:
    """A short name for a row in progress lines."""
    o = row.get("overrides", {})
    parts = [row["phase"], str(o.get("unlearn.method", "base" if row["phase"] == "controls" else "?"))]
    parts += [f"{k.split('.')[-1]}={o[k]}" for k in ("pretrain.seed", "unlearn.seed", "unlearn.steps", "attack.lr")
              if k in o]
    return " ".join(parts)


def flat(row: dict) -> dict:
    """A CSV row: scalars as they are, overrides as ``set.<key>``, curves as ``<curve>/<step>``."""
    out = {f"set.{k}": v if not isinstance(v, (list, tuple)) else ",".join(map(str, v))
           for k, v in row.get("overrides", {}).items()}
    for k, v in row.items():
        if k in CURVES and isinstance(v, dict):
            out.update({f"{k}/{s}": x for s, x in v.items()})
        elif not isinstance(v, (dict, list)):
            out[k] = v
    return out


LOCAL = ("traceback", "trial_dir", "base_uri", "unlearned_uri")  # this machine's paths and stacks: never published


def publish(rows: list[dict], path: Path) -> None:
    """The study's record beside its report: every row as JSON lines (``path`` with ``.jsonl``: lossless, what
    :class:`Log` resumes from) and as CSV (``path``: flat, for reading)."""
    record = "".join(json.dumps({k: v for k, v in r.items() if k not in LOCAL}) + "\n" for r in rows)
    flats = [flat(r) for r in rows]
    fields = sorted({k for r in flats for k in r if k not in LOCAL})
    table = io.StringIO()
    w = csv.DictWriter(table, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(flats)
    for target, text in ((path.with_suffix(".jsonl"), record), (path, table.getvalue())):
        tmp = target.with_name(target.name + ".tmp")  # replaced whole: a study killed mid-write never truncates it
        tmp.write_text(text, newline="")
        os.replace(tmp, target)


def ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """``0.123 [0.100, 0.150]``; the bounds are left out when they are not defined."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
