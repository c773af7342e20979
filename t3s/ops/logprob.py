"""Chunked per-token log-probabilities through an output projection (LM head).

The textbook way of scoring targets under a language model,
``log_softmax(hidden @ W.T).gather(targets)``, builds an ``[N, V]`` fp32 logits tensor and
autograd keeps one or two more of the same size for the backward pass. With a 150k vocabulary
that is ~0.6 MB per token, i.e. gigabytes for a few thousand tokens.

:func:`token_logprobs` computes the same numbers ``chunk_size`` rows at a time. A custom
:class:`torch.autograd.Function` saves only ``hidden``, ``weight``, ``targets`` and the per-row
logsumexp; the backward pass recomputes each chunk's logits and turns them, in place, into the
gradient of the logits, so the extra memory is about one ``[chunk_size, V]`` fp32 buffer plus
the weight gradient, independent of ``N``.

Dtypes: the projection runs in the inputs' (promoted, or the active autocast) dtype, exactly
like ``nn.Linear`` would, and every chunk of logits is upcast to fp32 before the
logsumexp/softmax, so bf16 models are scored with fp32 numerics (fp64 inputs stay fp64, which
keeps ``torch.autograd.gradcheck`` meaningful). Gradients come back in the dtype of the tensor
they belong to; the weight (and bias) gradient is accumulated over chunks in fp32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["token_logprobs"]


def check_head_inputs(
    hidden: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None, chunk_size: int
) -> None:
    """Refuse (``ValueError``) inputs of the chunked LM-head ops that do not fit: ``hidden [N, H]``,
    ``weight [V, H]``, ``targets [N]``, ``bias [V]`` or None, a positive ``chunk_size``."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"expected hidden [N, H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must have shape [{hidden.shape[0]}], got {tuple(targets.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """Dtype of the projection matmul: the autocast dtype if autocast is on, else the promoted dtype."""
    device_type = hidden.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _acc_dtype(compute_dtype: torch.dtype) -> torch.dtype:
    """Dtype of the softmax math and of the results: fp32, or fp64 for fp64 inputs."""
    return torch.promote_types(compute_dtype, torch.float32)


def _chunk_logits(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """Logits ``[n, V]`` of one chunk, upcast to the accumulation dtype.

    ``h``, ``w`` and ``b`` are already in the compute dtype; no copy is made when that is fp32.
    """
    logits = torch.addmm(b, h, w.t()) if b is not None else h @ w.t()
    return logits.to(_acc_dtype(logits.dtype))


def _safe_targets(targets: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Replace ignored targets by 0 so they can be gathered; also return the ignore mask (or None)."""
    if ignore_index is None:
        return targets, None
    ignored = targets == ignore_index
    return targets.masked_fill(ignored, 0), ignored


def backprop_chunk(
    grad_logits: Tensor, h: Tensor, w: Tensor, rows: slice, grad_hidden: Tensor | None, grad_weight: Tensor | None
) -> None:
    """Add one chunk's ``d/d hidden`` (into ``grad_hidden[rows]``) and ``d/d weight`` from ``d/d logits``.

    ``grad_logits`` and ``h`` are in the compute dtype; ``grad_weight`` is the fp32 (fp64) accumulator.
    """
    if grad_hidden is not None:
        grad_hidden[rows] = grad_logits @ w
    if grad_weight is not None:
        if grad_weight.dtype == h.dtype:
            grad_weight.addmm_(grad_logits.t(), h)
        else:
            grad_weight += grad_logits.t() @ h


def _forward_chunks(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    ignored: Tensor | None,
    chunk_size: int,
    compute_dtype: torch.dtype,
    with_entropy: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Chunked forward: per-row target log-prob, logsumexp and (optionally) entropy, fp32 (fp64) ``[N]``."""
    n = hidden.shape[0]
    device = hidden.device
    acc_dtype = _acc_dtype(compute_dtype)
    logprobs = torch.empty(n, dtype=acc_dtype, device=device)
    lse = torch.empty(n, dtype=acc_dtype, device=device)
    entropy = torch.empty(n, dtype=acc_dtype, device=device) if with_entropy else None
    w = weight.to(compute_dtype)
    b = bias.to(compute_dtype) if bias is not None else None
    with torch.autocast(device.type, enabled=False):
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            logits = _chunk_logits(hidden[start:stop].to(compute_dtype), w, b)
            target_logit = logits.gather(1, targets[start:stop, None]).squeeze(1)
            row_max = logits.amax(dim=1, keepdim=True)
            shifted = logits.sub_(row_max)  # in place: logits are not needed any more
            if entropy is None:
                sum_exp = shifted.exp_().sum(dim=1)
            else:
                probs_unnorm = shifted.exp()
                sum_exp = probs_unnorm.sum(dim=1)
                # H = log Z - E_p[s] with s the shifted logits; 0 * -inf terms are defined as 0.
                weighted = probs_unnorm.mul_(shifted).nan_to_num_(nan=0.0).sum(dim=1)
                del probs_unnorm
                entropy[start:stop] = sum_exp.log() - weighted / sum_exp
            del shifted, logits
            chunk_lse = sum_exp.log_() + row_max.squeeze(1)
            lse[start:stop] = chunk_lse
            logprobs[start:stop] = target_logit - chunk_lse
    if ignored is not None:
        logprobs.masked_fill_(ignored, 0.0)
    return logprobs, lse, entropy


class _TokenLogprobs(torch.autograd.Function):
    """Autograd function behind :func:`token_logprobs` (recomputes chunk logits in backward)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, ignored: Tensor | None,
        chunk_size: int, compute_dtype: torch.dtype, with_entropy: bool,
    ) -> tuple[Tensor, Tensor]:
        logprobs, lse, entropy = _forward_chunks(
            hidden, weight, bias, targets, ignored, chunk_size, compute_dtype, with_entropy
        )
        ctx.save_for_backward(hidden, weight, bias, targets, ignored, lse)
        ctx.chunk_size = chunk_size
        ctx.compute_dtype = compute_dtype
        if entropy is None:
            entropy = logprobs.new_empty(0)
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_logprobs: Tensor | None, _grad_entropy: Tensor | None) -> tuple[Any, ...]:
        hidden, weight, bias, targets, ignored, lse = ctx.saved_tensors
        chunk_size: int = ctx.chunk_size
        compute_dtype: torch.dtype = ctx.compute_dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        nones = (None,) * 5
        if grad_logprobs is None or not (need_h or need_w or need_b):
            return (None, None, None, *nones)

        n = hidden.shape[0]
        acc_dtype = _acc_dtype(compute_dtype)
        grad_out = grad_logprobs.to(acc_dtype)
        if ignored is not None:
            grad_out = grad_out.masked_fill(ignored, 0.0)
        w = weight.to(compute_dtype)
        b = bias.to(compute_dtype) if bias is not None else None
        grad_hidden = torch.empty_like(hidden) if need_h else None
        # fp32 (fp64) accumulators across chunks; with fp32 inputs the matmul accumulates into them directly.
        grad_weight = torch.zeros(weight.shape, dtype=acc_dtype, device=weight.device) if need_w else None
        grad_bias = torch.zeros(weight.shape[0], dtype=acc_dtype, device=weight.device) if need_b else None

        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                h = hidden[start:stop].to(compute_dtype)
                g = grad_out[start:stop]
                # d logp_t / d z_j = 1[j == t] - softmax(z)_j, scaled by the upstream grad g.
                grad_logits = _chunk_logits(h, w, b)
                grad_logits.sub_(lse[start:stop, None]).exp_().mul_(-g[:, None])
                grad_logits.scatter_add_(1, targets[start:stop, None], g[:, None])
                if grad_bias is not None:
                    grad_bias += grad_logits.sum(dim=0)
                backprop_chunk(grad_logits.to(compute_dtype), h, w, slice(start, stop), grad_hidden, grad_weight)

        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            *nones,
        )


def token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_size: int = 2048,
    with_entropy: bool = False,
    ignore_index: int | None = -100,
) -> Tensor | tuple[Tensor, Tensor]:
    """Per-token ``log softmax(hidden @ weight.T + bias)[target]`` without materialising ``[N, V]`` logits.

    Args:
        hidden: ``[N, H]`` final hidden states (any float dtype).
        weight: ``[V, H]`` output projection (LM head); may be tied to the input embedding.
        targets: ``[N]`` long token ids to score.
        bias: optional ``[V]`` output bias.
        chunk_size: rows processed at a time; memory grows with ``chunk_size * V``.
        with_entropy: also return the predictive entropy of every row.
        ignore_index: targets equal to this value get log-prob 0 and no gradient
            (``None`` disables the check).

    Returns:
        fp32 ``[N]`` log-probabilities (fp64 if the inputs are fp64), differentiable w.r.t.
        ``hidden``, ``weight`` and ``bias``. With ``with_entropy=True`` a tuple
        ``(logprobs, entropy)``; the entropy (nats, same dtype and shape) is detached.
    """
    check_head_inputs(hidden, weight, targets, bias, chunk_size)
    compute_dtype = _compute_dtype(hidden, weight)
    targets = targets.long()
    targets, ignored = _safe_targets(targets, ignore_index)
    inputs = (hidden, weight) if bias is None else (hidden, weight, bias)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        logprobs, entropy = _TokenLogprobs.apply(
            hidden, weight, bias, targets, ignored, chunk_size, compute_dtype, with_entropy
        )
    else:
        logprobs, _, entropy = _forward_chunks(
            hidden, weight, bias, targets, ignored, chunk_size, compute_dtype, with_entropy
        )
    if with_entropy:
        assert entropy is not None
        return logprobs, entropy
    return logprobs
