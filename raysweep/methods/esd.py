import torch
import torch.nn.functional as F

from ..data import stream
from ..diffusion import null_class
from .base import Method


def esd_target(original, x_t, t, labels_u, eta: float) -> torch.Tensor:
    """``eps*(x_t, t, null) - eta * (eps*(x_t, t, c_u) - eps*(x_t, t, null))`` from the frozen original."""
    with torch.no_grad():
        cond = original(x_t, t, class_labels=labels_u).sample
        null = original(x_t, t, class_labels=torch.full_like(labels_u, null_class(original))).sample
    return null - eta * (cond - null)


class ESD(Method):
    """Erased Stable Diffusion for a class label: regress ``eps(x_t, t, c_u)`` onto a negatively guided target.

    x_0 are samples of c_u from the original model (ESD trains on the model's own generations), made once.
    """

    def prepare(self, model):
        ctx = self.ctx
        forget = ctx.target.forget
        images, labels = ctx.sample_original(forget, -(-ctx.cfg.esd.images // len(forget)))
        return {"esd": stream(images, labels, ctx.cfg.unlearn.batch_size, ctx.cfg.unlearn.seed + 5)}

    def __call__(self, model, batches, step):
        images, labels = batches["esd"]
        x_t, t, _ = self.denoise.noised(images)
        target = esd_target(self.ctx.original, x_t, t, labels, self.ctx.cfg.esd.eta)
        forget = F.mse_loss(model(x_t, t, class_labels=labels).sample, target)
        return forget, {"forget": forget.detach()}
