import math

import torch

from raysweep.loop import optimize


def _regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def batches():
        while True:
            yield x, y

    return batches(), lambda m, b, s: torch.nn.functional.mse_loss(m(b["d"][0]).squeeze(1), b["d"][1])


def test_loop_minimises_the_loss():
    it, loss = _regression()
    model = torch.nn.Linear(4, 1)
    res = optimize(model, loss, {"d": it}, 300, lr=0.05)
    assert res.status == "ok" and res.steps_run == 300 and res.losses[-1] < 1e-3 < res.losses[0]


def test_callback_can_stop_early_and_step_is_recorded():
    it, loss = _regression()
    seen = []

    def cb(step, model):
        seen.append(step)
        return step >= 30

    res = optimize(torch.nn.Linear(4, 1), loss, {"d": it}, 100, lr=0.01, every=10, callback=cb)
    assert seen == [10, 20, 30] and res.steps_run == 30 and res.stopped_early


def test_divergence_is_a_result_not_a_crash():
    it, _ = _regression()
    ascent = lambda m, b, s: -(m(b["d"][0]) ** 2).mean()  # noqa: E731  unbounded below
    res = optimize(torch.nn.Linear(4, 1), ascent, {"d": it}, 10_000, lr=1.0, grad_clip=0, max_abs_loss=1e6)
    assert res.status == "diverged" and res.steps_run < 10_000
    nan = lambda m, b, s: m(b["d"][0]).mean() * float("nan")  # noqa: E731
    res = optimize(torch.nn.Linear(4, 1), nan, {"d": it}, 5, lr=0.1)
    assert res.status == "diverged" and res.steps_run == 0 and math.isnan(res.losses[-1])


def test_ema_weights_lag_the_raw_weights():
    it, loss = _regression()
    raw, ema = torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)
    ema.load_state_dict(raw.state_dict())
    optimize(raw, loss, {"d": it}, 50, lr=0.05, seed=1)
    it, loss = _regression()
    optimize(ema, loss, {"d": it}, 50, lr=0.05, seed=1, ema=0.9)
    assert not torch.allclose(raw.weight, ema.weight)


def test_after_clip_hook_sees_the_clipped_gradients_and_can_mask_them():
    """SalUn's order: backward, clip the norm, mask, step. The hook sees gradients already clipped."""
    it, loss = _regression()
    norms = []

    def mask(params):
        norms.append(float(torch.cat([p.grad.flatten() for p in params]).norm()))
        params[0].grad[:, :2] = 0  # freeze two inputs' weights

    model = torch.nn.Linear(4, 1)
    before = model.weight.detach().clone()
    optimize(model, loss, {"d": it}, 20, lr=0.05, grad_clip=0.01, after_clip=mask)
    assert torch.equal(model.weight[:, :2], before[:, :2]) and not torch.equal(model.weight[:, 2:], before[:, 2:])
    assert len(norms) == 20 and max(norms) <= 0.01 + 1e-6  # unclipped, this loss's gradient norm is far above


def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does():
    """Same batches, same noise, same Adam moments and EMA: resuming from a saved state changes nothing."""
    def setup():
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        g = torch.Generator().manual_seed(2)
        x = torch.randn(512, 4, generator=g)

        def batches():  # a seeded stream: position matters
            while True:
                idx = torch.randint(0, 512, (32,), generator=g)
                yield x[idx], x[idx].sum(1)

        def loss(m, b, s):  # global-RNG noise, like the denoising loss
            xb, yb = b["d"]
            return torch.nn.functional.mse_loss(m(xb + 0.1 * torch.randn_like(xb)).squeeze(1), yb)

        return model, {"d": batches()}, loss

    model, streams, loss = setup()
    states = []
    full = optimize(model, loss, streams, 40, lr=0.01, ema=0.9, seed=3, save=states.append, save_every=15)
    assert [s.step for s in states] == [15, 30]

    resumed_model, streams, loss = setup()
    res = optimize(resumed_model, loss, streams, 40, lr=0.01, ema=0.9, seed=3, resume=states[0])
    assert res.steps_run == 40 and res.losses == full.losses
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
