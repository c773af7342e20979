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
    "Objective",
    "answer_layout",
    "check_one_trace_per_row",
    "corrupt",
    "draw_corruption",
    "mask_ratios",
    "row_traces",
    "view_loss_sum",
]

Objective = Literal["llada", "llada2"]


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
    """Refuse packed rows: the diffusion student needs one trace per row (``data.packing: false``)."""
    valid = trace_index >= 0
    high = torch.where(valid, trace_index, torch.full_like(trace_index, -1)).amax(dim=1)
    low = torch.where(valid, trace_index, torch.full_like(trace_index, torch.iinfo(torch.int64).max)).amin(
        dim=1
    )
    packed = valid.any(dim=1) & (high != low)
    if bool(packed.any()):
        raise DiffusionStudentError(
            f"{int(packed.sum())} row(s) of a micro-batch hold more than one trace: the diffusion student "
            "pads every trace with EOS on its own row; set data.packing: false"
        )


def row_traces(trace_index: torch.Tensor) -> torch.Tensor:
    """Dataset index of the trace on each row (``-1`` for a row of padding only)."""
    return trace_index.amax(dim=1).clamp(min=-1)


_STREAM_RATIO, _STREAM_TOKENS = 1, 2


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of the corruption at optimizer step ``step``: ``(p [R], random_mask [R, L])``.

    ``traces`` is the dataset index of each row's trace (:func:`row_traces`); the draws depend only on
    ``(seed, step, trace, position)``.
    """
    p = mask_ratios(hash_uniform(seed, step, traces, 1, _STREAM_RATIO)[:, 0], objective, eps, t_range)
    length = layout.targets.shape[1]
    random_mask = (hash_uniform(seed, step, traces, length, _STREAM_TOKENS) < p[:, None]) & layout.answer
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
            ``llada2``: corrupted tokens).
        answer_tokens: size of the answer region (for the corrupted fraction).
    """

    noisy_ids: torch.Tensor
    targets: torch.Tensor
    corrupted: torch.Tensor
    weights: torch.Tensor
    normaliser: float
    answer_tokens: int


def _view(
    layout: AnswerLayout, corrupted: torch.Tensor, p: torch.Tensor, mask_id: int, objective: Objective
) -> CorruptedView:
    answer = layout.answer
    corrupted = corrupted & answer
    if objective == "llada":
        length = answer.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)
        per_row = 1.0 / (p.to(torch.float64)[:, None] * length)
        weights = torch.where(corrupted, per_row, torch.zeros_like(per_row)).float()
        normaliser = float(layout.has_answer.sum())
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
) -> list[CorruptedView]:
    """The corrupted views of a micro-batch: ``random_mask ∪ must`` inside the answer region.

    With ``complementary`` a second view corrupts exactly the answer tokens the first one left visible, so
    the pair covers every answer token once. Its masking probability is ``max(1 − p, ε)`` (the ``llada``
    1/p weight). Forced tokens are weighted like random ones (the sequence's 1/p under ``llada``).
    """
    corrupted = (random_mask | must) & layout.answer
    views = [_view(layout, corrupted, p, mask_id, objective)]
    if complementary:
        views.append(_view(layout, layout.answer & ~corrupted, (1.0 - p).clamp(min=eps), mask_id, objective))
    return views


def view_loss_sum(logprobs: torch.Tensor, view: CorruptedView) -> torch.Tensor:
    """Σ weight · (−log p) over the corrupted positions of a view (``logprobs`` in row-major order)."""
    return -(view.weights[view.corrupted].to(logprobs.dtype) * logprobs).sum()
