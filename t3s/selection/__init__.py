"""Token selection: which response tokens enter the loss (AR) or are always corrupted (diffusion)."""

from t3s.selection.base import SelectionContext, SelectionError, TokenSelectionStrategy
from t3s.selection.scores import ScoreCache, ScoreCacheError
from t3s.selection.strategies import (
    T3S,
    ConfidenceMask,
    ExcessLoss,
    FullSFT,
    InverseT3S,
    RandomMask,
    ScoredStrategy,
    StudentEntropy,
)

__all__ = [
    "ScoreCache",
    "ScoreCacheError",
    "ScoredStrategy",
    "SelectionContext",
    "SelectionError",
    "TokenSelectionStrategy",
    "FullSFT",
    "T3S",
    "InverseT3S",
    "ConfidenceMask",
    "RandomMask",
    "ExcessLoss",
    "StudentEntropy",
]
