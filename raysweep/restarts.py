"""Why a trial was restarted. Tune retries a failed attempt (``--max-failures``) and the retried trial may end ok, so
its row alone would not show that an attempt failed. The sweep's driver records each failure Tune recovers from in
the trial's directory (``restarts.json``: when, and the line of the error that names it), and the row carries the
last one (``restarted_because``)."""
from __future__ import annotations

import os
import time

from . import store

FILE = "restarts.json"


def cause(text: str) -> str:
    """The line of an error's text that names it: its last line mentioning an error, else its last line."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")[:1000]


def recorder(sweep_dir: str):
    """A Tune callback writing ``trials/<trial id>/restarts.json`` each time a trial is retried after a failure."""
    from ray.tune import Callback

    class Restarts(Callback):
        def on_trial_recover(self, iteration, trials, trial, **info):
            path = trial.error_file  # Tune has just appended "Failure # N (occurred at ...)" and the error to it
            text = open(path).read().split("Failure # ")[-1].split("\n", 1)[-1] if path and os.path.exists(path) else ""
            uri = store.join(sweep_dir, "trials", trial.trial_id, FILE)
            seen = store.read_json(uri) if store.exists(uri) else []
            store.write_json(uri, [*seen, {"at": time.time(), "error": cause(text) or "unknown (Tune kept no error)"}])

    return Restarts()


def last_cause(sweep_dir: str, trial_id: str) -> str:
    """Why the trial's last restart happened ("" when it never was)."""
    uri = store.join(sweep_dir, "trials", trial_id, FILE)
    return store.read_json(uri)[-1]["error"] if store.exists(uri) else ""
