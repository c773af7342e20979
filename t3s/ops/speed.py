"""Small speed knobs shared by the students: per-layer ``torch.compile`` and fused AdamW on CUDA."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["adamw_speed_kwargs", "compile_decoder_layers"]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The repeated decoder blocks of a Hugging Face causal LM (``model.model.layers`` for Llama/Qwen)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "base_model", model)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} to compile")
    return layers


def compile_decoder_layers(model: nn.Module, **compile_kwargs: Any) -> int:
    """``torch.compile`` every decoder layer in place (one graph, reused by all layers; the first step
    pays the compilation). Returns the number of layers. Compiling layers rather than the whole model keeps
    packed rows' varying lengths, gradient checkpointing and FSDP wrapping working as before."""
    layers = decoder_layers(model)
    compile_kwargs.setdefault("dynamic", True)
    for layer in layers:
        layer.compile(**compile_kwargs)
    return len(layers)


def adamw_speed_kwargs(params: list[torch.Tensor]) -> dict[str, Any]:
    """``{"fused": True}`` when every parameter is a floating CUDA tensor (one kernel per step), else ``{}``."""
    if params and all(p.is_cuda and p.is_floating_point() for p in params):
        return {"fused": True}
    return {}
