"""Teacher-forced per-token log-probs of a Hugging Face causal LM, without building full logits.

Shared by training (``ARStudent``) and scoring (``t3s score``) so both compute c_t the same way:
decoder → final hidden states → (chunked) output projection → log-softmax → gather.
"""

from __future__ import annotations

import torch
from torch import nn

from t3s.ops.fused_nll import fused_nll_sum
from t3s.ops.logprob import token_logprobs
from t3s.ops.packed_attention import packed_attention_kwargs

#: Config spellings of weight dtypes (``model.init_args.dtype``, ``t3s score --dtype``).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hidden_states(model: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states ``[R, L, H]`` of (possibly packed) rows.

    Rows are right-padded and every trace (and the padding run) restarts its ``position_ids`` at 0.
    With SDPA / eager attention no mask is passed and transformers builds the block-diagonal causal
    mask from the restarts; with ``flash_attention_2/3`` transformers turns them into varlen
    ``cu_seqlens``; with ``flex_attention`` a sparse document mask is built here
    (:mod:`t3s.ops.packed_attention`), so no trace attends to another in any of them.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    extra = packed_attention_kwargs(model, position_ids)
    return decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False, **extra).last_hidden_state


def logprobs_at(
    model: nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    chunk_size: int = 2048,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """c_t = log p(y_t | y_<t) at the token positions where ``token_mask`` is True.

    ``token_mask`` is indexed by the token being predicted; position 0 of a row is never a target.
    Returns a flat float32 tensor in row-major order of the True positions.
    """
    head = model.get_output_embeddings()
    shifted = token_mask[:, 1:]
    return token_logprobs(
        hidden[:, :-1][shifted],
        head.weight,
        input_ids[:, 1:][shifted],
        bias=getattr(head, "bias", None),
        chunk_size=chunk_size,
        with_entropy=with_entropy,
    )


#: LM-head kernels of the training loss (``ARStudent(loss_kernel=...)``).
LOSS_KERNELS = ("fused", "chunked", "liger")


def nll_sum_at(
    model: nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    chunk_size: int = 2048,
    kernel: str = "fused",
) -> torch.Tensor:
    """``-sum c_t`` over the tokens where ``token_mask`` is True (fp32 scalar, differentiable).

    ``kernel``: ``fused`` (gradients built in the forward pass, 3 matmuls per token, any device),
    ``chunked`` (``-logprobs_at(...).sum()``, recomputes logits in backward, 4 matmuls) or ``liger``
    (Liger-Kernel's fused linear cross-entropy; CUDA and ``pip install liger-kernel``). Only the
    selected tokens go through the LM head.
    """
    head = model.get_output_embeddings()
    shifted = token_mask[:, 1:]
    h, targets, bias = hidden[:, :-1][shifted], input_ids[:, 1:][shifted], getattr(head, "bias", None)
    if kernel == "fused":
        return fused_nll_sum(h, head.weight, targets, bias=bias, chunk_size=chunk_size)
    if kernel == "chunked":
        lp = token_logprobs(h, head.weight, targets, bias=bias, chunk_size=chunk_size, ignore_index=None)
        return -lp.sum()
    if kernel == "liger":
        from t3s.ops.liger import liger_nll_sum

        return liger_nll_sum(h, head.weight, targets, bias=bias)
    raise ValueError(f"unknown loss kernel {kernel!r}; choose one of {', '.join(LOSS_KERNELS)}")


@torch.no_grad()
def sampled_logprob_sum(
    model: nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    token_mask: torch.Tensor,
    sample: int | None,
    *,
    chunk_size: int = 2048,
) -> tuple[float, int]:
    """Estimate ``sum c_t`` over the ``token_mask`` tokens from a no-grad pass over ``sample`` of them.

    The sample is evenly spaced over the masked positions (deterministic); its sum is scaled by
    ``n / sample``. ``sample=None`` scores all ``n`` tokens (exact); ``sample=0`` scores none and
    returns NaN (0.0 when there are no tokens). Returns ``(sum, n)``.
    """
    n = int(token_mask.sum())
    if n == 0:
        return 0.0, 0
    if sample == 0:
        return float("nan"), n
    if sample is not None and sample < n:
        where = token_mask.flatten().nonzero().squeeze(1)
        picked = where[torch.linspace(0, n - 1, sample, device=where.device).round().long()]
        token_mask = torch.zeros(token_mask.numel(), dtype=torch.bool, device=token_mask.device)
        token_mask[picked] = True
        token_mask = token_mask.view_as(input_ids)
    lp = logprobs_at(model, hidden.detach(), input_ids, token_mask, chunk_size=chunk_size)
    return float(lp.sum()) * n / lp.numel(), n
