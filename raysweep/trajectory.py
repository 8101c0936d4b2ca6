"""Unlearning trajectories shared between trials. Trials whose configs differ only in ``unlearn.steps`` walk the
same deterministic trajectory (same seed, batches, noise and Adam moments; no schedule depends on the step count),
so a trial continues from the longest saved prefix of its own trajectory instead of starting over: a steps sweep
pays for its longest trial, not for the sum.

Saved states are content-addressed by (the unlearning config without ``steps``, step) in
``<root>/trajectories/<hash>/step-<k>.parquet``, at ``checkpoint_every`` × 1, 2, 4, 8 … steps (disk grows with
the log of the longest run, not with its length). A loop state holds weights, Adam moments, RNG, the loss curve
and the probe reads, so a continued trial ends bit-identical to one run from scratch (tests/test_resume.py)."""
from __future__ import annotations

import math

from . import store
from .config import content_hash
from .loop import LoopState


def probe_every(steps: int, probes: int) -> int:
    """A trial of ``steps`` steps reads its probe every 2^k steps, the largest power of two giving at least
    ``probes`` reads (fewer than 2 × ``probes``). The grids nest: a longer trial's grid is a shorter one's, thinned,
    so a run that reads on the grid of the step it has reached holds every read any trial continuing it needs."""
    return 2 ** int(math.log2(max(1, steps // probes)))


def key(unlearned_key: dict) -> dict:
    """What determines the trajectory: the unlearned model's key without the step count."""
    return {**unlearned_key, "unlearn": {k: v for k, v in unlearned_key["unlearn"].items() if k != "steps"}}


def shared_steps(checkpoint_every: int, steps: int) -> list[int]:
    """The steps below ``steps`` at which trajectory states are shared, longest first."""
    if checkpoint_every <= 0:
        return []
    out, k = [], checkpoint_every
    while k < steps:
        out.append(k)
        k *= 2
    return out[::-1]


def uri(root: str, traj_key: dict, step: int) -> str:
    return store.join(root, "trajectories", content_hash(traj_key), f"step-{step:07d}.parquet")


def save(root: str, traj_key: dict, state: LoopState, checkpoint_every: int) -> None:
    if checkpoint_every > 0 and state.step % checkpoint_every == 0 and _power_of_two(state.step // checkpoint_every):
        target = uri(root, traj_key, state.step)
        if not store.exists(target):
            store.save_loop(target, state, traj_key)


def longest_prefix(root: str, traj_key: dict, checkpoint_every: int, steps: int) -> LoopState | None:
    """The longest saved prefix (< ``steps``) of this trajectory, if any."""
    for k in shared_steps(checkpoint_every, steps):
        state = store.load_loop(uri(root, traj_key, k), traj_key)
        if state is not None:
            return state
    return None


def _power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
