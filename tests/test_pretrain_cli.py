import json

import pytest

from conftest import run_cli

TINY = ["--set", "model.preset=tiny", "--set", "pretrain.steps=30", "--set", "judge.epochs=3",
        "--set", "eval.steps=4", "--set", "eval.n_per_class=8"]


def test_tiny_pretraining_end_to_end_and_cache(tmp_path):
    out = str(tmp_path / "store")
    first = run_cli("raysweep.pretrain", "--dataset", "digits", "--out", out, "--json", *TINY)
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout.strip().splitlines()[-1])
    for key in ("judge_test_acc", "ar_per_class", "ar_mean", "fid_judge", "n_samples_per_class", "sampler",
                "sampling_steps", "guidance_scale", "seconds"):
        assert key in a
    assert len(a["ar_per_class"]) == 10 and a["n_samples_per_class"] == 8 and not a["base_cached"]
    second = run_cli("raysweep.pretrain", "--dataset", "digits", "--out", out, "--json", *TINY)
    b = json.loads(second.stdout.strip().splitlines()[-1])
    assert b["base_cached"] and b["base_uri"] == a["base_uri"]
    assert (b["ar_per_class"], b["fid_judge"], b["judge_test_acc"]) == (a["ar_per_class"], a["fid_judge"],
                                                                        a["judge_test_acc"])


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "mnist"], "unknown dataset"),
    (["--set", "data.forget_class=10"], "forget_class=10"),
    (["--dataset", "cifar10", "--root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--steps", "0"], "pretrain.steps must be positive"),
    (["--set", "pretrain.stepz=3"], "unknown config key"),
    (["--set", "pretrain.steps=many"], "pretrain.steps"),
    (["--set", "eval.fid_extractor=inception", "--set", "model.preset=tiny", "--set", "pretrain.steps=2",
      "--set", "judge.epochs=1", "--set", "eval.steps=1", "--set", "eval.n_per_class=2"], "inception"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, needle):
    res = run_cli("raysweep.pretrain", "--out", str(tmp_path), *args)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr
