"""Every derived seed in one table. A run has a few user seeds (``unlearn.seed``, ``attack.seed``, ``eval.seed``,
``pretrain.seed``, ``judge.seed``); each random stream inside it draws from ``derive(user seed, name)``, so two
streams never share noise by accident and adding one never shifts another."""
from __future__ import annotations

OFFSETS = {
    # unlearning streams (from unlearn.seed)
    "retain": 0, "forget": 1, "replay": 2, "fisher": 3, "noise": 4, "esd": 5, "alternative": 6,
    "original_samples": 7919,  # samples of the original model a method trains on (SA replay, DiMUM generated)
    "retrain": 31337,  # retrain from scratch: its own training seed
    # the attack (from attack.seed)
    "aux_generated": 4242,
    # evaluation noise (from eval.seed)
    "stop_noise": 9001,  # the stop rule's checks: never the noise ar_mu is measured on
    # the base's utility reference (from pretrain.seed, never a trial's eval.seed: keys.reference_seeds)
    "reference": 104729,
}


def derive(seed: int, name: str) -> int:
    return seed + OFFSETS[name]
