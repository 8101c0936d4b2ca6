import torch
import torch.nn.functional as F

from ..diffusion import DenoisingLoss, drop_labels, guided_eps
from .base import Method


class SalUn(Method):
    """Saliency unlearning, swap-label ("rl") mode, as SalUn's DDPM code runs it (OPTML-Group/Unlearn-Saliency @
    a6e89fd, ``DDPM/runners/diffusion.py::saliency_unlearn`` and ``::generate_mask``, unchanged since b874ee9)::

        loss = MSE_mean(eps(x_t, t, c_u), sg[eps(x_t, t, c')]) + alpha * L_sum(D_r),   alpha = 1e-3

    - forget term on D_u: ``nn.MSELoss()`` (mean over every element) between the prediction under c_u and the
      detached prediction under ``c' = (c_u + 1) mod K`` (a style target: the next style, ``Target.swap``), same
      x_t and t; each forward drops 10 % of its labels to null on its own (``mode="train"``, cond_drop_prob 0.1);
    - retain term: the denoising loss summed over C*H*W and averaged over the batch, 10 % label dropout;
    - antithetic timesteps, drawn separately for the two terms;
    - the saliency mask, computed once on the original weights: one pass over D_u, the *plain* denoising loss of
      the guided prediction ``(1+w) eps_c - w eps_null`` (w = cond_scale 2 = our guidance 3.0) summed over pixels,
      each batch's gradient clipped to norm ``unlearn.grad_clip`` and summed with its sign; the mask keeps the
      top ``mask_fraction`` (0.5) of ``|sum of gradients|`` over all weights at once;
    - order of a step: backward, clip the gradient norm, multiply by the mask, Adam step (``after_clip``).

    Units: alpha multiplies a pixel-*summed* retain loss. Our DenoisingLoss can sum (``pixel_sum``), so the
    objective is computed exactly in SalUn's units; alpha = 1e-3 means what it means there. (Computed with mean
    losses it would be C*H*W times weaker: 64x on 8x8 digits, 3,072x on CIFAR-10.)
    Original: Adam lr 1e-4, batch 128, 1,000 iterations, no EMA; here lr/batch/steps are ``unlearn.*``.
    """
    section = "salun"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.retain_loss = DenoisingLoss(ctx.cfg.schedule, ctx.cfg.unlearn.label_dropout, pixel_sum=True,
                                         antithetic=True)
        self.forget_noise = DenoisingLoss(ctx.cfg.schedule, antithetic=True)
        self.mask_loss = DenoisingLoss(ctx.cfg.schedule, pixel_sum=True, antithetic=True)

    def unlearning_term(self, model, batches):
        images, labels = batches["forget"]
        x_t, t, _ = self.forget_noise.noised(images)
        p = self.ctx.cfg.unlearn.label_dropout
        target = model(x_t, t, class_labels=drop_labels(model, self.ctx.target.swap(labels), p)).sample.detach()
        return F.mse_loss(model(x_t, t, class_labels=drop_labels(model, labels, p)).sample, target)

    def prepare(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.masks = top_fraction_masks(self.saliency(model), self.s.mask_fraction)
        return {"forget": self.ctx.forget_stream(), "retain": self.ctx.retain_stream()}

    def saliency(self, model) -> list[torch.Tensor]:
        """|sum over D_u's batches of the clipped gradient| of the pixel-summed denoising loss (guided)."""
        ctx = self.ctx
        x, y = ctx.ds.where(ctx.target, True)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(ctx.seed("forget")))
        grads = [torch.zeros_like(p) for p in self.params]
        was_training = model.training
        model.eval()  # generate_mask: mode="test" (no dropout, no label dropout)
        for i in range(0, len(x), ctx.cfg.unlearn.batch_size):
            idx = order[i:i + ctx.cfg.unlearn.batch_size]
            images, labels = x[idx].to(ctx.device), y[idx].to(ctx.device)
            x_t, t, eps = self.mask_loss.noised(images)
            model.zero_grad(set_to_none=True)
            self.mask_loss.reduce(guided_eps(model, x_t, t, labels, self.s.mask_guidance), eps).backward()
            if ctx.cfg.unlearn.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, ctx.cfg.unlearn.grad_clip)
            for g, p in zip(grads, self.params):
                if p.grad is not None:
                    g += p.grad
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        return [g.abs() for g in grads]

    def __call__(self, model, batches, step):
        forget = self.unlearning_term(model, batches)
        retain = self.retain_loss(model, *batches["retain"])
        return forget + self.s.alpha * retain, {"forget": forget.detach(), "retain": retain.detach()}

    def after_clip(self, params):
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
