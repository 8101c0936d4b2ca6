from ..diffusion import DenoisingLoss
from .base import Method


class GradientAscent(Method):
    """NegGrad as SalUn's DDPM code runs it (OPTML-Group/Unlearn-Saliency @ a6e89fd,
    ``DDPM/runners/diffusion.py::saliency_unlearn`` with ``--method ga``)::

        loss = -L_sum(D_u, c_u) + alpha * L_sum(D_r),   alpha = 1e-3

    Both terms are that code's ``noise_estimation_loss_conditional``: squared error summed over C*H*W, averaged
    over the batch, 10 % of labels dropped to null (its ``cond_drop_prob``), antithetic timesteps drawn per term.
    alpha: the flag is shared with SalUn; we take the value its README command and maintainers give (1e-3), not
    the argparse default 1.0. Units: the loss is computed in the original's pixel-summed units, so no conversion
    is needed (Adam's step and the grad-norm clip see the same scale as there). No saliency mask (the baseline
    runs without one). Divergent by construction: the forget term is unbounded below.
    """
    section = "ga"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.loss = DenoisingLoss(ctx.cfg.schedule, ctx.cfg.unlearn.label_dropout, pixel_sum=True, antithetic=True)

    def prepare(self, model):
        return {"forget": self.ctx.forget_stream(), "retain": self.ctx.retain_stream()}

    def unlearning_term(self, model, batches):
        return -self.loss(model, *batches["forget"])

    def __call__(self, model, batches, step):
        forget = self.unlearning_term(model, batches)
        retain = self.loss(model, *batches["retain"])
        return forget + self.s.alpha * retain, {"forget": forget.detach(), "retain": retain.detach()}
