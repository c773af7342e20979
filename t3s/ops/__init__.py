"""Low-level tensor ops (torch only): memory-lean per-token log-probabilities through an LM head.

``token_logprobs`` is imported on first use, so the torch-free helpers (:mod:`t3s.ops.seeds`) load no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["token_logprobs"]


def __getattr__(name: str) -> Any:
    if name == "token_logprobs":
        from t3s.ops.logprob import token_logprobs

        return token_logprobs
    raise AttributeError(f"module 't3s.ops' has no attribute {name!r}")
