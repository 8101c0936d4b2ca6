import copy
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, in_process, run_cli, tiny_config
from raysweep import store
from raysweep.config import RaysweepError
from raysweep.datasets import load_dataset
from raysweep.resolve import resolve
from raysweep.target import Target
from raysweep.config import Schedule
from raysweep.diffusion import DenoisingLoss, guided_eps, make_unet
from raysweep.methods import REGISTRY
from raysweep.methods.base import Context
from raysweep.methods.esd import esd_target
from raysweep.methods.sa import fisher_diagonal
from raysweep.methods.salun import top_fraction_masks
from raysweep.trial import run_trial


@pytest.fixture(scope="module")
def ctx():
    cfg = tiny_config(**{"unlearn.batch_size": 16, "sa.replay_per_class": 2, "sa.fisher_per_class": 1,
                         "esd.sample_steps": 5, "dimum.generated_per_class": 2})
    ds = load_dataset(cfg.data)
    torch.manual_seed(0)
    model = make_unet(cfg.model, "digits", 1, 8, 10)
    return Context(cfg, ds, resolve(cfg).target, copy.deepcopy(model).eval().requires_grad_(False)), model


def _labels_seen(model):
    seen = []
    handle = model.class_embedding.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    return seen, handle


def _batches(method, model):
    return {k: next(it) for k, it in method.prepare(model).items()}


def _same_draws(fn, seed=7):
    torch.manual_seed(seed)
    return fn()


def test_pixel_sum_is_chw_times_the_mean_on_the_same_draws(digits):
    """The conversion every lineage method relies on: SA/SalUn's summed loss = C*H*W x diffusers' mean."""
    model = make_unet(tiny_config().model, "digits", 1, 8, 10)
    x, y = digits.train_x[:8], digits.train_y[:8]
    mean = _same_draws(lambda: DenoisingLoss(Schedule())(model, x, y))
    summed = _same_draws(lambda: DenoisingLoss(Schedule(), pixel_sum=True)(model, x, y))
    assert float(summed.detach()) == pytest.approx(64 * float(mean.detach()), rel=1e-5)


def test_antithetic_timesteps_mirror_each_other():
    t = DenoisingLoss(Schedule(), antithetic=True).timesteps(8, "cpu")
    assert torch.equal(t[5:], 999 - t[:3])  # SA/SalUn: n // 2 + 1 draws, then their mirrors, cut to n


def test_ga_is_minus_forget_plus_alpha_retain_in_pixel_sums(ctx):
    context, model = ctx
    method = REGISTRY["ga"](context)
    batches = _batches(method, model)
    total, logs = _same_draws(lambda: method(model, batches, 1))
    summed = DenoisingLoss(Schedule(), context.cfg.unlearn.label_dropout, pixel_sum=True, antithetic=True)
    forget = _same_draws(lambda: summed(model, *batches["forget"])).detach()
    assert float(logs["forget"]) == pytest.approx(-float(forget), rel=1e-5)  # the term as it enters the loss
    assert float(total.detach()) == pytest.approx(float(logs["forget"]) + 1e-3 * float(logs["retain"]), rel=1e-5)


def test_salun_targets_the_next_class_prediction(ctx):
    context, model = ctx
    method = REGISTRY["salun"](context)
    seen, handle = _labels_seen(model)
    context.cfg.unlearn.label_dropout = 0.0
    method.unlearning_term(model, {"forget": (context.ds.of_class(3)[:8], torch.full((8,), 3))})
    context.cfg.unlearn.label_dropout = 0.1
    handle.remove()
    assert set(seen[0].tolist()) == {4} and set(seen[1].tolist()) == {3}  # target under c', prediction under c_u


def test_salun_alpha_is_in_salun_units(ctx):
    """alpha = 1e-3 multiplies the pixel-*summed* retain loss: 64x our mean loss on 8x8 digits."""
    context, model = ctx
    method = REGISTRY["salun"](context)
    batches = _batches(method, model)
    total, logs = _same_draws(lambda: method(model, batches, 1))
    mean_retain = DenoisingLoss(Schedule(), context.cfg.unlearn.label_dropout, antithetic=True)

    def retain_after_forget():  # the same draws the method makes: forget term first, then retain
        method.unlearning_term(model, batches)
        return mean_retain(model, *batches["retain"])

    retain = _same_draws(retain_after_forget)
    assert float((total - logs["forget"]).detach()) == pytest.approx(1e-3 * 64 * float(retain.detach()), rel=1e-4)


def test_saliency_mask_keeps_exactly_the_top_half():
    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(7, 5, generator=g), torch.rand(13, generator=g), torch.rand(2, 2, 3, generator=g)]
    masks = top_fraction_masks(scores, 0.5)
    flat_s = torch.cat([s.flatten() for s in scores])
    flat_m = torch.cat([m.flatten() for m in masks]).bool()
    assert int(flat_m.sum()) == round(0.5 * flat_s.numel())
    assert flat_s[flat_m].min() >= flat_s[~flat_m].max()


def test_salun_saliency_is_the_abs_of_summed_clipped_gradients_of_the_guided_loss(ctx):
    """generate_mask: |sum over D_u's batches of clip(grad L_sum(guided eps))|. With one batch holding all of D_u
    it is |clip(g)| of that batch, which a direct computation gives."""
    context, model = ctx
    model = copy.deepcopy(model)
    cfg = copy.deepcopy(context.cfg)
    cfg.unlearn.batch_size = 4096  # D_u in one batch
    method = REGISTRY["salun"](Context(cfg, context.ds, context.target, context.original))
    method.params = [p for p in model.parameters() if p.requires_grad]
    got = _same_draws(lambda: method.saliency(model))

    def direct():
        x, y = context.ds.where(context.target, True)
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(method.ctx.seed("forget")))]
        loss = DenoisingLoss(Schedule(), pixel_sum=True, antithetic=True)
        x_t, t, eps = loss.noised(x)
        model.zero_grad()
        model.eval()
        loss.reduce(guided_eps(model, x_t, t, torch.full((len(x),), 3), 3.0), eps).backward()
        torch.nn.utils.clip_grad_norm_(method.params, 1.0)
        return [p.grad.abs() for p in method.params]

    want = _same_draws(direct)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))


def test_salun_mask_applies_after_clipping_and_freezes_the_other_half(ctx):
    context, model = ctx
    model = copy.deepcopy(model)
    method = REGISTRY["salun"](context)
    batches = _batches(method, model)
    method(model, batches, 1)[0].backward()
    torch.nn.utils.clip_grad_norm_(method.params, 1.0)
    method.after_clip(method.params)
    for p, m in zip(method.params, method.masks):
        assert (p.grad[m == 0] == 0).all()
    assert sum(int(m.sum()) for m in method.masks) == round(0.5 * sum(p.numel() for p in method.params))


class Scale(torch.nn.Module):
    """eps(x, t, c) = w * x: a model whose Fisher has a closed form."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float(w)))

    def forward(self, x, t, class_labels=None):
        return type("Out", (), {"sample": self.w * x})


def test_sa_fisher_is_the_squared_gradient_of_the_loss_summed_over_pixels_and_timesteps():
    """With zero noise x_t = sqrt(abar_t) x0, so d/dw sum_t sum_pix (w x_t)^2 = 2 w sum_t abar_t |x0|^2, and the
    Fisher is its square averaged over the samples (SA's save_fim)."""
    model, sched = Scale(0.5), Schedule()
    x = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), -1.0)])
    f = fisher_diagonal(model, [model.w], x, torch.tensor([0, 1]), sched, 0.0, "cpu", noise=torch.zeros_like)
    abar = float(DenoisingLoss(sched).sched.alphas_cumprod.sum())
    grads = [2 * 0.5 * abar * float((xi ** 2).sum()) for xi in x]
    assert float(f[0]) == pytest.approx(sum(g ** 2 for g in grads) / 2, rel=1e-4)


def test_sa_objective_in_sa_units(ctx):
    context, model = ctx
    model = copy.deepcopy(model)
    method = REGISTRY["sa"](context)
    batches = _batches(method, model)
    _, logs = method(model, batches, 1)
    assert float(logs["fisher_penalty"]) == 0.0 and all((f >= 0).all() for f in method.fisher)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    total, logs = method(model, batches, 1)
    penalty = sum(float((f * 0.01 ** 2).sum()) for f in method.fisher)
    assert float(logs["fisher_penalty"]) == pytest.approx(penalty, rel=1e-4) and penalty > 0
    assert float(total.detach()) == pytest.approx(
        float((logs["forget"] + logs["replay"] + 10.0 * logs["fisher_penalty"]).detach()), rel=1e-5)
    # pixel sums: the noise term on 8x8 images is far above a per-pixel mean (~1)
    assert float(logs["forget"]) > 16


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
    values = {}
    for beta in (0.0, 2.0):
        context.cfg.dimum.beta = beta
        method = REGISTRY["dimum"](context)
        batches = _batches(method, model)
        values[beta] = _same_draws(lambda: method(model, batches, 1))
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


def test_esd_pairs_the_sample_with_the_timestep_it_is_at(ctx):
    context, model = ctx
    method = REGISTRY["esd"](context)
    noise, labels = torch.randn(1, 1, 8, 8), torch.tensor([3])
    z, t = method.partly_denoised(model, noise, labels, 0)
    assert torch.equal(z, noise) and int(t) == 800  # 5-step DDIM grid 800, 600, ..., 0: pure noise is at 800
    z, t = method.partly_denoised(model, noise, labels, 3)
    assert int(t) == 200 and not torch.equal(z, noise)


def test_erasediff_forget_target_is_the_uniform_noise_x_t_was_built_with(ctx):
    context, model = ctx
    method = REGISTRY["erasediff"](context)
    x0 = context.ds.of_class(3)[:8]
    x_t, t, u = method.forget_loss.noised(x0)
    abar = method.forget_loss.sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert u.min() >= 0 and u.max() < 1  # torch.rand_like, as in EraseDiff's code
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * u, atol=1e-5)


def test_erasediff_gradient_is_retain_plus_lambda_forget(ctx):
    """BOME's first-order step: the inner value is a constant, so grad = grad L_r + lam * grad f."""
    context, model = ctx
    model = copy.deepcopy(model)
    method = REGISTRY["erasediff"](context)
    batches = _batches(method, model)
    method.inner_value = 123.0  # any constant
    total, logs = _same_draws(lambda: method(model, batches, 2))
    assert float(logs["inner_gap"]) == pytest.approx(float(logs["forget"]) - 123.0, rel=1e-5)
    assert float(total.detach()) == pytest.approx(float((logs["retain"] + 0.1 * (logs["forget"] - 123.0)).detach()),
                                                  rel=1e-5)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_runs_a_tiny_trial(tmp_path_factory, method):
    root = str(tmp_path_factory.getbasetemp() / "shared-store")  # base and judge trained once for all
    cfg = tiny_config(**{"unlearn.method": method, "unlearn.steps": 12, "attack.steps": (0, 4, 8),
                         "unlearn.batch_size": 16, "attack.batch_size": 16, "sa.replay_per_class": 2,
                         "sa.fisher_per_class": 1, "esd.sample_steps": 5, "pretrain.steps": 12})
    res = run_trial(cfg, root)
    assert res["status"] == "ok" and res["method"] == method
    assert set(res["ar_dimra"]) == {"0", "4", "8"} and res["ar_dimra"]["0"] == res["ar_mu"]
    for k in ("ar_base", "ar_mu", "ar_cl", "retain_acc", "ar_dimra_max"):
        assert 0.0 <= res[k] <= 1.0
    assert res["ar_mu_lo"] <= res["ar_mu"] <= res["ar_mu_hi"] and res["feasible"] in (0, 1)
    assert res["ar_dimra_max"] == max(res["ar_dimra"]["4"], res["ar_dimra"]["8"])  # k >= 1 only
    assert res["recovery"] == pytest.approx(res["ar_dimra_max"] - res["ar_mu"])
    assert set(res["retain_acc_curve"]) == set(res["fid_curve"]) == {"0", "4", "8"}
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


def test_a_trial_that_violates_a_constraint_after_unlearning_is_not_attacked(tmp_path_factory):
    """The same unlearned model (shared through the store) judged twice: a predicate that finds nothing attacks it,
    one that names a violated constraint leaves the attack out and says why."""
    root = str(tmp_path_factory.getbasetemp() / "shared-store")
    cfg = tiny_config(**{"unlearn.method": "finetune", "unlearn.steps": 4, "attack.steps": (0, 4),
                         "pretrain.steps": 12, "attack.control": False})
    seen = []
    attacked = run_trial(cfg, root, str(tmp_path_factory.mktemp("a")), skip_attack=lambda out: seen.append(dict(out)) or [])
    assert seen[0]["ar_mu"] == attacked["ar_mu"] and "ar_dimra_max" not in seen[0]  # judged before the attack
    skipped = run_trial(cfg, root, str(tmp_path_factory.mktemp("s")), skip_attack=lambda out: ["ar_mu <= -1"])
    assert attacked.get("attack_skipped") is None and math.isfinite(attacked["ar_dimra_max"])
    assert skipped["attack_skipped"] == 1 and skipped["status"] == "ok" and skipped["attack_status"] == "skipped"
    assert skipped["attack_skipped_because"] == "violates ar_mu <= -1 after unlearning"
    assert skipped["ar_dimra"] == {"0": attacked["ar_mu"]} and skipped["attack_uris"] == {}
    assert all(math.isnan(skipped[k]) for k in ("ar_dimra_max", "recovery", "ar_dimra_final"))
    assert not list(Path(skipped["trial_dir"]).glob("attack-*")) and list(Path(attacked["trial_dir"]).glob("attack-*"))
    assert {k: skipped[k] for k in ("ar_mu", "retain_acc", "fid_judge")} == \
        {k: attacked[k] for k in ("ar_mu", "retain_acc", "fid_judge")}
    assert set(skipped) - set(attacked) == {"attack_skipped", "attack_skipped_because"}


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
        attack.dimra(copy.deepcopy(model), cfg, context.ds, context.target, None, {"labels": labels})


def test_generated_aux_drops_the_forgotten_class(digits):
    from raysweep.data import aux_stream

    x = torch.zeros(40, 1, 8, 8)
    y = torch.arange(40) % 10
    it = aux_stream(digits, Target(digits.conditions, object=3), "generated", 8, 0, generated=(x, y))
    assert all((next(it)[1] != 3).all() for _ in range(10))


TRIAL = ["--set", "model.preset=tiny", "--set", "pretrain.steps=10", "--set", "judge.epochs=2"]


BAD_TRIALS = {  # what the one error line must name -> the arguments
    "unknown method": ["--method", "forgetful"],
    "dimum.beta": ["--set", "dimum.beta=-1"],
    "class:3": ["--set", "dimum.alternative=class:3"],
    "out of range": ["--set", "dimum.alternative=class:12"],
    "strictly increasing": ["--set", "attack.steps=0,500,250"],
    "attack.aux": ["--set", "attack.aux=internet"],
    "attack.aux_size must be >= 0": ["--set", "attack.aux_size=-5"],
    "attack.lora_rank must be >= 0": ["--set", "attack.lora_rank=-1"],
    "unknown attack.optimizer 'lbfgs'": ["--set", "attack.optimizer=lbfgs"],
    "attack.aux 'class:3': k must differ": ["--set", "attack.aux=class:3"],
}


@pytest.mark.parametrize("needle", list(BAD_TRIALS))
def test_trial_bad_input_is_one_line(needle, tmp_path, capsys):
    from raysweep import trial

    assert_one_line_error(in_process(trial.main, ["--out", str(tmp_path), *TRIAL, *BAD_TRIALS[needle]], capsys),
                          needle)


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
