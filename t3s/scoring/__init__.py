"""Trajectory scoring: per-token log-probs at θ_0 and θ_b, and the cache T3S reads.

The names below are imported on first use, so the cache summary's Markdown form
(:mod:`t3s.scoring.summary_text`, used by ``t3s report``) loads no torch.
"""

from __future__ import annotations

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(
    __name__,
    {
        ".scorer": ("TokenizerMismatchError", "check_tokenizer_matches", "score", "summarize"),
        "t3s.selection.scores": ("ScoreCache", "ScoreCacheError"),
    },
)
