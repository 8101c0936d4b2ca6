"""What a sweep builds before its trials is exactly what every trial shares: an artefact is built only when no
swept key enters its cache key, and then it is the file each trial would have built."""
import dataclasses

import pytest

from raysweep import shared
from raysweep.config import Config, ConfigError, content_hash
from raysweep.keys import control_key, judge_key, model_key, reference_key, retrain_key, retrain_seed, utility_key
from raysweep.resolve import resolve


def _keys(cfg: Config) -> dict[str, str]:
    target = resolve(cfg).target
    return {"judge": content_hash(judge_key(cfg)), "base": content_hash(model_key(cfg)),
            "retrain": content_hash(retrain_key(cfg, target, retrain_seed(cfg, 0))),
            "reference": content_hash(reference_key(cfg, target)), "control": content_hash(control_key(cfg, target)),
            **{f"utility:{m}": content_hash(utility_key(cfg, target, m)) for m in ("base", "retrain")}}


def _other(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if not isinstance(value, float) or value < 0.5 else value / 2
    if isinstance(value, tuple):
        return value[:-1] or (1,)
    return "3" if value != "3" else "4"


def _leaves(cfg: Config):
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            yield f"{section.name}.{f.name}"


def test_a_key_left_out_of_an_artefacts_sections_never_changes_its_cache_key():
    """Every config field is changed in turn: an artefact a sweep over that field would build once (shared() keeps
    it) must have the same key whatever the field's value, so no trial finds one built for another config."""
    base = Config()
    before = _keys(base)
    changed_something = set()
    for key in _leaves(base):
        cfg = Config()
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, _other(getattr(getattr(cfg, section), name)))
        try:
            after = _keys(cfg)
        except (ConfigError, ValueError, KeyError):
            continue  # that value is not a valid config: no sweep could run it
        for artefact in shared.shared(base, [key]):
            assert after[artefact] == before[artefact], f"{key} changes the {artefact}'s key but is not in its sections"
        changed_something |= {a for a in before if after[a] != before[a]}
    assert changed_something == set(before)  # every artefact's key does depend on some field


def test_the_main_jobs_sweep_shares_everything_and_a_class_sweep_only_base_and_judge():
    cfg = Config()
    everything = ["judge", "base", "retrain", "control", "utility:base", "utility:retrain", "reference"]
    assert shared.shared(cfg, ["unlearn.method", "unlearn.steps", "unlearn.stop_ar"]) == everything
    assert shared.shared(cfg, ["data.forget_class"]) == ["judge", "base"]
    assert shared.shared(cfg, ["attack.lr", "dimum.beta"]) == [a for a in everything if a != "control"]
    assert shared.shared(cfg, ["pretrain.steps"]) == ["judge"]
    assert "control" not in shared.shared(cfg, [], attacked=False)  # a sweep that may attack no trial
    cfg.attack.control = False
    assert "control" not in shared.shared(cfg, [])


@pytest.mark.parametrize("swept", [["eval.n_per_class"], ["judge.epochs"]])
def test_what_the_evaluation_or_judge_depends_on_is_not_shared_when_swept(swept):
    out = shared.shared(Config(), swept)
    assert not {"reference", "utility:base", "control"} & set(out) and "base" in out


def _store_contents(root) -> dict:
    """Every artefact of a store: tensors of the Parquet files, JSON as written (training times left out)."""
    import json
    import pathlib

    from raysweep import store

    out = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        if p.suffix == ".parquet":
            state, _ = store.load_state(str(p))
            out[p.name] = {k: v.numpy().tobytes() for k, v in state.items()}
        elif p.suffix == ".json":
            out[p.name] = json.loads(p.read_text())
    return out


def test_built_side_by_side_the_shared_artefacts_are_bit_for_bit_what_a_trial_builds(tmp_path):
    """Built as shared.build builds them, one task after another on the trial's 2 threads: the same weights,
    reference and control curve, file by file, as the trial's own calls leave in a store of their own."""
    import torch

    from conftest import tiny_config
    from raysweep import store
    from raysweep.bases import load_bases
    from raysweep.controls import control_curve, reference

    cfg = tiny_config(**{"eval.reference_seeds": 2, "attack.steps": (0, 10)})
    side = str(tmp_path / "side")
    try:
        for what in shared.shared(cfg, ["unlearn.steps"]):
            shared.make(what, cfg, side, "cpu", 2)
        torch.set_num_threads(2)
        own = str(tmp_path / "trial")
        bases = load_bases(cfg, own)
        target = resolve(cfg).target
        reference(cfg, bases, target, own)
        control_curve(cfg, bases, target, own)
    finally:
        torch.set_num_threads(2)
    assert all(store.exists(shared.stored(w, cfg, own)) for w in shared.shared(cfg, []))  # found where looked for
    built, trial = _store_contents(side), _store_contents(own)
    assert set(built) == set(trial) and len(built) == 7  # judge, base, retrain, 2 utilities, reference, control
    assert built == trial


def test_the_bases_ar_is_measured_once_per_sweep_and_is_the_evaluators(tmp_path):
    from conftest import tiny_config
    from raysweep.bases import load_bases
    from raysweep.controls import base_ar
    from raysweep.evaluate import DiffusionGenerator

    cfg = tiny_config()
    bases, target = load_bases(cfg, str(tmp_path)), resolve(cfg).target
    measured = bases.evaluator.ar(DiffusionGenerator(bases.model, cfg.eval, cfg.schedule), target)
    assert base_ar(cfg, bases, target, str(tmp_path)) == measured
    for p in bases.model.parameters():  # a second trial of the sweep reads it: it does not sample the base again
        p.data.zero_()
    assert base_ar(cfg, bases, target, str(tmp_path)) == measured
    cfg.eval.seed += 1  # other evaluation noise: measured anew
    assert base_ar(cfg, bases, target, str(tmp_path)) != measured or \
        len(list((tmp_path / "base").glob("ar-base-*.json"))) == 2


def test_the_utility_reference_is_the_same_whichever_trials_evaluation_seed_built_it(tmp_path):
    """Its cache key leaves eval.seed out, so its content must not depend on it: two trials of one sweep differ in
    eval.seed, and the one that builds the reference first must not choose the noise every trial is judged by."""
    import copy

    from conftest import tiny_config
    from raysweep.bases import load_bases
    from raysweep.controls import utility

    cfg = tiny_config(**{"eval.reference_seeds": 2})
    other = copy.deepcopy(cfg)
    other.eval.seed += 1
    target = resolve(cfg).target
    assert utility_key(cfg, target, "base") == utility_key(other, target, "base")
    bases = load_bases(cfg, str(tmp_path))
    first = utility(cfg, bases, target, str(tmp_path), "base")
    for f in (tmp_path / "base").glob("utility-*.json"):
        f.unlink()  # measured anew, by the other trial
    assert utility(other, bases, target, str(tmp_path), "base") == first
    base1 = copy.deepcopy(cfg)
    base1.pretrain.seed += 1  # another base: evaluation noise of its own
    assert not set(first["seeds"]) & set(reference_key(base1, target)["seeds"])
