"""Analyses on finished runs: residual transfer and reports.

``residual_transfer`` is imported on first use, so ``t3s report`` loads no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["residual_transfer"]


def __getattr__(name: str) -> Any:
    if name == "residual_transfer":
        from t3s.analysis.rrt import residual_transfer

        return residual_transfer
    raise AttributeError(f"module 't3s.analysis' has no attribute {name!r}")
