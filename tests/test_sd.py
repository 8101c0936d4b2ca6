"""The Stable-Diffusion path on a tiny random stand-in: seconds on a CPU, no download."""
import pytest
import torch
from torch.func import functional_call

from raysweep.config import RaysweepError, Schedule
from raysweep.diffusion import DenoisingLoss, null_class, sample
from raysweep.sd import (LatentCodec, TextConditionedUNet, build_model, encode_prompts, load_components, prompts,
                         tiny_components)
from raysweep.target import Conditions

CONDS = Conditions(("0", "1"), ("plain", "inverted"))


@pytest.fixture(scope="module")
def built():
    return build_model(tiny_components(CONDS), CONDS, channels=1)


def _xt(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 4, 4, generator=g), torch.tensor([1, 10, 100, 999][:n])


def test_prompts_in_condition_order_with_null_last():
    assert prompts(CONDS) == ["A 0 image in plain style.", "A 0 image in inverted style.",
                              "A 1 image in plain style.", "A 1 image in inverted style.", ""]
    assert prompts(Conditions(("cat", "dog"))) == ["A cat image.", "A dog image.", ""]
    # UnlearnCanvas' spelling: underscores are spaces, its photographs are "Photo" style
    assert prompts(Conditions(("Cats",), ("Van_Gogh", "Seed_Images")))[:2] == [
        "A Cats image in Van Gogh style.", "A Cats image in Photo style."]


def test_tiny_tokenizer_spells_prompt_words_whole():
    tok = tiny_components(CONDS).tokenizer
    words = tok.convert_ids_to_tokens(tok("A 1 image in plain style.").input_ids)
    assert words[1:-1] == ["a</w>", "1</w>", "image</w>", "in</w>", "plain</w>", "style</w>", ".</w>"]


def test_wrapper_shape_labels_and_null(built):
    model, _ = built
    assert model.config.num_class_embeds == CONDS.n + 1 and model.config.sample_size == 4
    assert model.embeds.shape[0] == CONDS.n + 1
    x, t = _xt()
    with torch.no_grad():
        out = model(x, t, class_labels=torch.tensor([0, 1, 2, null_class(model)])).sample
        a = model(x[:1], t[:1], class_labels=torch.tensor([0])).sample
        b = model(x[:1], t[:1], class_labels=torch.tensor([3])).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(a, b)
    assert not torch.allclose(model.embeds[null_class(model)], model.embeds[0])


def test_state_dict_holds_only_unet_weights(built):
    model, _ = built
    keys = list(model.state_dict())
    assert keys and all(k.startswith("unet.") for k in keys)
    twin = TextConditionedUNet(tiny_components(CONDS, seed=1).unet, model.embeds)
    twin.load_state_dict(model.state_dict())  # strict: nothing missing, nothing extra
    x, t = _xt(2)
    y = torch.tensor([0, 3])
    with torch.no_grad():
        assert torch.equal(twin(x, t, class_labels=y).sample, model(x, t, class_labels=y).sample)


def test_functional_call_matches_and_uses_given_params(built):
    model, _ = built
    params = dict(model.named_parameters())
    x, t = _xt(2)
    kw = {"class_labels": torch.tensor([1, null_class(model)])}
    with torch.no_grad():
        direct = model(x, t, **kw).sample
        assert torch.allclose(functional_call(model, params, (x, t), kw).sample, direct)
        zeroed = {**params, "unet.conv_out.weight": torch.zeros_like(params["unet.conv_out.weight"]),
                  "unet.conv_out.bias": torch.zeros_like(params["unet.conv_out.bias"])}
        assert torch.count_nonzero(functional_call(model, zeroed, (x, t), kw).sample) == 0


def _eval_loss(loss, model, x0, y):
    torch.manual_seed(123)  # the same t and noise before and after training
    with torch.no_grad():
        return sum(loss(model, x0, y).item() for _ in range(4)) / 4


def test_denoising_loss_trains_down():
    model, codec = build_model(tiny_components(CONDS), CONDS, channels=1)
    g = torch.Generator().manual_seed(0)
    x0 = codec.encode(torch.rand(8, 1, 8, 8, generator=g) * 2 - 1)
    y = torch.arange(8) % CONDS.n
    loss = DenoisingLoss(Schedule(), label_dropout=0.2)
    before = _eval_loss(loss, model, x0, y)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.manual_seed(0)
    for _ in range(10):
        opt.zero_grad()
        loss(model, x0, y).backward()
        opt.step()
    assert model.embeds.grad is None  # the prompts are constants
    assert _eval_loss(loss, model, x0, y) < 0.8 * before


def test_sample_latents_and_cfg_paths_agree(built):
    model, _ = built
    noise = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 3])
    kw = dict(schedule=Schedule(), steps=3, guidance=2.0)
    z = sample(model, y, noise, batched=True, **kw)
    assert z.shape == noise.shape and torch.isfinite(z).all()
    assert torch.allclose(z, sample(model, y, noise, batched=False, **kw), atol=1e-5)


def test_codec_shapes_range_determinism(built):
    _, codec = built
    img = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = codec.encode(img)
    assert z.shape == (4, 4, 4, 4)
    assert torch.equal(z, codec.encode(img))
    assert torch.allclose(z, codec.encode(img.repeat(1, 3, 1, 1)))  # gray = RGB with equal channels
    small = LatentCodec(codec.vae, channels=1, batch_size=3)  # batching must not change results
    assert torch.allclose(small.encode(img), z, atol=1e-6)
    out = codec.decode(z)
    assert out.shape == (4, 1, 8, 8) and out.min() >= -1 and out.max() <= 1
    assert torch.equal(out, codec.decode(z))
    assert LatentCodec(codec.vae, channels=3).decode(z).shape == (4, 3, 8, 8)


def test_tiny_components_seeded_and_rng_untouched():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = tiny_components(CONDS, seed=0)
    assert torch.equal(torch.rand(3), expected)
    b, c = tiny_components(CONDS, seed=0), tiny_components(CONDS, seed=1)
    for part in ("unet", "text_encoder", "vae"):
        sa, sb, sc = (getattr(m, part).state_dict() for m in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), part
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point()), part


def test_encode_prompts_pads_to_max_length():
    comp = tiny_components(CONDS)
    e = encode_prompts(comp.tokenizer, comp.text_encoder, ["", "A 0 image in plain style."])
    assert e.shape == (2, comp.tokenizer.model_max_length, 32) and not e.requires_grad


def test_load_components_missing_dir_is_one_line():
    with pytest.raises(RaysweepError) as err:
        load_components("/nonexistent/dir")
    msg = str(err.value)
    assert "/nonexistent/dir" in msg and "\n" not in msg and "allow_download" in msg


def test_load_components_round_trip(tmp_path):
    comp = tiny_components(CONDS)
    (tmp_path / "vae").mkdir()
    with pytest.raises(RaysweepError, match="unet"):
        load_components(str(tmp_path))
    for name in ("unet", "text_encoder", "tokenizer", "vae"):
        getattr(comp, name).save_pretrained(tmp_path / name)
    back = load_components(str(tmp_path))
    x, t = _xt(2)
    y = torch.tensor([0, 4])
    with torch.no_grad():
        m1, m2 = build_model(comp, CONDS)[0], build_model(back, CONDS)[0]
        assert torch.allclose(m1(x, t, class_labels=y).sample, m2(x, t, class_labels=y).sample)


def test_tiny_sd_full_cycle_unlearn_attack_evaluate(tmp_path):
    """base (finetuned on digits-styles latents) -> DiMUM on a style -> evaluate -> DiMRA -> evaluate, through the
    same trial function as every other model; each stage must leave its mark."""
    from conftest import tiny_config
    from raysweep import store
    from raysweep.trial import run_trial

    cfg = tiny_config(**{"data.dataset": "digits-styles", "data.target": "style=inverted", "model.preset": "sd-tiny",
                         "pretrain.steps": 6, "unlearn.steps": 6, "attack.steps": (0, 3), "unlearn.batch_size": 16,
                         "attack.batch_size": 16, "eval.n_forget": 20, "eval.n_per_class": 2, "eval.steps": 3,
                         "attack.control": False, "judge.epochs": 1})
    res = run_trial(cfg, str(tmp_path))
    assert res["status"] == "ok" and res["unlearn_steps_run"] == 6 and set(res["ar_dimra"]) == {"0", "3"}
    base, base_meta = store.load_state(res["base_uri"])
    unlearned, _ = store.load_state(res["unlearned_uri"])
    attacked, att_meta = store.load_state(res["attack_uris"]["3"])
    assert base_meta["extra"]["steps"] == 6 and att_meta["step"] == 3
    assert set(base) == set(unlearned) == set(attacked) and all(k.startswith("unet.") for k in base)
    moved = lambda a, b: any(not torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert moved(base, unlearned) and moved(unlearned, attacked)  # unlearning and the attack both trained
    assert len(res["unlearn_loss_curve"]) == 6
    for k in ("ua", "ira", "cra", "retain_acc", "fid_judge"):
        assert res[k] == res[k], k  # evaluated (not NaN)
    assert res["sampling_steps"] == 3 and res["n_samples_forget"] == 20


def test_missing_stable_diffusion_directory_is_one_line(tmp_path):
    from conftest import run_cli

    res = run_cli("raysweep.trial", "--dataset", "digits-styles", "--target", "style=inverted", "--out",
                  str(tmp_path), "--set", "model.preset=sd", "--set", "model.sd_path=/nonexistent/sd-v1-5")
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and "/nonexistent/sd-v1-5" in lines[0], res.stderr
