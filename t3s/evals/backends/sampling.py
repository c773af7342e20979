"""How to sample responses (:class:`SamplingParams`), apart from the backends so task specs load without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SamplingParams"]


@dataclass
class SamplingParams:
    """How to sample: ``n`` samples per prompt; ``temperature == 0`` means greedy decoding.

    ``top_k`` of None or 0 disables top-k filtering; ``top_p == 1`` disables nucleus filtering.
    ``seed`` makes sampling reproducible (for a given batch composition and backend).
    """

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int | None = None
    max_new_tokens: int = 32768
    seed: int = 0

    def __post_init__(self) -> None:
        for name, kinds in (("n", (int,)), ("temperature", (int, float)), ("top_p", (int, float)),
                            ("top_k", (int, type(None))), ("max_new_tokens", (int,)), ("seed", (int,))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ValueError(f"{name} must be a number, got {type(value).__name__} {str(value)[:40]!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        """True when decoding is greedy (temperature 0)."""
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for logging / JSON)."""
        return asdict(self)
