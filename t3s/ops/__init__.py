"""Low-level tensor ops (torch only): memory-lean per-token log-probabilities through an LM head.

``token_logprobs`` is imported on first use, so importing :mod:`t3s.ops.hashing` loads no more than it needs.
Process and file helpers (threads, workers, file modes, config references, seeds) are in :mod:`t3s.runtime`.
"""

from __future__ import annotations

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(__name__, {".logprob": ("token_logprobs",)})
