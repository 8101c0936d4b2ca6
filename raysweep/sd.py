"""The Stable-Diffusion path: a text-conditioned latent UNet that looks like the class-conditional one.

Each condition of ``Conditions`` becomes the prompt "A {object} image in {style} style."; the empty prompt is
the null condition, last, so ``null_class`` (``num_class_embeds - 1``) and the CFG sampler work unchanged. The
prompts are encoded once by the frozen text encoder: unlearning touches only the UNet, so its embeddings are
constants and a label just selects one. Images live in the VAE's latent space (``LatentCodec``).
"""
from __future__ import annotations

import copy
import json
import re
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .config import Model, RaysweepError
from .target import Conditions

SUBFOLDERS = ("unet", "text_encoder", "tokenizer", "vae")


@dataclass
class SDComponents:
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    vae: AutoencoderKL


def style_words(style: str) -> str:
    """A style's name in a prompt, as UnlearnCanvas fine-tuned its Stable Diffusion: ``Van_Gogh`` -> "Van Gogh",
    its photographs (``Seed_Images``) -> "Photo"."""
    return "Photo" if style == "Seed_Images" else style.replace("_", " ")


def prompts(conds: Conditions) -> list[str]:
    """One prompt per condition index (UnlearnCanvas' template), then "" (the null condition)."""
    out = [""] * conds.n
    for o, obj in enumerate(conds.objects):
        if not conds.factored:
            out[conds.index(o)] = f"A {obj} image."
            continue
        for s, style in enumerate(conds.styles):
            out[conds.index(o, s)] = f"A {obj} image in {style_words(style)} style."
    return out + [""]


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, texts: list[str]) -> torch.Tensor:
    """[len(texts), seq, dim]; padded to max_length like SD's pipelines, so every condition has the same shape."""
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


class TextConditionedUNet(nn.Module):
    """``model(x_t, t, class_labels=y)`` for a ``UNet2DConditionModel``: label y uses prompt embedding y."""

    def __init__(self, unet: UNet2DConditionModel, embeds: torch.Tensor):
        super().__init__()
        if embeds.shape[-1] != unet.config.cross_attention_dim:
            raise RaysweepError(f"prompt embeddings have dim {embeds.shape[-1]}, the UNet expects "
                                f"cross_attention_dim {unet.config.cross_attention_dim}")
        self.unet = unet
        # Non-persistent: checkpoints and functional_call's params are the UNet's weights alone; the embeddings
        # are rebuilt from the frozen text encoder.
        self.register_buffer("embeds", embeds.detach().clone(), persistent=False)
        # The rest of raysweep reads model.config like a UNet2DModel's (num_class_embeds, sample_size, ...).
        self.config = types.SimpleNamespace(**{**unet.config, "num_class_embeds": embeds.shape[0]})

    def forward(self, sample: torch.Tensor, timestep, class_labels: torch.Tensor):
        context = self.embeds[class_labels].to(sample.dtype)
        return self.unet(sample, timestep, encoder_hidden_states=context)


class LatentCodec:
    """Images in [-1, 1] <-> scaled VAE latents; the posterior mean keeps encoding deterministic."""

    def __init__(self, vae: AutoencoderKL, channels: int = 3, batch_size: int = 64):
        self.vae = vae.eval().requires_grad_(False)
        self.channels, self.batch_size = channels, batch_size
        self.scale = vae.config.scaling_factor
        self.shift = vae.config.shift_factor or 0.0  # SD1/2 have none; SD3/Flux VAEs do

    def _batched(self, fn, x: torch.Tensor) -> torch.Tensor:  # bounds memory for evaluation-sized sets
        return torch.cat([fn(chunk) for chunk in x.split(self.batch_size)])

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        def one(x):
            x = x.to(self.vae.device, self.vae.dtype)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # the VAE is RGB; gray repeats
            return (self.vae.encode(x).latent_dist.mean - self.shift) * self.scale
        return self._batched(one, images)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        def one(z):
            x = self.vae.decode(z.to(self.vae.device, self.vae.dtype) / self.scale + self.shift).sample
            return (x.mean(1, keepdim=True) if self.channels == 1 else x).clamp(-1, 1)
        return self._batched(one, latents)


def build_model(components: SDComponents, conds: Conditions, channels: int = 3):
    """(model, codec): the wrapper holds one embedding per condition of ``conds`` plus the null one."""
    components.text_encoder.eval().requires_grad_(False)
    embeds = encode_prompts(components.tokenizer, components.text_encoder, prompts(conds))
    return TextConditionedUNet(components.unet, embeds), LatentCodec(components.vae, channels)


def load_components(path: str, allow_download: bool = False) -> SDComponents:
    """From a local diffusers-layout directory; a hub id only when ``allow_download`` (runs are offline)."""
    root = Path(path)
    if not allow_download:
        if not root.is_dir():
            raise RaysweepError(f"Stable Diffusion weights: no directory {path}; put a diffusers-layout model "
                                f"there ({', '.join(SUBFOLDERS)}) or set allow_download to fetch {path!r} from the hub")
        missing = [s for s in SUBFOLDERS if not (root / s).is_dir()]
        if missing:
            raise RaysweepError(f"Stable Diffusion weights in {path}: missing subfolder(s) {', '.join(missing)}")
    kw = dict(local_files_only=not allow_download)
    return SDComponents(
        unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw),
        text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw),
        tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw),
        vae=AutoencoderKL.from_pretrained(path, subfolder="vae", **kw),
    )


def _tiny_tokenizer(texts: list[str], max_length: int) -> CLIPTokenizer:
    """A CLIP BPE over single ASCII characters, with merges that spell the prompts' words: no download, and
    every ASCII text still tokenizes (merges only join symbols already in the vocabulary)."""
    chars = [chr(c) for c in range(33, 127)]
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    merges = []
    # Longest words first: BPE applies the lowest-ranked merge, so "in" must not split "plain".
    for word in sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower())}, key=lambda w: (-len(w), w)):
        for k in range(1, len(word)):
            left, right = word[:k], word[k] + ("</w>" if k == len(word) - 1 else "")
            merges.append(f"{left} {right}")
            vocab.append(left + right)
    vocab = list(dict.fromkeys(vocab))  # words sharing prefixes add the same symbols
    merges = list(dict.fromkeys(merges))
    with tempfile.TemporaryDirectory() as tmp:  # the file route is the one load_components takes
        Path(tmp, "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
        Path(tmp, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=max_length)


def tiny_components(conds: Conditions, resolution: int = 8, seed: int = 0) -> SDComponents:
    """Randomly initialised SD stand-in for tests: seconds on a CPU, same seed = same weights."""
    tokenizer = _tiny_tokenizer(prompts(conds), max_length=16)
    with torch.random.fork_rng(devices=[]):  # seed without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        vae = AutoencoderKL(  # two blocks = one downsampling: 8x8 images -> 4x4 latents
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=8, sample_size=resolution)
        unet = UNet2DConditionModel(
            sample_size=resolution // 2, in_channels=4, out_channels=4, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    return SDComponents(unet, text_encoder.eval(), tokenizer, vae)


_COMPONENTS: dict[tuple, SDComponents] = {}  # one load per process: the text encoder and VAE never change


def components_for(cfg: Model, conds: Conditions) -> SDComponents:
    key = (cfg.preset, cfg.sd_path, conds)
    if key not in _COMPONENTS:
        _COMPONENTS[key] = (tiny_components(conds) if cfg.preset == "sd-tiny"
                            else load_components(cfg.sd_path, cfg.sd_download))
    return _COMPONENTS[key]


def new_model(cfg: Model, conds: Conditions) -> TextConditionedUNet:
    """A fresh text-conditioned UNet (its own copy of the pretrained or stand-in weights)."""
    c = components_for(cfg, conds)
    return build_model(SDComponents(copy.deepcopy(c.unet), c.text_encoder, c.tokenizer, c.vae), conds)[0]


def codec_for(cfg: Model, conds: Conditions, channels: int) -> LatentCodec:
    return LatentCodec(components_for(cfg, conds).vae, channels)
