"""Low-level tensor ops (torch only): memory-lean per-token log-probabilities through an LM head."""

from __future__ import annotations

from t3s.ops.logprob import token_logprobs

__all__ = ["token_logprobs"]
