"""The diffusion core: a class-conditional diffusers UNet, the denoising loss, and a CFG sampler.

Conventions (recorded with every result): epsilon prediction; DDPM linear betas; the loss is the *mean* squared
error over pixels (diffusers' convention; the SA/SalUn code sums, a factor C*H*W that rescales lr, alpha, beta);
guidance follows diffusers: ``eps = eps_null + w * (eps_cond - eps_null)`` (w = 1 is plain conditional
sampling; the SalUn code's w = 2 is our 3.0). Index ``K`` of the class embedding is the null class.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from .config import ConfigError, Model, Schedule

# block_out_channels, down blocks, up blocks, layers_per_block, norm groups
PRESETS = {
    # ~0.65 M parameters; at 8x8 one level of downsampling is all the resolution allows.
    "digits": ((32, 64), ("DownBlock2D", "DownBlock2D"), ("UpBlock2D", "UpBlock2D"), 2, 8),
    # the google/ddpm-cifar10-32 layout (attention at 16x16), ~36 M parameters.
    "cifar10": ((128, 256, 256, 256), ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), 2, 32),
    # for tests: seconds on a CPU.
    "tiny": ((16, 32), ("DownBlock2D", "DownBlock2D"), ("UpBlock2D", "UpBlock2D"), 1, 8),
}


class UNet(UNet2DModel):
    """diffusers' UNet2DModel, its ``dtype`` read from one weight. diffusers' walks every submodule (looking for
    layerwise-casting hooks, which raysweep never attaches) twice per forward, 0.4-0.7 ms each at our presets: with
    it gone a CPU forward is 1.05-1.13x and a training step 1.01-1.08x as fast (``bench/unet_dtype.py``; on a GPU, whose
    kernels take less, the share is larger, not yet measured). Same config, state dict and outputs."""

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype


class FactorEmbedding(nn.Module):
    """(object, style) conditioning as the sum of an object and a style embedding, each with its own null, so
    classifier-free guidance can drop either factor or both.

    Index layout (what ``class_labels`` holds): ``o * S + s`` for the K*S conditions, then ``N + o`` = (o, no
    style), ``N + K + s`` = (no object, s), and last ``N + K + S`` = unconditional (``null_class``).
    """

    def __init__(self, objects: int, styles: int, dim: int):
        super().__init__()
        self.objects, self.styles = objects, styles
        self.object = nn.Embedding(objects + 1, dim)
        self.style = nn.Embedding(styles + 1, dim)
        pairs = [(o, s) for o in range(objects) for s in range(styles)]
        table = torch.tensor(pairs + [(o, styles) for o in range(objects)] + [(objects, s) for s in range(styles + 1)])
        self.register_buffer("table", table, persistent=False)  # derived from (K, S): not part of a checkpoint

    @property
    def size(self) -> int:
        return len(self.table)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        idx = self.table[labels]
        return self.object(idx[..., 0]) + self.style(idx[..., 1])

    def drop(self, labels: torch.Tensor, p: float) -> torch.Tensor:
        """Drop the object and the style of each label independently with probability p (CFG training)."""
        idx = self.table[labels]
        o = torch.where(torch.rand(labels.shape, device=labels.device) < p, self.objects, idx[..., 0])
        s = torch.where(torch.rand(labels.shape, device=labels.device) < p, self.styles, idx[..., 1])
        n, k = self.objects * self.styles, self.objects
        both = torch.full_like(labels, self.size - 1)
        return torch.where((o < k) & (s < self.styles), o * self.styles + s,
                           torch.where(o < k, n + o, torch.where(s < self.styles, n + k + s, both)))


def make_unet(cfg: Model, default_preset: str, channels: int, resolution: int, objects: int,
              styles: int = 0) -> UNet2DModel:
    """``objects`` classes; with ``styles`` > 0 the model is conditioned on (object, style) pairs. The preset is
    ``model.preset``, else the dataset's (``raysweep.datasets``)."""
    preset = cfg.preset or default_preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    widths, down, up, layers, groups = PRESETS[preset]
    embeds = objects + 1 if not styles else (objects + 1) * (styles + 1)  # + the null condition(s)
    model = UNet(
        sample_size=resolution, in_channels=channels, out_channels=channels,
        block_out_channels=widths, down_block_types=down, up_block_types=up,
        layers_per_block=layers, norm_num_groups=groups, dropout=cfg.dropout, num_class_embeds=embeds)
    if styles:  # diffusers looks class_labels up in whatever module sits here
        model.class_embedding = FactorEmbedding(objects, styles, model.class_embedding.embedding_dim)
    return model


def null_class(model: UNet2DModel) -> int:
    return model.config.num_class_embeds - 1


def make_scheduler(cfg: Schedule, kind: str = "ddpm"):
    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    return cls(num_train_timesteps=cfg.train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
               beta_schedule="linear", prediction_type="epsilon", clip_sample=True)


class DenoisingLoss:
    """``L(S, c)``: the ordinary epsilon-prediction MSE; with ``label_dropout`` some labels become null (CFG).

    Two options reproduce the originals' conventions where a method needs them: ``pixel_sum`` sums the squared
    error over C*H*W and averages over the batch (the SA / SalUn DDPM code) instead of averaging over everything
    (diffusers'); ``antithetic`` draws half the timesteps and mirrors them, ``t' = T - 1 - t`` (that code's
    variance reduction). ``noise`` draws the noise (EraseDiff's forget term uses uniform noise).
    """

    def __init__(self, schedule: Schedule, label_dropout: float = 0.0, *, pixel_sum: bool = False,
                 antithetic: bool = False, noise=torch.randn_like):
        self.sched = make_scheduler(schedule)
        self.label_dropout, self.pixel_sum, self.antithetic, self.noise = label_dropout, pixel_sum, antithetic, noise

    def timesteps(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        T = self.sched.config.num_train_timesteps
        if not self.antithetic:
            return torch.randint(0, T, (n,), device=device, generator=generator)
        t = torch.randint(0, T, (n // 2 + 1,), device=device, generator=generator)
        return torch.cat([t, T - t - 1])[:n]

    def noised(self, x0: torch.Tensor, generator: torch.Generator | None = None, t: torch.Tensor | None = None):
        """(x_t, t, eps) for a batch, so losses that compare two predictions can share the same noise."""
        t = self.timesteps(x0.shape[0], x0.device, generator) if t is None else t
        eps = torch.randn(x0.shape, device=x0.device, generator=generator) if generator is not None else self.noise(x0)
        return self.sched.add_noise(x0, eps, t), t, eps

    def reduce(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.pixel_sum:
            return (pred - target).square().sum(dim=tuple(range(1, pred.dim()))).mean()
        return F.mse_loss(pred, target)

    def __call__(self, model: UNet2DModel, images: torch.Tensor, labels: torch.Tensor,
                 t: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_dropout > 0:
            labels = drop_labels(model, labels, self.label_dropout)
        x_t, t, eps = self.noised(images, t=t)
        return self.reduce(model(x_t, t, class_labels=labels).sample, eps)


def drop_labels(model: nn.Module, labels: torch.Tensor, p: float) -> torch.Tensor:
    """CFG training: a label becomes null with probability p (each factor on its own for (object, style))."""
    emb = getattr(model, "class_embedding", None)
    if isinstance(emb, FactorEmbedding):
        return emb.drop(labels, p)
    drop = torch.rand(labels.shape, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, null_class(model)), labels)


def guided_eps(model: UNet2DModel, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float,
               batched: bool = True) -> torch.Tensor:
    """Classifier-free guided noise prediction; ``batched`` runs cond and null in one forward of twice the batch."""
    if guidance == 1.0:
        return model(x, t, class_labels=labels).sample
    null = torch.full_like(labels, null_class(model))
    if batched:
        out = model(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([labels, null])).sample
        eps_c, eps_u = out.chunk(2)
    else:
        eps_c = model(x, t, class_labels=labels).sample
        eps_u = model(x, t, class_labels=null).sample
    return eps_u + guidance * (eps_c - eps_u)


# bench/cfg_sampling.py on a 2-core CPU: one doubled forward beats two forwards only for small batches
# (1.15x at 64, 0.97x at 200, 0.91x at 1000; the CPU is already saturated). On a GPU it always wins.
CPU_BATCHED_MAX = 128


def use_batched_cfg(device: torch.device, n: int) -> bool:
    return device.type != "cpu" or n <= CPU_BATCHED_MAX


@torch.no_grad()
def sample(model: UNet2DModel, labels: torch.Tensor, noise: torch.Tensor, *, schedule: Schedule, sampler: str = "ddim",
           steps: int = 25, guidance: float = 1.5, batched: bool | None = None, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] for ``labels`` starting from ``noise`` (same noise + DDIM = same images).

    ``batched=None`` picks the faster CFG path for this device and batch size (``use_batched_cfg``).
    """
    if batched is None:
        batched = use_batched_cfg(noise.device, noise.shape[0])
    sched = make_scheduler(schedule, sampler)
    sched.set_timesteps(steps)
    g = torch.Generator(device=noise.device).manual_seed(seed)  # only DDPM's per-step noise uses it
    was_training = model.training
    model.eval()
    x = noise.clone()
    for t in sched.timesteps:
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        eps = guided_eps(model, x, tt, labels, guidance, batched)
        x = sched.step(eps, t, x, generator=g).prev_sample
    model.train(was_training)
    return x.clamp(-1, 1)
