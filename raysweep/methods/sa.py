import torch

from ..data import noise_stream, stream
from .base import Method


class SelectiveAmnesia(Method):
    """``L(uniform noise, c_u) + gamma * L(replay) + lam * sum_i F_i (theta_i - theta*_i)^2``.

    Replay: samples of the original model for the other classes (generative replay). F: diagonal empirical
    Fisher of the denoising loss at the original weights, over replay batches (SA uses the ELBO; for DDPM that
    is this loss up to weighting).
    """

    def prepare(self, model):
        ctx, sa = self.ctx, self.ctx.cfg.sa
        bs = ctx.cfg.unlearn.batch_size
        images, labels = ctx.sample_original(ctx.target.retain, sa.replay_per_class)
        replay = stream(images, labels, bs, ctx.cfg.unlearn.seed + 2)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.params]
        self.fisher = [torch.zeros_like(p) for p in self.params]
        fisher_data = stream(images, labels, bs, ctx.cfg.unlearn.seed + 3)
        for _ in range(sa.fisher_batches):
            model.zero_grad(set_to_none=True)
            x, y = next(fisher_data)
            self.denoise(model, x.to(ctx.device), y.to(ctx.device)).backward()
            for f, p in zip(self.fisher, self.params):
                if p.grad is not None:
                    f += p.grad.detach() ** 2 / sa.fisher_batches
        model.zero_grad(set_to_none=True)
        return {"noise": noise_stream(tuple(ctx.ds.train_x.shape[1:]), ctx.target.forget, bs, ctx.cfg.unlearn.seed + 4),
                "replay": replay}

    def __call__(self, model, batches, step):
        sa = self.ctx.cfg.sa
        forget = self.denoise(model, *batches["noise"])
        replay = self.denoise_retain(model, *batches["replay"])
        ewc = sum((f * (p - a) ** 2).sum() for f, p, a in zip(self.fisher, self.params, self.anchor))
        return forget + sa.gamma * replay + sa.lam * ewc, {"forget": forget.detach(), "replay": replay.detach(),
                                                            "fisher_penalty": ewc.detach()}
