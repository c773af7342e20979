"""Block-diffusion attention masks (LLaDA 2.0): for training on ``[x_t ; x_0]`` and for block-causal decoding.

Every token belongs to the block ``position // block_size`` of its document (absolute positions, prompt
included). Training input is the noisy row ``x_t`` followed by the clean row ``x_0`` (``2L`` tokens, positions
``0..L−1`` twice):

* ``x_t`` attends to ``x_t`` of its own block only (block-diagonal),
* ``x_t`` attends to ``x_0`` of the strictly earlier blocks (the clean context it is conditioned on),
* ``x_0`` attends to ``x_0`` of its own and earlier blocks (block-causal), never to ``x_t``,

and every token only within its own document (``documents``: packed rows; padding is its own document).
Decoding uses the ``x_0`` part alone: block-causal attention over the committed prefix and the block being
decoded, which is why the prefix can be cached.

Masks are boolean (True = may attend); :func:`additive` turns one into the ``[R, 1, Q, K]`` float mask Hugging
Face models accept as a ready 4-D ``attention_mask``.
"""

from __future__ import annotations

import torch

__all__ = ["additive", "block_causal_mask", "block_diffusion_mask", "flex_block_diffusion_mask"]


def block_diffusion_mask(
    position_ids: torch.Tensor, block_size: int, documents: torch.Tensor | None = None
) -> torch.Tensor:
    """``[R, 2L, 2L]`` bool mask of the ``[x_t ; x_0]`` training input (see the module docstring).

    Args:
        position_ids: ``[R, L]`` position of each token within its document (``0..L−1`` for one trace per row).
        block_size: tokens per block.
        documents: ``[R, L]`` document id of each token (packed rows); ``None``: one document per row.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    block = position_ids.long() // block_size
    doc = torch.zeros_like(block) if documents is None else documents.long()
    same_doc = doc[:, :, None] == doc[:, None, :]
    bq, bk = block[:, :, None], block[:, None, :]
    noisy_noisy = same_doc & (bq == bk)
    noisy_clean = same_doc & (bq > bk)
    clean_clean = same_doc & (bq >= bk)
    top = torch.cat([noisy_noisy, noisy_clean], dim=2)
    bottom = torch.cat([torch.zeros_like(clean_clean), clean_clean], dim=2)
    return torch.cat([top, bottom], dim=1)


def flex_block_diffusion_mask(
    position_ids: torch.Tensor, block_size: int, documents: torch.Tensor | None = None
) -> object:
    """The mask of :func:`block_diffusion_mask` as a flex-attention ``BlockMask`` (models loaded with
    ``attn_implementation: flex_attention``): no dense ``[2L, 2L]`` tensor, and fully masked tiles skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    rows, length = position_ids.shape
    block = position_ids.long() // block_size
    doc = torch.zeros_like(block) if documents is None else documents.long()

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q_noisy, k_noisy = q < length, k < length
        qi, ki = q % length, k % length
        bq, bk = block[b, qi], block[b, ki]
        same = doc[b, qi] == doc[b, ki]
        return same & (
            (q_noisy & k_noisy & (bq == bk)) | (q_noisy & ~k_noisy & (bk < bq)) | (~q_noisy & ~k_noisy & (bk <= bq))
        )

    return create_block_mask(
        mask_mod, B=rows, H=None, Q_LEN=2 * length, KV_LEN=2 * length, device=position_ids.device
    )


def block_causal_mask(
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    block_size: int,
    key_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[R, Q, K]`` bool mask for decoding: a query sees every valid key of its own and earlier blocks.

    The queries are the last ``Q`` of the ``K`` keys (a cached prefix, then the queries). ``key_valid``
    (``[R, K]``) marks the real tokens: padding keys are hidden, and a padding query sees only itself (its
    softmax stays finite; its output is never used).
    """
    bq = query_positions.long()[:, :, None] // block_size
    bk = key_positions.long()[:, None, :] // block_size
    mask = bk <= bq
    if key_valid is not None:
        valid = key_valid.bool()
        mask = mask & valid[:, None, :] & valid[:, -query_positions.shape[1] :, None]
    empty = ~mask.any(dim=2)
    if bool(empty.any()):
        offset = key_positions.shape[1] - query_positions.shape[1]
        rows, queries = empty.nonzero(as_tuple=True)
        mask[rows, queries, queries + offset] = True
    return mask


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[R, 1, Q, K]`` additive float mask: 0 where ``mask`` allows attention, the dtype's minimum elsewhere."""
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    out.masked_fill_(~mask, torch.finfo(dtype).min)
    return out[:, None]
