"""Optional backend: Liger-Kernel's fused linear cross-entropy (Triton, CUDA only).

``pip install liger-kernel`` to use it (``ARStudent(loss_kernel="liger")``); it is never a
dependency of t3s. It computes the same summed NLL as :func:`t3s.ops.fused_nll.fused_nll_sum`.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

__all__ = ["liger_available", "liger_nll_sum"]


def liger_available() -> bool:
    """True when liger-kernel is importable and a CUDA device is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def liger_nll_sum(hidden: Tensor, weight: Tensor, targets: Tensor, *, bias: Tensor | None = None) -> Tensor:
    """``-sum log softmax(hidden @ weight.T + bias)[targets]`` through Liger's fused kernel (fp32 scalar)."""
    if not hidden.is_cuda:
        raise RuntimeError("loss_kernel='liger' needs CUDA tensors; use 'fused' (the default) on this device")
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        raise RuntimeError("loss_kernel='liger' needs liger-kernel: pip install liger-kernel") from None
    loss_fn = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return loss_fn(weight, hidden, targets.long(), bias).float()
