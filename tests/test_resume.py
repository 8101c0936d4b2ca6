"""An interrupted trial resumed from its saved loop state ends where an uninterrupted one does."""
import pytest
import torch

from conftest import tiny_config
from raysweep import store
from raysweep.trial import run_trial

METRICS = ("ar_base", "ar_mu", "ar_cl", "retain_acc", "fid_judge", "convergence", "ar_dimra_final", "feasible",
           "recovery")


class Crash(Exception):
    pass


def _cfg():
    return tiny_config(**{"unlearn.method": "salun", "unlearn.steps": 30, "unlearn.checkpoint_every": 10,
                          "attack.steps": (0, 10, 20), "unlearn.batch_size": 16, "attack.batch_size": 16,
                          "pretrain.steps": 12, "attack.control": False, "eval.reference_seeds": 2})


@pytest.mark.parametrize("phase, crash_at", [("unlearn-state", 20), ("attack-state", 10)])
def test_interrupted_trial_resumes_to_the_same_result(tmp_path_factory, monkeypatch, phase, crash_at):
    # separate stores: a finished unlearning phase is shared through the store, so it would not rerun
    full = run_trial(_cfg(), str(tmp_path_factory.mktemp("store-full")), str(tmp_path_factory.mktemp("full")))
    root = str(tmp_path_factory.mktemp("store"))

    save_loop = store.save_loop

    def crashing(uri, state, config):  # the process dies right after this state reached storage
        save_loop(uri, state, config)
        if phase in uri and state.step == crash_at:
            raise Crash

    monkeypatch.setattr(store, "save_loop", crashing)
    trial_dir = str(tmp_path_factory.mktemp("resumed"))
    with pytest.raises(Crash):
        run_trial(_cfg(), root, trial_dir)
    assert not store.exists(store.join(trial_dir, "result.json"))
    monkeypatch.setattr(store, "save_loop", save_loop)

    seen = []
    resumed = run_trial(_cfg(), root, trial_dir, resume=True, report=lambda m, uri: seen.append(m.get("attack_step")))
    assert resumed["attempts"] == 2
    for k in METRICS:
        assert resumed[k] == pytest.approx(full[k], abs=1e-6), k
    assert resumed["ar_dimra"] == pytest.approx(full["ar_dimra"], abs=1e-6)
    assert resumed["unlearn_loss_curve"] == pytest.approx(full["unlearn_loss_curve"], abs=1e-6)
    assert resumed["unlearn_probe"] == pytest.approx(full["unlearn_probe"], abs=1e-6)
    assert resumed["retain_acc_curve"] == pytest.approx(full["retain_acc_curve"], abs=1e-6)
    # the attack after a crash at its step 10 reports only what was left to do
    assert seen == ([None, 0, 10, 20] if phase == "unlearn-state" else [None, 20])
    # a finished trial resumed again is not rerun
    assert run_trial(_cfg(), root, trial_dir, resume=True)["attempts"] == 2


def test_a_damaged_saved_state_is_reported_not_used(tmp_path_factory, monkeypatch):
    root = str(tmp_path_factory.mktemp("store-damaged"))
    save_loop = store.save_loop

    def crashing(uri, state, config):
        save_loop(uri, state, config)
        raise Crash

    monkeypatch.setattr(store, "save_loop", crashing)
    trial_dir = tmp_path_factory.mktemp("damaged")
    with pytest.raises(Crash):
        run_trial(_cfg(), root, str(trial_dir))
    monkeypatch.setattr(store, "save_loop", save_loop)
    state = trial_dir / "unlearn-state.parquet"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the tensors
    state.write_bytes(bytes(data))
    with pytest.raises(store.CorruptCheckpoint, match="unlearn-state.parquet"):
        run_trial(_cfg(), root, str(trial_dir), resume=True)


def test_a_finished_trial_in_a_moved_storage_points_at_the_copy(tmp_path):
    old = tmp_path / "runs"
    trial_dir = old / "sweep" / "trials" / "t1"
    store.write_json(str(trial_dir / "config.json"), _cfg().to_dict())
    store.write_json(str(trial_dir / "result.json"), {
        "trial_dir": str(trial_dir), "unlearned_uri": str(old / "store" / "unlearned" / "u.parquet"),
        "attack_uris": {"10": str(trial_dir / "attack-000010.parquet")}, "elsewhere": "s3://b/x", "attempts": 1})
    new = tmp_path / "copied" / "runs"
    new.parent.mkdir()
    old.rename(new)
    moved_dir = str(new / "sweep" / "trials" / "t1")
    res = run_trial(_cfg(), str(new / "store"), moved_dir, resume=True)
    assert res == {"trial_dir": moved_dir, "unlearned_uri": str(new / "store" / "unlearned" / "u.parquet"),
                   "attack_uris": {"10": f"{moved_dir}/attack-000010.parquet"}, "elsewhere": "s3://b/x",
                   "attempts": 1}
    assert store.read_json(f"{moved_dir}/result.json") == res and not old.exists()


def test_a_trial_continued_from_a_shared_trajectory_ends_bit_identical(tmp_path_factory):
    """Trials that differ only in unlearn.steps share the trajectory: each continues from the other's saved prefix
    (a shorter from a longer and a longer from a shorter; their probe grids differ) and ends exactly where it would
    from scratch."""
    def cfg(steps):
        return tiny_config(**{"unlearn.method": "salun", "unlearn.steps": steps, "unlearn.checkpoint_every": 10,
                              "unlearn.probes": 8, "attack.steps": (0, 10), "unlearn.batch_size": 16,
                              "attack.batch_size": 16, "pretrain.steps": 12, "attack.control": False,
                              "eval.reference_seeds": 2})

    def run(steps, root):
        return run_trial(cfg(steps), root, str(tmp_path_factory.mktemp(f"t{steps}")))

    a, b = str(tmp_path_factory.mktemp("a")), str(tmp_path_factory.mktemp("b"))
    long_alone = run(45, a)  # saves its trajectory at steps 10, 20 and 40
    short_continued = run(25, a)  # continues from 20
    short_alone = run(25, b)  # saves 10 and 20
    long_continued = run(45, b)  # continues from 20
    assert long_alone["unlearn_shared_from"] is None and short_alone["unlearn_shared_from"] is None
    assert short_continued["unlearn_shared_from"] == 20 and long_continued["unlearn_shared_from"] == 20
    for continued, alone, reads in ((short_continued, short_alone, 13), (long_continued, long_alone, 12)):
        for k in (*METRICS, "unlearn_steps_run", "convergence", "convergence_floor"):
            assert continued[k] == alone[k], k  # exactly, not approximately
        assert continued["unlearn_loss_curve"] == alone["unlearn_loss_curve"]
        assert continued["unlearn_probe"] == alone["unlearn_probe"] and len(alone["unlearn_probe"]) == reads
        x, y = store.load_state(continued["unlearned_uri"])[0], store.load_state(alone["unlearned_uri"])[0]
        assert all(torch.equal(x[k], y[k]) for k in x)
