"""Attention over packed rows without cross-sample attention: document masks from restarting positions.

A packed row holds several traces back to back; each (and the padding run) restarts its
``position_ids`` at 0. A token may attend to a key iff both belong to the same *document* (the run
since the last restart) and the key is not in the future. Three kernels honour that:

* ``sdpa`` / ``eager`` (the CPU default): transformers materialises the ``[L, L]`` mask per row.
  Correct everywhere, O(L²) memory and no flash kernel.
* ``flash_attention_2`` / ``flash_attention_3`` (CUDA, when the package is installed): transformers
  turns the restarts into varlen ``cu_seqlens``; nothing to build here.
* ``flex_attention`` (CUDA, torch-native, no install): :func:`flex_block_mask` builds a sparse
  ``BlockMask`` from :func:`document_causal_mask_mod`; blocks between two documents are skipped.

``resolve_attn_implementation("auto")`` picks flash 3 → flash 2 → flex on CUDA and SDPA elsewhere.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "dense_document_mask",
    "document_causal_mask_mod",
    "document_ids",
    "flex_block_mask",
    "packed_attention_kwargs",
    "resolve_attn_implementation",
]


def document_ids(position_ids: Tensor) -> Tensor:
    """``[R, L]`` index (from 0 in each row) of the document every token belongs to.

    A new document starts at column 0 and wherever a position is not its left neighbour plus one.
    """
    if position_ids.dim() != 2:
        raise ValueError(f"position_ids must be [rows, length], got shape {tuple(position_ids.shape)}")
    starts = torch.ones_like(position_ids, dtype=torch.long)
    starts[:, 1:] = (position_ids[:, 1:] != position_ids[:, :-1] + 1).long()
    return starts.cumsum(dim=1) - 1


def document_causal_mask_mod(
    position_ids: Tensor, causal: bool = True
) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """FlexAttention ``mask_mod(b, h, q, kv)``: same document and (when ``causal``) ``kv <= q``."""
    docs = document_ids(position_ids)

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        same = docs[b, q] == docs[b, kv]
        return same & (kv <= q) if causal else same

    return mask_mod


def dense_document_mask(position_ids: Tensor, causal: bool = True) -> Tensor:
    """The same predicate materialised: bool ``[R, 1, L, L]``, True where attention is allowed.

    For SDPA/eager with an explicit mask and for tests; O(L²) memory, so not for long rows on GPU.
    ``causal=False``: the whole document (packed rows of a bidirectional diffusion student).
    """
    docs = document_ids(position_ids)
    same = docs[:, :, None] == docs[:, None, :]
    if causal:
        length = docs.shape[1]
        same = same & torch.ones(length, length, dtype=torch.bool, device=docs.device).tril()
    return same[:, None]


def flex_block_mask(position_ids: Tensor, block_size: int = 128, causal: bool = True) -> Any:
    """A FlexAttention ``BlockMask`` of :func:`document_causal_mask_mod` for ``[R, L]`` packed rows."""
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = position_ids.shape
    return create_block_mask(
        document_causal_mask_mod(position_ids, causal), B=rows, H=None, Q_LEN=length, KV_LEN=length,
        device=position_ids.device, BLOCK_SIZE=block_size,
    )


def packed_attention_kwargs(model: torch.nn.Module, position_ids: Tensor) -> dict[str, Any]:
    """Extra decoder kwargs that keep packed traces apart for the model's attention kernel.

    ``{"attention_mask": BlockMask}`` for ``flex_attention``; ``{}`` for the others (transformers derives
    the mask or the varlen boundaries from ``position_ids`` itself).
    """
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "flex_attention":
        causal = getattr(config, "is_causal", True) is not False  # diffusion students are bidirectional
        return {"attention_mask": flex_block_mask(position_ids, causal=causal)}
    return {}


def resolve_attn_implementation(requested: str | None, device: str | torch.device | None = None) -> str | None:
    """Turn ``"auto"`` into a concrete transformers attention kernel for ``device`` (default: CUDA if present).

    CUDA: ``flash_attention_3`` or ``flash_attention_2`` when installed, else ``flex_attention``;
    any other device: ``sdpa``. Other values are returned unchanged.
    """
    if requested != "auto":
        return requested
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type != "cuda":
        return "sdpa"
    if importlib.util.find_spec("flash_attn_interface") is not None:
        return "flash_attention_3"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "flex_attention"
