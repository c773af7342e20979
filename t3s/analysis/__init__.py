"""Analyses on finished runs: residual transfer, reports and trajectory diagnostics."""

from t3s.analysis.diagnostics_callback import DiagnosticsCallback
from t3s.analysis.rrt import residual_transfer

__all__ = ["DiagnosticsCallback", "residual_transfer"]
