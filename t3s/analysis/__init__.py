"""Analyses on finished runs: residual transfer, reports and trajectory diagnostics.

Everything is imported on first use, so ``t3s report`` loads no torch.
"""

from __future__ import annotations

from t3s.lazy import lazy_exports

_EXPORTS = {
    "DiagnosticsCallback": "t3s.analysis.diagnostics_callback",
    "residual_transfer": "t3s.analysis.rrt",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
