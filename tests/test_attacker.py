"""The attacker's knobs beyond DiMRA's defaults: LoRA (only adapters train; the merged checkpoint is the model it
attacked), the optimiser, and the adaptive attack (a neighbour's images under the forgotten label)."""
import copy
import itertools

import pytest
import torch

from conftest import tiny_config
from raysweep import store
from raysweep.data import aux_stream
from raysweep.diffusion import make_unet
from raysweep.config import ATTACK_OPTIMIZERS
from raysweep.lora import add_lora, merged_state
from raysweep.loop import OPTIMIZERS, optimize
from raysweep.target import Target
from raysweep.trial import run_trial


def _unet():
    torch.manual_seed(0)
    return make_unet(tiny_config().model, "tiny", 1, 8, 10)


def test_merged_weights_compute_what_the_adapted_model_computes():
    plain = _unet()
    adapted = add_lora(copy.deepcopy(plain), rank=2)
    assert merged_state(plain).keys() == plain.state_dict().keys()
    fresh = merged_state(adapted)  # LoRA starts with B = 0: nothing changed yet
    assert fresh.keys() == plain.state_dict().keys()
    assert all(torch.equal(fresh[k], v) for k, v in plain.state_dict().items())
    with torch.no_grad():  # an update the attacker might have learned
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    merged = _unet()
    merged.load_state_dict(merged_state(adapted))
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([1, 50, 300, 900]), torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        out_adapted = adapted(x, t, class_labels=y).sample
        out_merged, out_plain = merged(x, t, class_labels=y).sample, plain(x, t, class_labels=y).sample
    assert torch.allclose(out_adapted, out_merged, atol=1e-5) and not torch.allclose(out_adapted, out_plain, atol=1e-3)
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_a_lora_attack_trains_only_adapters_and_checkpoints_a_plain_unet(tmp_path):
    cfg = tiny_config(**{"unlearn.method": "dimum", "unlearn.steps": 5, "attack.steps": (0, 4), "attack.lora_rank": 2,
                         "attack.lr": 1e-3, "pretrain.steps": 12, "attack.control": False,
                         "eval.reference_seeds": 2})
    res = run_trial(cfg, str(tmp_path))
    assert res["status"] == "ok" and res["attack_status"] == "ok"
    attacked, meta = store.load_state(res["attack_uris"]["4"])
    unlearned, _ = store.load_state(res["unlearned_uri"])
    assert attacked.keys() == unlearned.keys()  # a plain UNet, loadable like any checkpoint
    changed = {k for k in attacked if not torch.equal(attacked[k], unlearned[k])}
    assert changed and all(k.endswith((".conv1.weight", ".conv2.weight")) or ".to_" in k for k in changed), changed


def test_the_adaptive_attack_shows_a_neighbours_images_under_the_forgotten_label(digits):
    x, y = next(aux_stream(digits, Target(digits.conditions, object=3), "relabel:8", 32, 0))
    test8 = digits.test_x[digits.test_y == 8].flatten(1)
    assert (y == 3).all() and all((test8 == row).all(1).any() for row in x.flatten(1))


def test_an_adaptive_attack_trial_runs_past_dimras_guard(tmp_path):
    cfg = tiny_config(**{"unlearn.method": "dimum", "unlearn.steps": 5, "attack.steps": (0, 4),
                         "attack.aux": "relabel:8", "pretrain.steps": 12, "attack.control": False,
                         "eval.reference_seeds": 2})
    res = run_trial(cfg, str(tmp_path))
    assert res["attack_status"] == "ok" and res["attack_aux"] == "relabel:8" and set(res["ar_dimra"]) == {"0", "4"}


@pytest.mark.parametrize("name", ATTACK_OPTIMIZERS)
def test_each_attack_optimizer_takes_its_known_first_step_and_resumes_exactly(name):
    """On loss |w|^2 / 2 (gradient w), the first step from w0 is known: SGD w0(1 - lr) (its momentum buffer starts
    at the gradient), Adam w0 - lr sign(w0), AdamW the same after decaying w0 by lr * 0.01. A run stopped at step 2
    and resumed from its saved state ends where an uninterrupted one does (the optimiser's state travels)."""
    assert set(OPTIMIZERS) == set(ATTACK_OPTIMIZERS)
    w0, lr = torch.tensor([[0.5, -2.0, 3.0]]), 0.1

    def run(steps, resume=None, saved=None):
        model = torch.nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(w0)
        optimize(model, lambda m, b, s: (m.weight ** 2).sum() / 2, {"none": itertools.repeat(())}, steps, lr=lr,
                 grad_clip=0.0, optimizer=name, resume=resume, save=saved.append if saved is not None else None,
                 save_every=2)
        return model.weight.detach().clone()

    first = {"sgd": w0 * (1 - lr), "adam": w0 - lr * w0.sign(), "adamw": w0 * (1 - lr * 0.01) - lr * w0.sign()}
    assert torch.allclose(run(1), first[name], atol=1e-6)
    states: list = []
    run(3, saved=states)  # saves at step 2
    assert torch.equal(run(4, resume=states[-1]), run(4))
