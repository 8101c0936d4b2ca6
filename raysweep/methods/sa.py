import torch

from .. import store
from ..data import noise_stream, stream
from ..diffusion import DenoisingLoss
from .base import Method


class SelectiveAmnesia(Method):
    """Selective Amnesia for a class-conditional DDPM, as SA's code runs it (clear-nus/selective-amnesia @
    589e8d4, ``ddpm/runners/diffusion.py::train_forget`` and ``::save_fim``; ``ddpm/functions/losses.py``)::

        loss = L_sum(U[-1,1] images, c_u) + gamma * L_sum(replay) + lam * sum_i F_i (theta_i - theta*_i)^2

    - L_sum: squared error summed over C*H*W, averaged over the batch, no label dropout (cond_drop_prob 0); both
      terms share one antithetic draw of t; a batch holds n replay images and n noise images;
    - replay: ``replay_per_class`` samples per retained condition drawn once from the original model (SA: 500,
      with classifier-free guidance; here the evaluation's sampler and guidance);
    - F: the diagonal empirical Fisher at the original weights, from per-sample gradients of the loss summed over
      pixels *and over every timestep* t = 0..T-1 (one fresh noise each, 10 % label dropout as in ``save_fim``),
      squared, averaged over the samples (SA: the 500-per-class samples of every class, the forgotten one
      included; here the first ``fisher_per_class`` of them, because each sample costs T forward/backward passes);
    - no 1/2 in front of the penalty; gamma = 1, lam = 10, Adam lr 1e-4, clip 1.0, 20k iterations in SA.

    Units: computed in SA's own units (pixel sums; the Fisher of the t- and pixel-summed loss), so lam = 10 means
    what it means there. (With per-pixel-mean losses and a Fisher of batch-mean gradients the penalty would be
    ~(T * C*H*W)^2 times weaker.) Not copied: ``save_fim`` loads its samples with ToTensor() only, i.e. in [0, 1]
    instead of the model's [-1, 1] (a bug; we use the samples as generated), and SA's random horizontal flips of
    replay images (wrong for digits). SA keeps an EMA (0.9999 over 20k steps); at our budgets it would mostly hold
    the original weights, so like the other methods the raw weights are evaluated. The Fisher is cached per
    (original, sampler, settings).
    """
    section = "sa"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.loss = DenoisingLoss(ctx.cfg.schedule, pixel_sum=True, antithetic=True)

    def prepare(self, model):
        ctx, s = self.ctx, self.s
        conds = list(range(ctx.ds.conditions.n))
        images, labels = ctx.sample_original(conds, s.replay_per_class)
        keep = ~ctx.target.mask(labels)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.params]
        self.fisher = self.cached_fisher(model, images, labels)
        bs = ctx.cfg.unlearn.batch_size
        return {"noise": noise_stream(tuple(ctx.ds.train_x.shape[1:]), ctx.target.forget, bs, ctx.seed("noise")),
                "replay": stream(images[keep], labels[keep], bs, ctx.seed("replay"))}

    def cached_fisher(self, model, images, labels) -> list[torch.Tensor]:
        ctx, s = self.ctx, self.s
        first = torch.cat([torch.nonzero(labels == c).flatten()[:s.fisher_per_class] for c in labels.unique()])

        def build():
            return dict(zip(self.names, fisher_diagonal(model, self.params, images[first], labels[first],
                                                        ctx.cfg.schedule, ctx.cfg.unlearn.label_dropout,
                                                        ctx.device))), {"samples": len(first)}

        if ctx.root is None or not ctx.original_key:
            state, _ = build()
        else:
            e = ctx.cfg.eval
            key = {"original": ctx.original_key, "sampler": [e.sampler, e.steps, e.guidance, e.seed],
                   "schedule": [ctx.cfg.schedule.train_timesteps, ctx.cfg.schedule.beta_start,
                                ctx.cfg.schedule.beta_end], "per_class": s.fisher_per_class,
                   "replay_per_class": s.replay_per_class, "seed": ctx.seed("fisher"),
                   "label_dropout": ctx.cfg.unlearn.label_dropout}
            state, _, _ = store.cached_state(ctx.root, "fisher", key, build)
        return [state[n].to(ctx.device) for n in self.names]

    def unlearning_term(self, model, batches, t=None):
        return self.loss(model, *batches["noise"], t=t)

    def __call__(self, model, batches, step):
        x, _ = batches["replay"]
        t = self.loss.timesteps(x.shape[0], x.device)  # one antithetic draw for both terms
        forget = self.unlearning_term(model, batches, t)
        replay = self.loss(model, *batches["replay"], t=t)
        ewc = sum((f * (p - a) ** 2).sum() for f, p, a in zip(self.fisher, self.params, self.anchor))
        return forget + self.s.gamma * replay + self.s.lam * ewc, {
            "forget": forget.detach(), "replay": replay.detach(), "fisher_penalty": ewc.detach()}


def fisher_diagonal(model, params, images, labels, schedule, label_dropout: float, device: str,
                    chunk: int = 250, noise=torch.randn_like) -> list[torch.Tensor]:
    """SA's ``save_fim``: F = mean over samples of (grad of sum_t L_sum(x, t, c))^2, every t of the schedule once,
    model in eval mode. Returns one tensor per parameter. ``noise`` draws eps (a test passes zeros)."""
    loss = DenoisingLoss(schedule, label_dropout, pixel_sum=True, noise=noise)
    T = schedule.train_timesteps
    fisher = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    with torch.random.fork_rng():  # the noise per (sample, t) is fixed (a reproducible cache) and leaves no trace
        torch.manual_seed(0)
        for x, c in zip(images, labels):
            model.zero_grad(set_to_none=True)
            for start in range(0, T, chunk):  # sum over t, chunked to bound memory; gradients accumulate
                t = torch.arange(start, min(T, start + chunk), device=device)
                xs, cs = x[None].expand(len(t), *x.shape).to(device), c.expand(len(t)).to(device)
                (loss(model, xs, cs, t=t) * len(t)).backward()  # L_sum averages over the batch: undo, sum over t
            for f, p in zip(fisher, params):
                if p.grad is not None:
                    f += p.grad.detach() ** 2 / len(images)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return fisher
