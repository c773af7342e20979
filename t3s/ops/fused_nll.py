"""Summed token NLL through the LM head with the gradient computed in the forward pass.

The training loss of an AR student is a *scalar*: ``-sum_t log p(y_t)`` over the selected tokens.
For a scalar, the gradients of the LM-head projection do not depend on anything that happens later
in the graph except one upstream number, so they can be computed chunk by chunk while the logits of
the chunk are still in memory (the idea of Liger's fused linear cross-entropy, written here in plain
torch). Compared with :func:`t3s.ops.logprob.token_logprobs`, which recomputes each chunk's logits
in the backward pass, this saves one of the four ``[n, H] x [H, V]`` matmuls per trained token:
3 instead of 4, the same count as a plain ``nn.Linear`` + ``cross_entropy`` on those tokens.

Memory: one ``[chunk_size, V]`` buffer at a time, plus the weight gradient ``[V, H]`` (fp32) and
the hidden gradient ``[N, H]``, which stay alive from the forward to the backward pass. Tokens that
are not trained never reach this function: a masked token costs nothing in the LM head.

Dtypes follow ``token_logprobs``: the matmuls run in the compute dtype (autocast's, else the
promoted input dtype), the softmax in fp32 (fp64 for fp64 inputs); gradients come back in the
dtype of the tensor they belong to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from t3s.ops.logprob import (
    _acc_dtype,
    _chunk_logits,
    _compute_dtype,
    _forward_chunks,
    backprop_chunk,
    check_head_inputs,
)

__all__ = ["fused_nll_sum"]


class _FusedNLLSum(torch.autograd.Function):
    """``-sum log_softmax(hidden @ W.T + b)[targets]`` with its input gradients built in forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, chunk_size: int,
        compute_dtype: torch.dtype, needs: tuple[bool, bool, bool],
    ) -> Tensor:
        need_h, need_w, need_b = needs
        n = hidden.shape[0]
        acc_dtype = _acc_dtype(compute_dtype)
        w = weight.to(compute_dtype)
        b = bias.to(compute_dtype) if bias is not None else None
        grad_hidden = torch.empty_like(hidden) if need_h else None
        grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_w else None
        grad_bias = torch.zeros(weight.shape[0], dtype=acc_dtype, device=weight.device) if need_b else None
        total = torch.zeros((), dtype=acc_dtype, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                h = hidden[start:stop].to(compute_dtype)
                tgt = targets[start:stop, None]
                logits = _chunk_logits(h, w, b)
                target_logit = logits.gather(1, tgt).squeeze(1)
                row_max = logits.amax(dim=1, keepdim=True)
                probs = logits.sub_(row_max).exp_()  # in place: the raw logits are not needed any more
                sum_exp = probs.sum(dim=1, keepdim=True)
                total += (sum_exp.log().add_(row_max).squeeze(1) - target_logit).sum()
                # d nll / d logits = softmax - onehot(target)
                probs.div_(sum_exp).scatter_add_(1, tgt, torch.full_like(target_logit, -1.0)[:, None])
                if grad_bias is not None:
                    grad_bias += probs.sum(dim=0)
                grad_logits = probs.to(compute_dtype)
                del probs, logits  # in bf16 the fp32 chunk is freed before the matmuls
                backprop_chunk(grad_logits, h, w, slice(start, stop), grad_hidden, grad_weight)
                del grad_logits
        # Saved (not kept on ctx) so autograd frees them after backward unless the graph is retained.
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Any, ...]:
        out = []
        for grad, dtype in zip(ctx.saved_tensors, ctx.dtypes):
            out.append(None if grad is None else (grad * grad_total.to(grad.dtype)).to(dtype))
        return (*out, None, None, None, None)


def fused_nll_sum(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 2048,
) -> Tensor:
    """``-sum_i log softmax(hidden_i @ weight.T + bias)[targets_i]`` as an fp32 (fp64) scalar.

    Every target counts (select the trained tokens before calling). Differentiable w.r.t. ``hidden``,
    ``weight`` and ``bias``, with the same values and gradients as ``-token_logprobs(...).sum()`` at
    three matmuls per token instead of four. Without grad it is a plain chunked forward.
    """
    check_head_inputs(hidden, weight, targets, bias, chunk_size)
    compute_dtype = _compute_dtype(hidden, weight)
    targets = targets.long()
    if hidden.shape[0] == 0:  # still a function of every input, so DDP sees a (zero) gradient for each
        zero = sum(t.sum() for t in (hidden, weight, bias) if t is not None)
        return zero.to(_acc_dtype(compute_dtype)) * 0.0
    inputs = (hidden, weight, bias)
    needs = tuple(t is not None and t.requires_grad for t in inputs)
    if torch.is_grad_enabled() and any(needs):
        return _FusedNLLSum.apply(hidden, weight, bias, targets, chunk_size, compute_dtype, needs)
    logprobs, _, _ = _forward_chunks(hidden, weight, bias, targets, None, chunk_size, compute_dtype, False)
    return -logprobs.sum()
