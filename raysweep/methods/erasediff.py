import copy

import torch

from ..data import stream
from ..diffusion import DenoisingLoss
from .base import Method


class EraseDiff(Method):
    """EraseDiff, as its paper-era DDPM code runs it (JingWu321/EraseDiff @ 67bac47,
    ``ddpm/runners/diffusion.py::train_erasediff``; the same algorithm as ``train_ours`` @ 58dd300)::

        loss = L_r + lam * (f(theta) - f_inner),   lam = 0.1 (lambda_bome)

    - f, the forget objective on D_u with its true labels: the model is asked to predict *uniform* noise
      u ~ U[0, 1) (``torch.rand_like``) and x_t is built with that same u: x_t = sqrt(a) x_0 + sqrt(1 - a) u;
    - L_r: the ordinary Gaussian denoising loss on D_r;
    - both per-pixel means (``F.mse_loss``, as there: no conversion), no label dropout (cond_drop_prob 0),
      antithetic timesteps;
    - f_inner: each round starts with K = ``inner_steps`` passes of Adam on f over D_u; the weights are then put
      back and the mean f of the last pass is kept as a constant (BOME's first-order step: no gradient flows
      through it, so the update is grad L_r + lam * grad f). A round is one pass of outer steps over D_u.
      The gap f - f_inner is logged as ``inner_gap``.
    Not copied: there the inner steps share the outer Adam's moments (never reset; a side effect on the outer
    optimiser); here they run on a copy with their own Adam at ``unlearn.lr``. Original: Adam lr 1e-4, clip 1.0,
    EMA 0.99, batch 512 (Feb) / 128 (May), ~200-300 outer steps.
    """
    section = "erasediff"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.forget_loss = DenoisingLoss(ctx.cfg.schedule, antithetic=True, noise=torch.rand_like)
        self.retain_loss = DenoisingLoss(ctx.cfg.schedule, antithetic=True)
        self.inner_value = None

    def prepare(self, model):
        ctx = self.ctx
        x, y = ctx.ds.where(ctx.target, True)
        self.round = max(1, len(x) // ctx.cfg.unlearn.batch_size)  # outer steps per pass over D_u
        self.inner = stream(x, y, ctx.cfg.unlearn.batch_size, ctx.seed("forget") + 1)
        self.inner_value = None
        return {"forget": ctx.forget_stream(), "retain": ctx.retain_stream()}

    def unlearning_term(self, model, batches):
        return self.forget_loss(model, *batches["forget"])

    def inner_solution(self, model) -> float:
        """Mean f over the last of K passes of Adam on a copy of the model."""
        copy_ = copy.deepcopy(model)
        params = [p for p in copy_.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.ctx.cfg.unlearn.lr)
        values = []
        for _ in range(self.s.inner_steps):
            values = []
            for _ in range(self.round):
                images, labels = (v.to(self.ctx.device) for v in next(self.inner))
                loss = self.forget_loss(copy_, images, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                values.append(float(loss.detach()))
        return sum(values) / len(values)

    def __call__(self, model, batches, step):
        if self.inner_value is None or (step - 1) % self.round == 0:
            with torch.random.fork_rng():  # its noise must not shift the outer steps' (resume stays exact)
                torch.manual_seed(self.ctx.seed("forget") + step)
                self.inner_value = self.inner_solution(model)
        forget = self.unlearning_term(model, batches)
        retain = self.retain_loss(model, *batches["retain"])
        gap = forget - self.inner_value
        return retain + self.s.lam * gap, {"forget": forget.detach(), "inner_gap": gap.detach(),
                                           "retain": retain.detach()}
