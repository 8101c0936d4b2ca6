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


def test_a_fresh_log_resumes_from_the_published_record_without_local_paths(tmp_path):
    from raysweep.study import publish

    rows = [{"key": "p:1", "phase": "p", "status": "ok", "overrides": {"unlearn.steps": 1}, "ar_mu": 0.1,
             "ar_dimra": {"0": 0.1, "250": 0.5}, "trial_dir": "/here/t1"},
            {"key": "p:2", "phase": "p", "status": "error", "overrides": {"unlearn.steps": 2}, "error": "boom",
             "traceback": "Traceback ..."}]
    (tmp_path / "docs").mkdir()
    publish(rows, tmp_path / "docs" / "study.csv")
    record = tmp_path / "docs" / "study.jsonl"
    assert (tmp_path / "docs" / "study.csv").read_text().startswith("ar_dimra/0,ar_dimra/250,ar_mu,error,key")
    log = Log(tmp_path / "runs" / "trials.jsonl", record)  # runs/ lost: a fresh clone
    assert log.rows() == [{k: v for k, v in r.items() if k not in ("trial_dir", "traceback")} for r in rows]
    assert log.done() == {"p:1"}  # the failed trial is run again
    log.append({"key": "p:2", "phase": "p", "status": "ok", "overrides": {"unlearn.steps": 2}})
    again = Log(tmp_path / "runs" / "trials.jsonl", record)  # what the log holds is never taken in twice
    assert [r["key"] for r in again.rows()] == ["p:1", "p:2", "p:2"] and again.done() == {"p:1", "p:2"}
