"""Trajectory scoring: per-token log-probs at θ_0 and θ_b, and the cache T3S reads."""

from t3s.scoring.cache import ScoreCache, ScoreCacheError
from t3s.scoring.scorer import TokenizerMismatchError, check_tokenizer_matches, score, summarize

__all__ = ["ScoreCache", "ScoreCacheError", "TokenizerMismatchError", "check_tokenizer_matches", "score", "summarize"]
