import torch
import torch.nn.functional as F

from ..diffusion import guided_eps, make_scheduler, null_class
from .base import Method


def esd_target(original, x_t, t, labels_u, eta: float) -> torch.Tensor:
    """``eps*(x_t, t, null) - eta * (eps*(x_t, t, c_u) - eps*(x_t, t, null))`` from the frozen original."""
    with torch.no_grad():
        cond = original(x_t, t, class_labels=labels_u).sample
        null = original(x_t, t, class_labels=torch.full_like(labels_u, null_class(original))).sample
    return null - eta * (cond - null)


class ESD(Method):
    """Erased Stable Diffusion for a class label, after ESD's own code (rohitgandikota/erasing @ 2704f9a,
    ``train-scripts/train-esd.py::train_esd``) with the DDPM port's negative guidance (SalUn's DDPM code, commits
    9576623-9138c17, ``train_esd``: ``--negative_guidance`` 7.5)::

        loss = MSE_mean(eps(z, t, c_u), eps*(z, t, null) - eta * (eps*(z, t, c_u) - eps*(z, t, null)))

    Each step draws t_enc uniformly from the ``sample_steps`` (50) DDIM steps and denoises fresh Gaussian noise
    for t_enc steps *with the model being trained* (guidance ``start_guidance`` 3, label c_u, no gradient); z is
    that partly denoised sample; eps* is the frozen original. One sample per step (ESD's batch 1).
    Choice where the originals are broken: ESD's SD code pairs z with a timestep drawn from
    [20 t_enc, 20 (t_enc + 1)) although z, after t_enc of 50 steps, sits near timestep 1000 - 20 t_enc; SalUn's
    DDPM port either feeds a fully denoised sample at a random t or steps the optimiser before backward. Here z is
    paired with the timestep it is at. Units: per-pixel mean in the original too (``nn.MSELoss``): no conversion.
    Original lr: 1e-5 (SD) / 1e-4 (DDPM port); here ``unlearn.lr``.
    """
    section = "esd"

    def prepare(self, model):
        return {"esd": start_stream(tuple(self.ctx.ds.train_x.shape[1:]), self.ctx.target.forget, self.s.batch_size,
                                    self.s.sample_steps, self.ctx.seed("esd"))}

    def partly_denoised(self, model, noise, labels, t_enc: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, its timestep) after t_enc DDIM steps of the model from ``noise``."""
        sched = make_scheduler(self.ctx.cfg.schedule, "ddim")
        sched.set_timesteps(self.s.sample_steps)
        was_training = model.training
        model.eval()
        z = noise
        with torch.no_grad():
            for t in sched.timesteps[:t_enc]:
                tt = torch.full((z.shape[0],), int(t), device=z.device, dtype=torch.long)
                z = sched.step(guided_eps(model, z, tt, labels, self.s.start_guidance), t, z).prev_sample
        model.train(was_training)
        return z, torch.full((z.shape[0],), int(sched.timesteps[t_enc]), device=z.device, dtype=torch.long)

    def unlearning_term(self, model, batches):
        noise, packed = batches["esd"]  # packed = label * sample_steps + t_enc
        labels, t_enc = packed // self.s.sample_steps, int(packed[0] % self.s.sample_steps)
        z, t = self.partly_denoised(model, noise, labels, t_enc)
        target = esd_target(self.ctx.original, z, t, labels, self.s.eta)
        return F.mse_loss(model(z, t, class_labels=labels).sample, target)

    def __call__(self, model, batches, step):
        forget = self.unlearning_term(model, batches)
        return forget, {"forget": forget.detach()}


def start_stream(shape: tuple[int, ...], forget: list[int], batch_size: int, sample_steps: int, seed: int):
    """Batches of (Gaussian start noise, label * sample_steps + t_enc): one t_enc per batch, labels from the target's
    conditions."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(forget, dtype=torch.int64)
    while True:
        noise = torch.randn((batch_size, *shape), generator=g)
        labels = pool[torch.randint(len(pool), (batch_size,), generator=g)]
        t_enc = int(torch.randint(sample_steps, (1,), generator=g))
        yield noise, labels * sample_steps + t_enc
