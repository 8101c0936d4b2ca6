import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from .base import Method


class EraseDiff(Method):
    """Bi-level unlearning (EraseDiff, first-order BOME): ``L_r(theta) + lam * (f(theta) - f(theta_K))``.

    f is the forget objective: predict uniform noise, not the true noise, on D_u. theta_K is K inner SGD steps of
    f from theta, taken on a functional copy; as in BOME it is treated as a constant, so the gradient is
    ``grad L_r + lam * grad f`` and the inner steps measure how far f still is from its inner optimum.
    """

    def prepare(self, model):
        return {"forget": self.ctx.forget_stream(), "retain": self.ctx.retain_stream()}

    def forget_objective(self, model, params, x_t, t, labels, target):
        pred = functional_call(model, params, (x_t, t), {"class_labels": labels}).sample
        return F.mse_loss(pred, target)

    def __call__(self, model, batches, step):
        cfg = self.ctx.cfg.erasediff
        images, labels = batches["forget"]
        x_t, t, _ = self.denoise.noised(images)
        target = torch.rand_like(x_t)  # uniform noise in place of the true noise: the forget target
        objective = lambda p: self.forget_objective(model, p, x_t, t, labels, target)  # noqa: E731
        params = dict(model.named_parameters())
        forget = objective(params)
        inner = {k: v.detach() for k, v in params.items()}
        for _ in range(cfg.inner_steps):
            g = grad(objective)(inner)
            inner = {k: v - cfg.inner_lr * g[k] for k, v in inner.items()}
        with torch.no_grad():
            inner_value = objective(inner)
        retain = self.denoise_retain(model, *batches["retain"])
        gap = forget - inner_value
        return retain + cfg.lam * gap, {"forget": forget.detach(), "inner_gap": gap.detach(),
                                        "retain": retain.detach()}
