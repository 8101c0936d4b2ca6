"""The sweep's results table: one row per trial (status, error, every config field under its dotted name, every
final metric, checkpoint URIs, MLflow run), written as Parquet through ``pyarrow.fs``."""
from __future__ import annotations

import json
import math
import os
from typing import Any

from . import store
from .config import RaysweepError, flatten
from .experiment import Experiment
from .experiment import meets
from .metrics import CURVES, SCALARS
from .restarts import cause


def trial_id_of(result) -> str:
    """A Tune result's trial id: reported by the trial, else from its directory (trainable_<id>_<n>_<params>)."""
    parts = os.path.basename(result.path or "").split("_")
    return (result.metrics or {}).get("trial_id") or (parts[1] if len(parts) > 1 else "?")


INTERRUPTED = "interrupted: the sweep was stopped before this trial finished; --resume continues it"


def result_rows(grid, exp: Experiment, smoke: bool, unfinished: frozenset[str] = frozenset()) -> list[dict]:
    """One row per trial; ``unfinished`` holds the ids of trials an interrupt stopped (status ``interrupted``)."""
    rows = []
    for r in grid:
        m = dict(r.metrics or {})
        row: dict[str, Any] = {"trial_id": trial_id_of(r), "experiment": exp.name}
        if r.error is not None:
            row.update(status="error", error=cause(r.error))
        elif row["trial_id"] in unfinished:
            row.update(status="interrupted", error=INTERRUPTED)
        elif m.get("phase") != "final" and "status" in m:  # stopped early by the scheduler (ASHA)
            row.update(status="pruned", error="")
        else:
            row.update(status=m.get("status", "error"), error="" if "status" in m else "no final result")
        try:
            row.update(flatten(exp.trial_config(r.config or {}, smoke).to_dict()))
        except RaysweepError as e:
            row.update({k: v for k, v in (r.config or {}).items()})
            row["error"] = row["error"] or str(e)
        for k in SCALARS:
            row[k] = m.get(k, math.nan) if r.error is None else math.nan
        if exp.constraints:
            row["constraints_met"] = row["status"] in ("ok", "diverged") and meets(row, exp.constraints)
        row["time_total_s"] = m.get("time_total_s", math.nan)
        if row["status"] == "pruned":  # what it had shown when stopped: a lower bound of its attack success
            row["attack_step"] = m.get("attack_step", -1)
            row["ar_dimra_max"] = _max_seen(r, "ar_attacked")
        for k, v in m.items():
            if k.split("/")[0] in CURVES and "/" in k and r.error is None:
                row[k] = v
        row["attack_skipped_because"] = m.get("attack_skipped_because", "")
        row["unlearned_uri"] = m.get("unlearned_uri", "")
        row["attack_uris"] = m.get("attack_uris", "{}")
        row["node_id"], row["host"] = m.get("node_id", ""), m.get("host", "")  # where it finished
        row["mlflow_run_id"] = m.get("mlflow_run_id", "")
        row["mlflow_status"] = m.get("mlflow_status", "pending")
        row["attempts"] = m.get("attempts", 0)
        row["world_size"] = m.get("world_size", 0)  # Train workers the trial's loops ran data-parallel on
        rows.append(row)
    return rows


def _max_seen(result, metric: str) -> float:
    try:
        df = result.metrics_dataframe
        return float(df[metric].max()) if df is not None and metric in df else math.nan
    except (OSError, ValueError, KeyError):
        return math.nan


def write_table(rows: list[dict], uri: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)}
    arrays = {}
    for k, values in columns.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in values) and any(
                isinstance(v, float) for v in values):
            values = [None if v is None else float(v) for v in values]
        try:
            arrays[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[k] = pa.array([None if v is None else json.dumps(v) if not isinstance(v, str) else v
                                  for v in values])
    fs, path = store.resolve(uri)
    fs.create_dir(os.path.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        pq.write_table(pa.table(arrays), f)
