import torch
import torch.nn.functional as F

from .base import Method


class SalUn(Method):
    """Swap-label forgetting with a saliency mask (SalUn's DDPM recipe).

    Forget term: ``MSE(eps(x_t, t, c_u), sg[eps(x_t, t, c')])`` with ``c' = (c_u + 1) mod K`` on D_u (for a
    style target the next style, same object: ``Target.swap``), plus ``alpha * L(D_r)``. Only the weights with
    the largest |grad| of the forget term (``mask_fraction`` of all, computed once on the original model) may
    change.
    """

    def forget_loss(self, model, images, labels):
        x_t, t, _ = self.denoise.noised(images)
        with torch.no_grad():
            target = model(x_t, t, class_labels=self.ctx.target.swap(labels)).sample
        return F.mse_loss(model(x_t, t, class_labels=labels).sample, target)

    def prepare(self, model):
        forget = self.ctx.forget_stream()
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) for p in params]
        for _ in range(self.ctx.cfg.salun.mask_batches):
            model.zero_grad(set_to_none=True)
            images, labels = next(forget)
            self.forget_loss(model, images.to(self.ctx.device), labels.to(self.ctx.device)).backward()
            for g, p in zip(grads, params):
                if p.grad is not None:
                    g += p.grad.abs()
        model.zero_grad(set_to_none=True)
        self.masks = top_fraction_masks(grads, self.ctx.cfg.salun.mask_fraction)
        self.params = params
        return {"forget": forget, "retain": self.ctx.retain_stream()}

    def __call__(self, model, batches, step):
        forget = self.forget_loss(model, *batches["forget"])
        retain = self.denoise_retain(model, *batches["retain"])
        return forget + self.ctx.cfg.salun.alpha * retain, {"forget": forget.detach(), "retain": retain.detach()}

    def post_backward(self, model):
        for p, m in zip(self.params, self.masks):
            if p.grad is not None:
                p.grad.mul_(m)


def top_fraction_masks(scores: list[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """0/1 masks keeping exactly ``round(fraction * total)`` entries with the largest scores, over all tensors."""
    flat = torch.cat([s.flatten() for s in scores])
    keep = int(round(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, keep, sorted=False).indices] = True  # exact count, ties broken by topk
    masks, i = [], 0
    for s in scores:
        masks.append(chosen[i:i + s.numel()].view_as(s).to(s.dtype))
        i += s.numel()
    return masks
