"""The shipped token-selection strategies. Each is one small class; choose one in YAML under
``model.selection`` with ``class_path`` / ``init_args``."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from t3s.ops.hashing import counter_uniform, stable_seed
from t3s.selection.base import (
    SelectionContext,
    SelectionError,
    TokenSelectionStrategy,
    fraction_budget,
    top_fraction,
)
from t3s.selection.scores import ScoreCache


class FullSFT(TokenSelectionStrategy):
    """Plain SFT: every response token is trained (the baseline)."""

    name = "sft"


class ScoredStrategy(TokenSelectionStrategy):
    """Base of the strategies that read a ``t3s score`` cache (Δc, c(θ_0)) from ``scores``.

    With ``scores`` unset, ``t3s fit`` runs the recipe that writes the cache (probe → θ_b → score).
    """

    requires = frozenset({"scores"})

    def __init__(self, scores: str | None = None):
        self.scores = scores
        self._cache: ScoreCache | None = None

    def setup(self, data_fingerprint: dict[str, Any]) -> None:
        if self.scores is None:
            raise SelectionError(
                f"{type(self).__name__} needs Δc scores but none were given: set "
                "model.init_args.selection.init_args.scores to a directory written by `t3s score`"
            )
        cache = ScoreCache.load(self.scores)
        cache.check_matches(data_fingerprint, source=str(self.scores))
        self._cache = cache

    def score_dirs(self) -> list[str]:
        return [str(self.scores)] if self.scores else []

    def unscored(self) -> list[TokenSelectionStrategy]:
        return [self] if self.scores is None else []

    def attach(self, cache: ScoreCache) -> None:
        """Use an in-memory cache instead of reading ``scores`` (the throughput benchmark builds one)."""
        self._cache = cache

    @property
    def cache(self) -> ScoreCache:
        if self._cache is None:
            raise SelectionError(f"{type(self).__name__} was used before setup(): no score cache is loaded")
        return self._cache

    def signal(self, name: str, ctx: SelectionContext) -> torch.Tensor:
        values = self.cache.lookup(name, ctx.trace_index, ctx.position_ids)
        missing = ctx.response_mask & torch.isnan(values)
        if bool(missing.any()):
            raise SelectionError(
                f"the score cache has no value for {int(missing.sum())} response tokens: "
                "it was computed on different data; re-run `t3s score`"
            )
        return values


class T3S(ScoredStrategy):
    """Training-Trajectory-Aware Token Selection.

    Δc_t = c_t(θ_b) − c_t(θ_0). AR students drop the imitation anchors (Δc > ``threshold``) from the
    loss; diffusion students always corrupt the yet-to-learn tokens (Δc < −``yet_to_learn_threshold``)
    and keep the anchors visible (``keep_visible``; the student's ``anchor_visibility``).

    Args:
        scores: directory of a ``t3s score`` cache. Leave unset to let ``t3s fit`` run the whole
            recipe (probe SFT → bottleneck → score → masked restart).
        threshold: anchors are tokens with Δc above this (paper: 0).
        yet_to_learn_threshold: τ for the diffusion side (paper: 0.2, ~5% of tokens).
        online: find θ_b during one ``fit`` and switch to masked training when the detector fires.
        restart_from_base: in the online variant, restart from θ_0 with a fresh optimizer (the
            paper's recipe) rather than continue from the current weights.
    """

    def __init__(
        self,
        scores: str | None = None,
        threshold: float = 0.0,
        yet_to_learn_threshold: float = 0.2,
        online: bool = False,
        restart_from_base: bool = True,
    ):
        super().__init__(scores)
        self.threshold = threshold
        self.yet_to_learn_threshold = yet_to_learn_threshold
        self.online = online
        self.restart_from_base = restart_from_base

    def anchors(self, ctx: SelectionContext) -> torch.Tensor:
        return ctx.response_mask & (self.signal("delta", ctx) > self.threshold)

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        return ctx.response_mask & ~self.anchors(ctx)

    def must_corrupt(self, ctx: SelectionContext) -> torch.Tensor:
        return ctx.response_mask & (self.signal("delta", ctx) < -self.yet_to_learn_threshold)

    def keep_visible(self, ctx: SelectionContext) -> torch.Tensor:
        return self.anchors(ctx) & ~self.must_corrupt(ctx)


class InverseT3S(T3S):
    """The paper's −T3S control: train *only* the imitation anchors.

    Diffusion: force-corrupt the anchors and keep the yet-to-learn tokens visible (the mirror image of T3S).
    """

    name = "inverse_t3s"
    label = "−T3S"

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        return self.anchors(ctx)

    def must_corrupt(self, ctx: SelectionContext) -> torch.Tensor:
        return self.anchors(ctx)

    def keep_visible(self, ctx: SelectionContext) -> torch.Tensor:
        return T3S.must_corrupt(self, ctx) & ~self.anchors(ctx)


class ConfidenceMask(ScoredStrategy):
    """Static control by initial confidence c(θ_0) alone.

    Excludes the ``fraction`` of response tokens (over the whole dataset) with the highest
    (``side="high"``) or lowest (``side="low"``) log-prob under θ_0.
    """

    def __init__(self, scores: str | None = None, side: Literal["high", "low"] = "high", fraction: float = 0.5):
        super().__init__(scores)
        if side not in ("high", "low"):
            raise SelectionError(f"ConfidenceMask side must be 'high' or 'low', got {side!r}")
        fraction_budget(1, fraction)
        self.side = side
        self.fraction = fraction
        self._cutoff: float | None = None

    def _threshold(self) -> float:
        if self._cutoff is None:
            base = self.cache.base_logprob[~torch.isnan(self.cache.base_logprob)]
            q = 1.0 - self.fraction if self.side == "high" else self.fraction
            # numpy: torch.quantile refuses inputs above 2^24 elements (a full s1K cache has more)
            self._cutoff = float(np.quantile(base.double().numpy(), q)) if base.numel() else 0.0
        return self._cutoff

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        c0 = self.signal("base_logprob", ctx)
        excluded = c0 > self._threshold() if self.side == "high" else c0 < self._threshold()
        return ctx.response_mask & ~excluded


class RandomMask(TokenSelectionStrategy):
    """A random mask: the control with the same budget as another strategy.

    Give ``match`` (another strategy, e.g. ``T3S`` with its cache) to keep exactly as many tokens per
    micro-batch as it would — and, for diffusion students, force-corrupt and keep visible as many (two
    disjoint random sets: the highest and the lowest hash priorities) — or ``fraction`` for a fixed keep
    ratio (nothing kept visible). The choice is a fixed hash of (seed, trace, position): stable across epochs,
    ranks and resumes.
    """

    name = "random"
    label = "random mask"

    def __init__(self, match: TokenSelectionStrategy | None = None, fraction: float | None = None, seed: int = 0):
        if (match is None) == (fraction is None):
            raise SelectionError("RandomMask needs exactly one of `match` (a strategy) or `fraction`")
        if match is not None and match.needs_forward_signals:
            raise SelectionError("RandomMask can only match a strategy with a static mask")
        self.match = match
        self.fraction = fraction
        self.seed = seed
        self.requires = match.requires if match is not None else frozenset()

    def setup(self, data_fingerprint: dict[str, Any]) -> None:
        if self.match is not None:
            self.match.setup(data_fingerprint)

    def score_dirs(self) -> list[str]:
        return self.match.score_dirs() if self.match is not None else []

    def unscored(self) -> list[TokenSelectionStrategy]:
        return self.match.unscored() if self.match is not None else []

    def _priority(self, ctx: SelectionContext) -> torch.Tensor:
        """A deterministic pseudo-random number in [0, 1) per (seed, trace, position)."""
        return counter_uniform(stable_seed("t3s-random-mask", self.seed), ctx.trace_index, ctx.position_ids)

    def _random_subset(self, ctx: SelectionContext, k: int) -> torch.Tensor:
        n = int(ctx.response_mask.sum())
        return top_fraction(self._priority(ctx), ctx.response_mask, k / n if n else 0.0)

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        if self.match is not None:
            k = int(self.match.loss_mask(ctx).sum())
        else:
            k = fraction_budget(int(ctx.response_mask.sum()), self.fraction)
        return self._random_subset(ctx, k)

    def must_corrupt(self, ctx: SelectionContext) -> torch.Tensor:
        if self.match is not None:
            k = int(self.match.must_corrupt(ctx).sum())
        else:
            k = fraction_budget(int(ctx.response_mask.sum()), 1.0 - self.fraction)
        return self._random_subset(ctx, k)

    def keep_visible(self, ctx: SelectionContext) -> torch.Tensor:
        if self.match is None:
            return torch.zeros_like(ctx.response_mask)
        k = int(self.match.keep_visible(ctx).sum())
        n = int(ctx.response_mask.sum())
        lowest = top_fraction(1.0 - self._priority(ctx), ctx.response_mask, k / n if n else 0.0)
        return lowest & ~self.must_corrupt(ctx)


class ExcessLoss(TokenSelectionStrategy):
    """Rho-1's selective language modelling: keep the top ``fraction`` of tokens by excess loss
    CE_student − CE_reference, against a frozen reference model.

    Args:
        fraction: share of response tokens kept per micro-batch.
        reference: HF id or path of the reference model; ``None`` uses the student's own initial weights.
    """

    requires = frozenset({"student_logprob", "reference_logprob"})

    def __init__(self, fraction: float = 0.6, reference: str | None = None):
        fraction_budget(1, fraction)
        self.fraction = fraction
        self.reference = reference

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        excess = ctx.require("reference_logprob") - ctx.require("student_logprob").detach()
        return top_fraction(excess, ctx.response_mask, self.fraction)

    def budget(self, ctx: SelectionContext) -> int:
        return fraction_budget(int(ctx.response_mask.sum()), self.fraction)


class StudentEntropy(TokenSelectionStrategy):
    """Keep the top ``fraction`` of response tokens by the student's own predictive entropy."""

    requires = frozenset({"entropy"})

    def __init__(self, fraction: float = 0.2):
        fraction_budget(1, fraction)
        self.fraction = fraction

    def loss_mask(self, ctx: SelectionContext) -> torch.Tensor:
        return top_fraction(ctx.require("entropy"), ctx.response_mask, self.fraction)

    def budget(self, ctx: SelectionContext) -> int:
        return fraction_budget(int(ctx.response_mask.sum()), self.fraction)

