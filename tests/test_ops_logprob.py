"""Tests for the chunked per-token log-prob kernel (t3s.ops.token_logprobs) against naive PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from t3s.ops import token_logprobs

N, H, V = 37, 16, 53  # N deliberately not a multiple of the chunk sizes below


def _inputs(
    n: int = N, h: int = H, v: int = V, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=gen, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()
    bias = torch.randn(v, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=gen)
    return hidden, weight, bias, targets


def _naive(hidden: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None) -> Tensor:
    logits = F.linear(hidden, weight, bias).float()
    return torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)


def _naive_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    logp = torch.log_softmax(F.linear(hidden, weight, bias).float(), -1)
    return -(logp.exp() * logp).sum(-1)


def _grads(out: Tensor, upstream: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    return torch.autograd.grad(out, tensors, grad_outputs=upstream)


@pytest.mark.parametrize("chunk_size", [1, 5, 16, 37, 2048])
@pytest.mark.parametrize("use_bias", [False, True])
def test_forward_and_grads_match_naive(chunk_size: int, use_bias: bool) -> None:
    hidden, weight, bias, targets = _inputs()
    b = bias if use_bias else None
    upstream = torch.randn(N, generator=torch.Generator().manual_seed(1))

    ours = token_logprobs(hidden, weight, targets, bias=b, chunk_size=chunk_size)
    ref = _naive(hidden, weight, targets, b)
    assert ours.dtype == torch.float32 and ours.shape == (N,)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)

    params = (hidden, weight, bias) if use_bias else (hidden, weight)
    for g_ours, g_ref in zip(_grads(ours, upstream, *params), _grads(ref, upstream, *params)):
        assert g_ours.dtype == g_ref.dtype
        torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-5)


def test_logprobs_are_valid_log_probabilities() -> None:
    hidden, weight, _, _ = _inputs(n=4, v=7)
    # Scoring every vocabulary entry for each row must give a distribution summing to 1.
    rows = hidden.detach().repeat_interleave(7, dim=0)
    targets = torch.arange(7).repeat(4)
    lp = token_logprobs(rows, weight.detach(), targets, chunk_size=3).view(4, 7)
    assert (lp <= 0).all()
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(4), atol=1e-6, rtol=0)


def test_entropy_matches_naive_and_is_detached() -> None:
    hidden, weight, bias, targets = _inputs()
    lp, ent = token_logprobs(hidden, weight, targets, bias=bias, chunk_size=8, with_entropy=True)
    torch.testing.assert_close(ent, _naive_entropy(hidden, weight, bias).detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lp, _naive(hidden, weight, targets, bias), atol=1e-5, rtol=1e-5)
    assert ent.dtype == torch.float32 and not ent.requires_grad
    assert lp.requires_grad
    # Entropy of a V-way distribution lies in [0, log V].
    assert (ent >= 0).all() and (ent <= torch.log(torch.tensor(float(V))) + 1e-5).all()
    # Backward through the logprobs still works when the entropy was requested.
    lp.sum().backward()
    assert hidden.grad is not None and weight.grad is not None and bias.grad is not None


def test_entropy_of_uniform_distribution_is_log_v() -> None:
    hidden = torch.zeros(3, H)
    weight = torch.randn(V, H)
    _, ent = token_logprobs(hidden, weight, torch.zeros(3, dtype=torch.long), with_entropy=True)
    torch.testing.assert_close(ent, torch.full((3,), float(torch.log(torch.tensor(float(V))))))


def test_empty_input() -> None:
    hidden = torch.zeros(0, H, requires_grad=True)
    weight = torch.randn(V, H, requires_grad=True)
    bias = torch.randn(V, requires_grad=True)
    targets = torch.zeros(0, dtype=torch.long)
    lp, ent = token_logprobs(hidden, weight, targets, bias=bias, with_entropy=True)
    assert lp.shape == (0,) and ent.shape == (0,) and lp.dtype == torch.float32
    lp.sum().backward()
    assert hidden.grad is not None and hidden.grad.shape == (0, H)
    assert weight.grad is not None and torch.count_nonzero(weight.grad) == 0
    assert bias.grad is not None and torch.count_nonzero(bias.grad) == 0


def test_no_grad_path() -> None:
    hidden, weight, bias, targets = _inputs()
    with torch.no_grad():
        lp, ent = token_logprobs(hidden, weight, targets, bias=bias, chunk_size=10, with_entropy=True)
    assert not lp.requires_grad and lp.grad_fn is None and not ent.requires_grad
    torch.testing.assert_close(lp, _naive(hidden, weight, targets, bias).detach(), atol=1e-5, rtol=1e-5)
    # Plain tensors without requires_grad take the same forward-only path.
    lp2 = token_logprobs(hidden.detach(), weight.detach(), targets, bias=bias.detach(), chunk_size=10)
    assert lp2.grad_fn is None
    torch.testing.assert_close(lp2, lp, atol=0, rtol=0)


def test_only_some_inputs_require_grad() -> None:
    hidden, weight, _, targets = _inputs()
    frozen_weight = weight.detach()
    upstream = torch.randn(N)
    (g_ours,) = _grads(token_logprobs(hidden, frozen_weight, targets, chunk_size=6), upstream, hidden)
    (g_ref,) = _grads(_naive(hidden, frozen_weight, targets), upstream, hidden)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-5, rtol=1e-5)


def test_bf16_close_to_fp32_reference() -> None:
    hidden, weight, bias, targets = _inputs(n=64, h=32, v=100)
    h16 = hidden.detach().bfloat16().requires_grad_()
    w16 = weight.detach().bfloat16().requires_grad_()
    upstream = torch.randn(64, generator=torch.Generator().manual_seed(2))

    lp16 = token_logprobs(h16, w16, targets, chunk_size=24)
    assert lp16.dtype == torch.float32
    # Reference: the same bf16-rounded inputs, evaluated in fp32.
    h32 = h16.detach().float().requires_grad_()
    w32 = w16.detach().float().requires_grad_()
    ref = _naive(h32, w32, targets)
    torch.testing.assert_close(lp16, ref, atol=5e-2, rtol=2e-2)

    g_h16, g_w16 = _grads(lp16, upstream, h16, w16)
    g_h32, g_w32 = _grads(ref, upstream, h32, w32)
    assert g_h16.dtype == torch.bfloat16 and g_w16.dtype == torch.bfloat16
    torch.testing.assert_close(g_h16.float(), g_h32, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(g_w16.float(), g_w32, atol=5e-2, rtol=5e-2)
    # And it agrees with the naive bf16 HF-style computation (bf16 matmul, fp32 log-softmax).
    torch.testing.assert_close(lp16, _naive(h16, w16, targets), atol=1e-5, rtol=1e-5)


def test_mixed_dtypes_return_grads_in_input_dtypes() -> None:
    hidden, weight, _, targets = _inputs()
    h16 = hidden.detach().bfloat16().requires_grad_()
    lp = token_logprobs(h16, weight, targets, chunk_size=7)  # bf16 hidden, fp32 head -> fp32 matmul
    g_h, g_w = torch.autograd.grad(lp.sum(), (h16, weight))
    assert g_h.dtype == torch.bfloat16 and g_w.dtype == torch.float32
    torch.testing.assert_close(lp, _naive(h16.float(), weight, targets), atol=1e-5, rtol=1e-5)


def test_tied_embedding_gradients_accumulate() -> None:
    torch.manual_seed(3)
    embed = torch.nn.Embedding(V, H)
    ids = torch.randint(0, V, (N,))
    targets = torch.randint(0, V, (N,))

    def loss_with(fn: str) -> tuple[Tensor, Tensor]:
        embed.weight.grad = None
        hidden = torch.tanh(embed(ids))  # the same Parameter is the input embedding and the LM head
        lp = (
            token_logprobs(hidden, embed.weight, targets, chunk_size=8)
            if fn == "ours"
            else _naive(hidden, embed.weight, targets)
        )
        loss = -lp.mean()
        loss.backward()
        assert embed.weight.grad is not None
        return loss.detach(), embed.weight.grad.clone()

    loss_ours, grad_ours = loss_with("ours")
    loss_ref, grad_ref = loss_with("naive")
    torch.testing.assert_close(loss_ours, loss_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad_ours, grad_ref, atol=1e-6, rtol=1e-5)
    # The grad has both contributions: rows of embedded ids get more than the head-only gradient.
    head_only = torch.autograd.grad(
        -token_logprobs(torch.tanh(embed(ids)).detach(), embed.weight, targets).mean(), embed.weight
    )[0]
    assert not torch.allclose(grad_ours[ids], head_only[ids])


def test_ignore_index_rows_get_zero_logprob_and_grad() -> None:
    hidden, weight, _, targets = _inputs()
    targets = targets.clone()
    targets[::3] = -100
    lp = token_logprobs(hidden, weight, targets, chunk_size=10)
    keep = targets != -100
    assert torch.count_nonzero(lp[~keep]) == 0
    torch.testing.assert_close(lp[keep], _naive(hidden[keep], weight, targets[keep]), atol=1e-5, rtol=1e-5)
    (g_h,) = torch.autograd.grad(lp.sum(), hidden)
    assert torch.count_nonzero(g_h[~keep]) == 0


def test_gradcheck_float64() -> None:
    hidden, weight, bias, targets = _inputs(n=5, h=3, v=7, dtype=torch.float64)

    def fn(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return token_logprobs(h, w, targets, bias=b, chunk_size=2)

    assert torch.autograd.gradcheck(fn, (hidden, weight, bias), eps=1e-6, atol=1e-5)


def test_bad_shapes_raise() -> None:
    hidden, weight, _, targets = _inputs()
    with pytest.raises(ValueError):
        token_logprobs(hidden, weight.t(), targets)
    with pytest.raises(ValueError):
        token_logprobs(hidden, weight, targets[:-1])
    with pytest.raises(ValueError):
        token_logprobs(hidden, weight, targets, chunk_size=0)
