"""The study pool: every trial's row reaches the log from its worker as it ends, failures included."""
import json

from raysweep.study import Log, job, run_jobs


def test_rows_are_logged_per_trial_from_two_workers_and_failures_are_rows(tmp_path):
    log = Log(tmp_path / "trials.jsonl")
    groups = [[job("p", {"unlearn.method": f"nope{g}{i}"}) for i in range(2)] for g in range(2)]  # each fails fast
    seen = []
    run_jobs(groups, str(tmp_path / "store"), log, workers=2, after_each=lambda: seen.append(len(log.rows())))
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # whole lines: two workers never interleaved one
    assert sorted(r["overrides"]["unlearn.method"] for r in rows) == ["nope00", "nope01", "nope10", "nope11"]
    assert all(r["status"] == "error" and "unknown method" in r["error"] for r in rows)
    assert len(seen) == 2 and seen[-1] == 4 and seen[0] >= 2  # a group's rows are in before it is reported done
