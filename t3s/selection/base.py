"""The token-selection interface both student families talk to.

A strategy turns per-token signals into the two things students need:

* ``loss_mask`` (AR students): which response tokens enter the cross-entropy. Masked tokens stay in
  the context; they only leave the loss.
* ``must_corrupt`` (diffusion students): which response tokens are always corrupted, unioned with
  the random corruption mask;
* ``keep_visible`` (diffusion students): which response tokens are kept out of the random corruption
  (the T3S anchors; the student's ``anchor_visibility`` says how strictly).

All tensors are ``[rows, length]`` and indexed by *token* position (the token being predicted), not
by the position of the hidden state that predicts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from t3s.errors import T3SError

#: Signals computed by the student during its forward pass (the others, ``scores``, come from a cache).
FORWARD_SIGNALS = frozenset({"student_logprob", "entropy", "reference_logprob"})


class SelectionError(T3SError, ValueError):
    """A strategy cannot work because a signal it needs is missing or malformed."""


@dataclass
class SelectionContext:
    """What a student hands a strategy for one micro-batch.

    Attributes:
        response_mask: bool, True at tokens that are trained targets (labels != -100).
        trace_index: dataset index of the trace owning each token (-1 on padding).
        position_ids: position of each token inside its trace.
        student_logprob: c_t under the current student (online strategies only).
        entropy: the student's predictive entropy at each token (online strategies only).
        reference_logprob: c_t under the frozen reference model (``ExcessLoss`` only).
    """

    response_mask: torch.Tensor
    trace_index: torch.Tensor
    position_ids: torch.Tensor
    student_logprob: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    reference_logprob: torch.Tensor | None = None

    def require(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        if value is None:
            raise SelectionError(f"this strategy needs the online signal '{name}' but the student did not provide it")
        return value


class TokenSelectionStrategy:
    """Base class: every response token is trained and nothing is force-corrupted.

    Subclasses set ``requires`` and override ``loss_mask`` and/or ``must_corrupt``. A strategy that
    needs a forward pass of the student to choose (``needs_forward_signals``) also overrides ``budget``
    so students can normalise the loss before the forward pass. ``name`` is the run-directory name of
    a phase trained with it and ``label`` its name in tables.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()
        if "label" not in cls.__dict__:
            cls.label = cls.__name__

    @property
    def needs_forward_signals(self) -> bool:
        """True if the mask depends on signals the student computes during its forward pass."""
        return bool(self.requires & FORWARD_SIGNALS)

    def setup(self, data_fingerprint: dict[str, Any]) -> None:
        """Bind to the training data (load and validate caches). Called once before training."""

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        """Tokens that enter the AR cross-entropy."""
        return ctx.response_mask.clone()

    def must_corrupt(self, ctx: SelectionContext) -> torch.Tensor:
        """Tokens a diffusion student always corrupts (on top of its random mask)."""
        return torch.zeros_like(ctx.response_mask)

    def keep_visible(self, ctx: SelectionContext) -> torch.Tensor:
        """Tokens a diffusion student keeps visible (out of its random mask); never overlaps ``must_corrupt``."""
        return torch.zeros_like(ctx.response_mask)

    def budget(self, ctx: SelectionContext) -> int:
        """Number of tokens ``loss_mask`` will select in this micro-batch (known before the forward)."""
        return int(self.loss_mask(ctx).sum())

    def describe(self) -> str:
        return type(self).__name__

    def score_dirs(self) -> list[str]:
        """The ``t3s score`` caches this strategy reads (those given; a budget-matched control: its match's)."""
        return []

    def unscored(self) -> list[TokenSelectionStrategy]:
        """Its parts that read a score cache but have none yet (``t3s fit`` runs the recipe that writes one)."""
        return []


def top_fraction(scores: torch.Tensor, candidates: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask of the ``round(fraction * n)`` candidates with the highest score (ties by position)."""
    k = fraction_budget(int(candidates.sum()), fraction)
    mask = torch.zeros_like(candidates)
    if k == 0:
        return mask
    flat_scores = torch.where(candidates, scores.float(), torch.full_like(scores, float("-inf"), dtype=torch.float))
    idx = torch.topk(flat_scores.flatten(), k, sorted=False).indices
    mask.view(-1)[idx] = True
    return mask & candidates


def fraction_budget(n: int, fraction: float) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise SelectionError(f"fraction must be in [0, 1], got {fraction}")
    return int(round(fraction * n))
