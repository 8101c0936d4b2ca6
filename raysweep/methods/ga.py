from .base import Method


class GradientAscent(Method):
    """NegGrad: ``-L(D_u, c_u) + alpha * L(D_r)``. Divergent by construction: the forget term is unbounded below."""

    def prepare(self, model):
        return {"forget": self.ctx.forget_stream(), "retain": self.ctx.retain_stream()}

    def __call__(self, model, batches, step):
        forget = self.denoise(model, *batches["forget"])
        retain = self.denoise_retain(model, *batches["retain"])
        return -forget + self.ctx.cfg.ga.alpha * retain, {"forget": -forget.detach(), "retain": retain.detach()}
