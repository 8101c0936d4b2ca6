"""LoRA for the attacker: DiMRA finetuning only low-rank adapters instead of every weight (a cheaper, more common
relearning threat). The adapters come from ``peft`` (``inject_adapter_in_model``, rank r, alpha = r so the update
is B·A unscaled) on the UNet's attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) and its ResNet
convolutions (``conv1``, ``conv2``): our digit-scale UNets hold most of their weights in convolutions, and LoRA
on attention alone (the usual choice for Stable Diffusion) would leave them nearly untouchable. The base weights
are frozen. Checkpoints store the merged weights of a plain UNet (``merged_state``), loadable like any other."""
from __future__ import annotations

import torch.nn as nn

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def add_lora(model: nn.Module, rank: int) -> nn.Module:
    """Wrap ``model``'s target layers with rank-``rank`` adapters in place; only the adapters train."""
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def merged_state(model: nn.Module) -> dict:
    """The state dict of the plain UNet this model computes: each adapted layer's base weight plus its LoRA
    update, under the layer's own name. A model without adapters: its state dict."""
    if not any("lora_" in name for name, _ in model.named_parameters()):
        return model.state_dict()  # (and peft, an optional dependency, is never imported)
    from peft.tuners.lora import LoraLayer

    adapted = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    state = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}
    for name, m in adapted.items():
        state[f"{name}.weight"] = (m.get_base_layer().weight + m.get_delta_weight("default")).detach()
    return state
