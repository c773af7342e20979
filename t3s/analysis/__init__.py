"""Analyses on finished runs: residual transfer, reports and trajectory diagnostics.

Everything is imported on first use, so ``t3s report`` loads no torch.
"""

from __future__ import annotations

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(
    __name__,
    {
        ".diagnostics_callback": ("DiagnosticsCallback",),
        ".rrt": ("residual_transfer",),
    },
)
