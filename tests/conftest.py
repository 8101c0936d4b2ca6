import os
import subprocess
import sys

import pytest
import torch

from raysweep.config import Config, Judge
from raysweep.data import load_dataset
from raysweep.judge import train_judge

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return load_dataset(Config().data)


@pytest.fixture(scope="session")
def judge(digits):
    """A real judge, trained briefly on the real digits train split."""
    return train_judge(digits, Judge(epochs=15))


def tiny_config(**overrides) -> Config:
    """Seconds-on-CPU settings for end-to-end tests."""
    from raysweep.config import apply_overrides

    cfg = Config()
    apply_overrides(cfg, {"model.preset": "tiny", "pretrain.steps": 40, "judge.epochs": 3, "eval.steps": 4,
                          "eval.n_forget": 20, "eval.n_per_class": 10, **overrides})
    return cfg.validate()


def run_cli(*args, timeout=300, env=None):
    """Run ``python -m ...`` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
