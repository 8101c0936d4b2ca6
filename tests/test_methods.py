import copy
import json

import pytest
import torch

from conftest import assert_one_line_error, run_cli, run_clis, tiny_config
from raysweep import store
from raysweep.config import RaysweepError
from raysweep.data import load_dataset
from raysweep.diffusion import make_unet
from raysweep.methods import REGISTRY
from raysweep.methods.base import Context
from raysweep.methods.esd import esd_target
from raysweep.methods.salun import top_fraction_masks
from raysweep.trial import run_trial


@pytest.fixture(scope="module")
def ctx():
    cfg = tiny_config(**{"unlearn.batch_size": 16, "salun.mask_batches": 1, "sa.replay_per_class": 2,
                         "sa.fisher_batches": 2, "esd.images": 4, "dimum.generated_per_class": 2})
    ds = load_dataset(cfg.data)
    torch.manual_seed(0)
    model = make_unet(cfg.model, "digits", 1, 8, 10)
    return Context(cfg, ds, 3, copy.deepcopy(model).eval().requires_grad_(False)), model


def _labels_seen(model):
    seen = []
    handle = model.class_embedding.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    return seen, handle


def test_salun_targets_the_next_class_prediction(ctx):
    context, model = ctx
    method = REGISTRY["salun"](context)
    seen, handle = _labels_seen(model)
    method.forget_loss(model, context.ds.of_class(3)[:8], torch.full((8,), 3))
    handle.remove()
    assert set(seen[0].tolist()) == {4} and set(seen[1].tolist()) == {3}  # target under c', prediction under c_u


def test_saliency_mask_keeps_exactly_the_top_half():
    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(7, 5, generator=g), torch.rand(13, generator=g), torch.rand(2, 2, 3, generator=g)]
    masks = top_fraction_masks(scores, 0.5)
    flat_s = torch.cat([s.flatten() for s in scores])
    flat_m = torch.cat([m.flatten() for m in masks]).bool()
    assert int(flat_m.sum()) == round(0.5 * flat_s.numel())
    assert flat_s[flat_m].min() >= flat_s[~flat_m].max()


def test_salun_mask_freezes_the_other_half(ctx):
    context, model = ctx
    model = copy.deepcopy(model)
    method = REGISTRY["salun"](context)
    streams = method.prepare(model)
    before = [p.detach().clone() for p in method.params]
    batches = {k: next(it) for k, it in streams.items()}
    method(model, batches, 1)[0].backward()
    method.post_backward(model)
    for p, m in zip(method.params, method.masks):
        assert (p.grad[m == 0] == 0).all()
    assert sum(int(m.sum()) for m in method.masks) == round(0.5 * sum(p.numel() for p in before))


def test_dimum_memorizes_only_alternative_images_under_c_u(ctx):
    context, model = ctx
    forget = context.ds.of_class(3).flatten(1)
    for alt in ("retain", "class:5", "noise", "generated"):
        context.cfg.dimum.alternative = alt
        streams = REGISTRY["dimum"](context).prepare(model)
        x, y = next(streams["alternative"])
        assert (y == 3).all(), alt
        assert not any((forget == row).all(1).any() for row in x.flatten(1)), alt
        assert (next(streams["retain"])[1] != 3).all()
    context.cfg.dimum.alternative = "retain"


def test_dimum_loss_is_retain_plus_beta_memorization(ctx):
    context, model = ctx
    method = REGISTRY["dimum"](context)
    batches = {k: next(it) for k, it in method.prepare(model).items()}
    values = {}
    for beta in (0.0, 2.0):
        context.cfg.dimum.beta = beta
        torch.manual_seed(7)
        values[beta] = method(model, batches, 1)
    context.cfg.dimum.beta = 1.0
    total0, logs0 = values[0.0]
    total2, logs2 = values[2.0]
    assert torch.allclose(total2 - total0, 2 * logs2["forget"], atol=1e-5)


def test_esd_target_matches_the_formula(ctx):
    context, _ = ctx
    original = context.original
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 1000, (4,), generator=g)
    y = torch.full((4,), 3)
    with torch.no_grad():
        cond = original(x, t, class_labels=y).sample
        null = original(x, t, class_labels=torch.full((4,), 10)).sample
    assert torch.allclose(esd_target(original, x, t, y, 2.5), null - 2.5 * (cond - null), atol=1e-6)


def test_sa_fisher_penalty_is_zero_at_the_original_weights(ctx):
    context, model = ctx
    model = copy.deepcopy(model)
    method = REGISTRY["sa"](context)
    batches = {k: next(it) for k, it in method.prepare(model).items()}
    _, logs = method(model, batches, 1)
    assert float(logs["fisher_penalty"]) == 0.0 and all((f >= 0).all() for f in method.fisher)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    _, logs = method(model, batches, 1)
    assert float(logs["fisher_penalty"]) > 0


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_runs_a_tiny_trial(tmp_path_factory, method):
    root = str(tmp_path_factory.getbasetemp() / "shared-store")  # base and judge trained once for all
    cfg = tiny_config(**{"unlearn.method": method, "unlearn.steps": 12, "attack.steps": (0, 4, 8),
                         "unlearn.batch_size": 16, "attack.batch_size": 16, "sa.replay_per_class": 2,
                         "esd.images": 4, "salun.mask_batches": 1, "sa.fisher_batches": 2,
                         "pretrain.steps": 12})
    res = run_trial(cfg, root)
    assert res["status"] == "ok" and res["method"] == method
    assert set(res["ar_dimra"]) == {"0", "4", "8"} and res["ar_dimra"]["0"] == res["ar_mu"]
    for k in ("ar_base", "ar_mu", "ar_cl", "retain_acc", "ar_dimra_max"):
        assert 0.0 <= res[k] <= 1.0
    state, meta = store.load_state(res["attack_uris"]["8"])
    assert meta["kind"] == "attacked" and meta["step"] == 8
    assert res["unlearn_steps_run"] == 12


def test_gradient_ascent_divergence_is_reported(tmp_path):
    cfg = tiny_config(**{"unlearn.method": "ga", "unlearn.steps": 400, "unlearn.lr": 0.05, "unlearn.grad_clip": 0.0,
                         "unlearn.max_abs_loss": 20.0, "ga.alpha": 0.0, "attack.steps": (0, 2)})
    res = run_trial(cfg, str(tmp_path))
    assert res["status"] == "diverged" and res["unlearn_steps_run"] < 400


def test_stop_when_forgotten_records_the_step(tmp_path):
    cfg = tiny_config(**{"unlearn.method": "finetune", "unlearn.steps": 50, "unlearn.stop_ar": 1.0,
                         "unlearn.check_every": 5, "unlearn.check_n": 4, "attack.steps": (0, 2)})
    res = run_trial(cfg, str(tmp_path))
    assert res["unlearn_steps_run"] == 5 and res["unlearn_stopped_early"]


def test_dimra_guard_rejects_the_forgotten_class(ctx, monkeypatch):
    """aux streams never yield c_u (test_data.py); if one ever did, the attack refuses to run."""
    import raysweep.attack as attack
    from raysweep.data import forget_stream

    context, model = ctx
    monkeypatch.setattr(attack, "aux_data", lambda cfg, ds, m, c: forget_stream(ds, c, 8, 0))
    cfg = copy.deepcopy(context.cfg)
    cfg.attack.steps = (0, 1)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(RaysweepError, match="forgotten class"):
        attack.dimra(copy.deepcopy(model), cfg, context.ds, 3, None, labels)


def test_generated_aux_drops_the_forgotten_class(digits):
    from raysweep.data import aux_stream

    x = torch.zeros(40, 1, 8, 8)
    y = torch.arange(40) % 10
    it = aux_stream(digits, 3, "generated", 8, 0, generated=(x, y))
    assert all((next(it)[1] != 3).all() for _ in range(10))


TRIAL = ["--set", "model.preset=tiny", "--set", "pretrain.steps=10", "--set", "judge.epochs=2"]


BAD_TRIALS = {  # what the one error line must name -> the arguments
    "unknown method": ["--method", "forgetful"],
    "dimum.beta": ["--set", "dimum.beta=-1"],
    "class:3": ["--set", "dimum.alternative=class:3"],
    "out of range": ["--set", "dimum.alternative=class:12"],
    "strictly increasing": ["--set", "attack.steps=0,500,250"],
    "attack.aux": ["--set", "attack.aux=internet"],
}


@pytest.fixture(scope="module")
def bad_trials(tmp_path_factory):
    return run_clis({k: ("raysweep.trial", "--out", str(tmp_path_factory.mktemp("bad")), *TRIAL, *a)
                     for k, a in BAD_TRIALS.items()})


@pytest.mark.parametrize("needle", list(BAD_TRIALS))
def test_trial_bad_input_is_one_line(bad_trials, needle):
    assert_one_line_error(bad_trials[needle], needle)


def test_trial_cli_json(tmp_path):
    res = run_cli("raysweep.trial", "--method", "dimum", "--forget-class", "2", "--seed", "1", "--out",
                  str(tmp_path), "--json", *TRIAL, "--set", "unlearn.steps=5", "--set", "attack.steps=0,3",
                  "--set", "eval.steps=2", "--set", "eval.n_forget=8", "--set", "eval.n_per_class=2",
                  "--set", "attack.control=false")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("method", "forget_class", "seed", "status", "ar_base", "ar_mu", "ar_dimra", "ar_cl", "retain_acc",
                "fid_judge", "convergence", "unlearn_steps_run", "unlearn_seconds", "attack_seconds", "sampler",
                "sampling_steps", "guidance_scale", "judge_id"):
        assert key in out
    assert (out["method"], out["forget_class"], out["seed"]) == ("dimum", 2, 1)
    assert store.load_state(out["unlearned_uri"])[1]["kind"] == "unlearned"
