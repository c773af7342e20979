"""The masked-diffusion SFT objective as small pure functions (no model, no Lightning).

Answer layout → per-sequence masking ratio → corruption (random ∪ strategy-forced, optionally with the
complementary view) → weighted loss sum; see :mod:`t3s.students.diffusion` for the two conventions
(``llada``, ``llada2``). The random draws are a counter-based hash of ``(seed, step, trace, position)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from t3s.data.render import IGNORE_INDEX
from t3s.ops.hashing import hash_uniform

__all__ = [
    "AnswerLayout",
    "CorruptedView",
    "DiffusionStudentError",
    "Normalization",
    "Objective",
    "answer_layout",
    "check_one_trace_per_row",
    "corrupt",
    "draw_corruption",
    "inclusion_probability",
    "mask_ratios",
    "row_traces",
    "view_loss_sum",
]

Objective = Literal["llada", "llada2"]
Normalization = Literal["token", "sequence"]


class DiffusionStudentError(ValueError):
    """The diffusion student cannot train on this configuration or data (the message says what to change)."""


@dataclass
class AnswerLayout:
    """Where the answer of each row is, and what the model must reconstruct there.

    Attributes:
        targets: ``[R, L]`` clean ids; after the reply's last labelled token every position holds EOS.
        answer: ``[R, L]`` bool, the corruptible region: labelled reply tokens plus the EOS padding.
        response: ``[R, L]`` bool, the labelled reply tokens only (what the selection strategy sees; the
            score cache has no values on the EOS padding).
        has_answer: ``[R]`` bool, rows with at least one labelled token (the others are skipped).
    """

    targets: torch.Tensor
    answer: torch.Tensor
    response: torch.Tensor
    has_answer: torch.Tensor


def answer_layout(input_ids: torch.Tensor, labels: torch.Tensor, eos_id: int) -> AnswerLayout:
    """The answer region of one-trace rows: the labelled reply, then EOS up to the row length.

    Unlabelled tokens *before* the reply's last labelled token (the prompt, template tokens) stay as they are
    and are never corrupted; everything after it (template tail, padding) becomes EOS and is trained.
    """
    response = labels != IGNORE_INDEX
    has_answer = response.any(dim=1)
    length = labels.shape[1]
    columns = torch.arange(length, device=labels.device)
    last = (length - 1) - response.flip(1).to(torch.int64).argmax(dim=1)
    tail = (columns[None, :] > last[:, None]) & has_answer[:, None]
    targets = torch.where(tail, torch.full_like(input_ids, eos_id), input_ids)
    return AnswerLayout(targets=targets, answer=response | tail, response=response, has_answer=has_answer)


def check_one_trace_per_row(trace_index: torch.Tensor) -> None:
    """Refuse packed rows: the diffusion student needs one trace per row (``data.batching.packing: false``)."""
    valid = trace_index >= 0
    high = torch.where(valid, trace_index, torch.full_like(trace_index, -1)).amax(dim=1)
    low = torch.where(valid, trace_index, torch.full_like(trace_index, torch.iinfo(torch.int64).max)).amin(
        dim=1
    )
    packed = valid.any(dim=1) & (high != low)
    if bool(packed.any()):
        raise DiffusionStudentError(
            f"{int(packed.sum())} row(s) of a micro-batch hold more than one trace: the diffusion student "
            "pads every trace with EOS on its own row; set data.batching.packing: false"
        )


def row_traces(trace_index: torch.Tensor) -> torch.Tensor:
    """Dataset index of the trace on each row (``-1`` for a row of padding only)."""
    return trace_index.amax(dim=1).clamp(min=-1)


_STREAM_RATIO, _STREAM_TOKENS, _STREAM_ANCHORS = 1, 2, 3


def mask_ratios(
    u: torch.Tensor, objective: Objective, eps: float, t_range: tuple[float, float]
) -> torch.Tensor:
    """Per-sequence masking probability from uniforms ``u`` in [0, 1).

    ``llada``: p = (1 − ε) t + ε with t = u; ``llada2``: p = t_lo + (t_hi − t_lo) u.
    """
    if objective == "llada":
        return (1.0 - eps) * u + eps
    if objective == "llada2":
        lo, hi = t_range
        return lo + (hi - lo) * u
    raise DiffusionStudentError(f"unknown objective {objective!r}; choose 'llada' or 'llada2'")


def draw_corruption(
    seed: int,
    step: int,
    traces: torch.Tensor,
    layout: AnswerLayout,
    objective: Objective,
    eps: float,
    t_range: tuple[float, float],
    keep: torch.Tensor | None = None,
    anchor_visibility: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of the corruption at optimizer step ``step``: ``(p [R], random_mask [R, L])``.

    ``traces`` is the dataset index of each row's trace (:func:`row_traces`); the draws depend only on
    ``(seed, step, trace, position)``. Positions in ``keep`` (the anchors) are corrupted with probability
    ``anchor_visibility · p`` instead of ``p`` (an independent thinning draw: 0 keeps them always visible).
    """
    p = mask_ratios(hash_uniform(seed, step, traces, 1, _STREAM_RATIO)[:, 0], objective, eps, t_range)
    length = layout.targets.shape[1]
    random_mask = (hash_uniform(seed, step, traces, length, _STREAM_TOKENS) < p[:, None]) & layout.answer
    if keep is not None and bool(keep.any()):
        thinned = hash_uniform(seed, step, traces, length, _STREAM_ANCHORS) < anchor_visibility
        random_mask &= ~keep | thinned
    return p, random_mask


@dataclass
class CorruptedView:
    """One corrupted copy of a micro-batch (complementary masking makes two per micro-batch).

    Attributes:
        noisy_ids: ``[R, L]`` the model input: targets with every corrupted position set to the mask id.
        targets: ``[R, L]`` the clean ids to reconstruct.
        corrupted: ``[R, L]`` bool, the positions in the loss.
        weights: ``[R, L]`` float32 loss weight of each corrupted position (0 elsewhere), before the global
            normaliser.
        normaliser: this view's share of the global normaliser (``llada``: sequences with an answer;
            ``llada2``: corrupted tokens, or sequences with a corrupted token under ``sequence``).
        answer_tokens: size of the answer region (for the corrupted fraction).
    """

    noisy_ids: torch.Tensor
    targets: torch.Tensor
    corrupted: torch.Tensor
    weights: torch.Tensor
    normaliser: float
    answer_tokens: int


def inclusion_probability(
    p: torch.Tensor,
    must: torch.Tensor,
    keep: torch.Tensor | None = None,
    anchor_visibility: float = 0.0,
) -> torch.Tensor:
    """``[R, L]`` float64 probability that each position is corrupted: 1 where forced (``must``),
    ``anchor_visibility · p`` where kept visible (``keep``), the sequence's ``p`` elsewhere."""
    q = p.to(torch.float64)[:, None].expand(must.shape)
    if keep is not None:
        q = torch.where(keep, q * float(anchor_visibility), q)
    return torch.where(must, torch.ones_like(q), q)


def _view(
    layout: AnswerLayout,
    corrupted: torch.Tensor,
    q: torch.Tensor,
    mask_id: int,
    objective: Objective,
    normalization: Normalization | None,
    eps: float,
) -> CorruptedView:
    answer = layout.answer
    corrupted = corrupted & answer
    if objective == "llada":
        length = answer.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)
        per_token = 1.0 / (q.clamp(min=eps) * length)
        weights = torch.where(corrupted, per_token, torch.zeros_like(per_token)).float()
        normaliser = float(layout.has_answer.sum())
    elif normalization == "sequence":
        count = corrupted.sum(dim=1, keepdim=True)
        weights = corrupted.float() / count.clamp(min=1).float()
        normaliser = float((count > 0).sum())
    else:
        weights = corrupted.float()
        normaliser = float(corrupted.sum())
    noisy = torch.where(corrupted, torch.full_like(layout.targets, mask_id), layout.targets)
    return CorruptedView(noisy, layout.targets, corrupted, weights, normaliser, int(answer.sum()))


def corrupt(
    layout: AnswerLayout,
    random_mask: torch.Tensor,
    must: torch.Tensor,
    p: torch.Tensor,
    *,
    mask_id: int,
    objective: Objective,
    eps: float = 1e-3,
    complementary: bool = False,
    keep: torch.Tensor | None = None,
    anchor_visibility: float = 0.0,
    normalization: Normalization | None = None,
) -> list[CorruptedView]:
    """The corrupted views of a micro-batch: ``random_mask ∪ must`` inside the answer region.

    ``random_mask`` is the random draw at each position's inclusion probability (:func:`inclusion_probability`:
    the kept-visible positions ``keep`` already thinned to ``anchor_visibility · p``). Under ``llada`` each
    corrupted token is weighted by 1 / its inclusion probability (Horvitz–Thompson, so the loss stays an
    unbiased estimate of the answer's NLL): 1 for a forced token, 1/p for a random one,
    1/(``anchor_visibility`` · p) for a kept-visible one.

    With ``complementary`` a second view corrupts exactly the answer tokens the first one left visible, so
    the pair covers every answer token once; its inclusion probabilities are the complements (forced
    tokens: never), clamped to ε for the weights.

    ``normalization`` (``llada2`` only): ``token`` (default) divides by the corrupted tokens of the global
    batch; ``sequence`` averages each sequence's mean over the sequences (dFactory with micro-batch 1).
    """
    corrupted = (random_mask | must) & layout.answer
    q = inclusion_probability(p, must, keep, anchor_visibility)
    views = [_view(layout, corrupted, q, mask_id, objective, normalization, eps)]
    if complementary:
        views.append(_view(layout, layout.answer & ~corrupted, 1.0 - q, mask_id, objective, normalization, eps))
    return views


def view_loss_sum(logprobs: torch.Tensor, view: CorruptedView) -> torch.Tensor:
    """Σ weight · (−log p) over the corrupted positions of a view (``logprobs`` in row-major order)."""
    return -(view.weights[view.corrupted].to(logprobs.dtype) * logprobs).sum()
