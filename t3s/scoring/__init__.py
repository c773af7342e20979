"""Trajectory scoring: per-token log-probs at θ_0 and θ_b, and the cache T3S reads.

The names below are imported on first use, so the cache summary's Markdown form
(:mod:`t3s.scoring.summary_text`, used by ``t3s report``) loads no torch.
"""

from __future__ import annotations

from t3s.lazy import lazy_exports

_EXPORTS = {
    "TokenizerMismatchError": "t3s.scoring.scorer",
    "check_tokenizer_matches": "t3s.scoring.scorer",
    "score": "t3s.scoring.scorer",
    "summarize": "t3s.scoring.scorer",
    "ScoreCache": "t3s.selection.scores",
    "ScoreCacheError": "t3s.selection.scores",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
