"""The fused summed-NLL kernel against the chunked log-prob kernel and plain cross-entropy."""

from __future__ import annotations

import pytest
import torch

from t3s.ops.causal_lm import nll_sum_at
from t3s.ops.fused_nll import fused_nll_sum
from t3s.ops.liger import liger_available, liger_nll_sum
from t3s.ops.logprob import token_logprobs


def _inputs(n=37, h=16, v=101, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=dtype, requires_grad=True) if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, b, targets


@pytest.mark.parametrize("chunk", [1, 8, 1000])
def test_value_and_gradients_match_chunked_kernel(chunk):
    hidden, weight, bias, targets = _inputs()
    fused = fused_nll_sum(hidden, weight, targets, bias=bias, chunk_size=chunk)
    (fused * 0.5).backward()  # a non-unit upstream gradient must scale every input gradient
    got = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    ref = -token_logprobs(hidden, weight, targets, bias=bias, chunk_size=chunk).sum()
    (ref * 0.5).backward()
    assert torch.allclose(fused, ref, rtol=1e-12, atol=1e-10)
    for g, t in zip(got, (hidden, weight, bias)):
        assert torch.allclose(g, t.grad, rtol=1e-10, atol=1e-12)


def test_fp32_matches_cross_entropy_and_gradcheck():
    hidden, weight, bias, targets = _inputs(n=6, h=4, v=9)
    assert torch.autograd.gradcheck(lambda h, w, b: fused_nll_sum(h, w, targets, bias=b, chunk_size=4),
                                    (hidden, weight, bias))
    h32, w32 = hidden.detach().float(), weight.detach().float()
    ce = torch.nn.functional.cross_entropy(h32 @ w32.T + bias.detach().float(), targets, reduction="sum")
    assert torch.allclose(fused_nll_sum(h32, w32, targets, bias=bias.detach().float()), ce, rtol=1e-5)


def test_bf16_autocast_matches_fp32_closely_and_grads_keep_dtypes():
    hidden, weight, _, targets = _inputs(n=64, h=32, v=500, dtype=torch.float32, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fused_nll_sum(hidden, weight, targets, chunk_size=16)
    loss.backward()
    assert loss.dtype == torch.float32 and weight.grad.dtype == torch.float32
    ref = fused_nll_sum(hidden.detach(), weight.detach(), targets)
    assert abs(float(loss) - float(ref)) / float(ref) < 2e-2


def test_empty_selection_keeps_graph_and_no_grad_path():
    hidden, weight, _, targets = _inputs(n=0, bias=False)
    loss = fused_nll_sum(hidden, weight, targets)
    loss.backward()
    assert float(loss) == 0.0 and hidden.grad is not None  # every input stays in the graph (DDP)
    assert weight.grad is not None and float(weight.grad.abs().sum()) == 0.0
    h, w, _, t = _inputs(n=5, bias=False)
    with torch.no_grad():
        assert torch.allclose(fused_nll_sum(h, w, t), -token_logprobs(h, w, t).sum())
    with pytest.raises(ValueError, match="targets must have shape"):
        fused_nll_sum(h, w, t[:3])
    with pytest.raises(ValueError, match="bias must have shape"):  # checked as token_logprobs checks it
        fused_nll_sum(h, w, t, bias=torch.zeros(1))


class _Head(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.head.weight.data.copy_(weight)

    def get_output_embeddings(self):
        return self.head


def test_nll_sum_at_kernels_agree_and_unknown_kernel_is_refused():
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 9, 8, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 30, (2, 9), generator=g)
    mask = torch.rand(2, 9, generator=g) > 0.4
    model = _Head(torch.randn(30, 8, generator=g, dtype=torch.float64)).double()
    fused = nll_sum_at(model, hidden, ids, mask, kernel="fused", chunk_size=3)
    chunked = nll_sum_at(model, hidden, ids, mask, kernel="chunked", chunk_size=3)
    assert torch.allclose(fused, chunked)
    with pytest.raises(ValueError, match="unknown loss kernel"):
        nll_sum_at(model, hidden, ids, mask, kernel="nope")


@pytest.mark.gpu
@pytest.mark.skipif(not liger_available(), reason="needs CUDA and liger-kernel")
def test_liger_backend_matches_fused_kernel_on_cuda():
    hidden, weight, _, targets = _inputs(n=300, h=64, v=1000, dtype=torch.float32, bias=False)
    h, w = hidden.detach().cuda().requires_grad_(), weight.detach().cuda().requires_grad_()
    liger = liger_nll_sum(h, w, targets.cuda())
    liger.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ours = fused_nll_sum(h, w, targets.cuda())
    ours.backward()
    assert torch.allclose(liger, ours, rtol=1e-4)
    assert torch.allclose(gh, h.grad, rtol=1e-3, atol=1e-5) and torch.allclose(gw, w.grad, rtol=1e-3, atol=1e-5)
