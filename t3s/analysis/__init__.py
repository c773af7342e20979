"""Analyses on finished runs: residual transfer and reports."""

from t3s.analysis.rrt import residual_transfer

__all__ = ["residual_transfer"]
