"""Trajectory scoring: per-token log-probs at θ_0 and θ_b, and the cache T3S reads."""

from t3s.scoring.scorer import TokenizerMismatchError, check_tokenizer_matches, score, summarize
from t3s.selection.scores import ScoreCache, ScoreCacheError

__all__ = ["ScoreCache", "ScoreCacheError", "TokenizerMismatchError", "check_tokenizer_matches", "score", "summarize"]
