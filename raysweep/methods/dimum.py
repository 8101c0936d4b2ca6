from ..data import alternative_stream, parse_alternative
from .base import Method


class DiMUM(Method):
    """Unlearning by memorization (arXiv 2512.03564): ``L(D_r) + beta * L(D'_u, c_u)``; both ordinary denoising
    losses (per-pixel means, the retain term with the loop's label dropout), so the objective is bounded below and
    converges to a model that draws alternative images for c_u. The paper's code is not public; its units are
    ours, beta = 1.

    D'_u (``dimum.alternative``), relabelled into the target (``Target.relabel``): ``retain`` (retain images),
    ``class:k`` (images of class k), ``style:NAME`` (images in another style), ``generated`` (samples of the
    original model for the retained conditions), ``noise`` (uniform noise).
    """
    section = "dimum"

    def prepare(self, model):
        ctx, d = self.ctx, self.s
        kind, _ = parse_alternative(d.alternative, ctx.target)
        generated = ctx.sample_original(ctx.target.retain, d.generated_per_class) if kind == "generated" else None
        alt = alternative_stream(ctx.ds, ctx.target, d.alternative, ctx.cfg.unlearn.batch_size,
                                 ctx.seed("alternative"), generated)
        return {"alternative": alt, "retain": ctx.retain_stream()}

    def unlearning_term(self, model, batches):
        return self.denoise(model, *batches["alternative"])

    def __call__(self, model, batches, step):
        memorize = self.unlearning_term(model, batches)
        retain = self.denoise_retain(model, *batches["retain"])
        return retain + self.s.beta * memorize, {"forget": memorize.detach(), "retain": retain.detach()}
