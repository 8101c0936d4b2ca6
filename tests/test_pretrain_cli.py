import json

import pytest

from conftest import assert_one_line_error, in_process, run_cli

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


BAD = {  # what the one error line must name -> the arguments
    "unknown dataset": ["--dataset", "mnist"],
    "forget_class=10": ["--set", "data.forget_class=10"],
    "/nonexistent/cifar": ["--dataset", "cifar10", "--root", "/nonexistent/cifar"],
    "pretrain.steps must be positive": ["--steps", "0"],
    "unknown config key": ["--set", "pretrain.stepz=3"],
    "pretrain.steps": ["--set", "pretrain.steps=many"],
    "inception": ["--set", "eval.fid_extractor=inception", "--set", "model.preset=tiny", "--set", "pretrain.steps=2",
                  "--set", "judge.epochs=1", "--set", "eval.steps=1", "--set", "eval.n_per_class=2"],
}


@pytest.mark.parametrize("needle", list(BAD))
def test_bad_input_is_one_line_and_nonzero(needle, tmp_path, capsys):
    from raysweep import pretrain

    assert_one_line_error(in_process(pretrain.main, ["--out", str(tmp_path), *BAD[needle]], capsys), needle)
