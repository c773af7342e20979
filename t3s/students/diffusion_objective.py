"""The masked-diffusion SFT objective as small pure functions (no model, no Lightning).

Answer layout → per-sequence masking ratio → corruption (random ∪ strategy-forced, optionally with the
complementary view) → weighted loss sum; see :mod:`t3s.students.diffusion` for the two conventions
(``llada``, ``llada2``). The random draws are a counter-based hash of ``(seed, step, trace, position)``.

A *sequence* (document) is one trace: a whole row when rows hold one trace each (its right padding is the
trace's EOS tail), or one run of a packed row (``packed=True``: the row's padding belongs to no document and
is never trained). Every per-sequence quantity (masking ratio, answer length, ``sequence`` normaliser) is
per document, and the draws are keyed by the position inside the document, so a trace gets the same noise
and the same loss terms packed or alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from t3s.data.render import IGNORE_INDEX
from t3s.errors import T3SError
from t3s.ops.hashing import hash_uniform, hash_uniform_at

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


class DiffusionStudentError(T3SError, ValueError):
    """The diffusion student cannot train on this configuration or data (the message says what to change)."""


@dataclass
class AnswerLayout:
    """Where the answer of each row is, and what the model must reconstruct there.

    Attributes:
        targets: ``[R, L]`` clean ids; after the reply's last labelled token of each document every position
            of that document holds EOS.
        answer: ``[R, L]`` bool, the corruptible region: labelled reply tokens plus the EOS padding.
        response: ``[R, L]`` bool, the labelled reply tokens only (what the selection strategy sees; the
            score cache has no values on the EOS padding).
        has_answer: ``[D]`` bool, documents with at least one labelled token (the others are skipped); one
            document per row (``D = R``) unless the rows are packed.
        documents: ``[R, L]`` document of each token (``0..D−1``, row-major); ``-1`` for a packed row's padding.
        offsets: ``[R, L]`` position of each token inside its document (the draws' counter).
        traces: ``[D]`` dataset index of each document's trace (``-1``: a row of padding only), or ``None``
            when the layout was built without ``trace_index``.
    """

    targets: torch.Tensor
    answer: torch.Tensor
    response: torch.Tensor
    has_answer: torch.Tensor
    documents: torch.Tensor
    offsets: torch.Tensor
    traces: torch.Tensor | None = None

    @property
    def num_documents(self) -> int:
        """``D``, the number of documents of the micro-batch."""
        return int(self.has_answer.shape[0])

    def per_token(self, values: torch.Tensor) -> torch.Tensor:
        """``[R, L]``: each token gets its document's entry of ``values`` (``[D]``; 0 outside documents)."""
        inside = self.documents >= 0
        picked = values[self.documents.clamp(min=0)]
        return torch.where(inside, picked, torch.zeros_like(picked))

    def per_document_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``[D]``: the sum of ``values`` (``[R, L]``) over each document's tokens."""
        inside = self.documents >= 0
        out = torch.zeros(self.num_documents, dtype=values.dtype, device=values.device)
        return out.index_add_(0, self.documents[inside], values[inside])


def _documents(
    trace_index: torch.Tensor | None, rows: int, length: int, packed: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(documents [R, L], offsets [R, L], traces [D])`` of the rows (see :class:`AnswerLayout`)."""
    columns = torch.arange(length, device=device)[None, :].expand(rows, -1)
    if not packed:
        documents = torch.arange(rows, device=device)[:, None].expand(rows, length)
        return documents, columns, None if trace_index is None else row_traces(trace_index)
    if trace_index is None:
        raise ValueError("packed rows need trace_index to tell their documents apart")
    inside = trace_index >= 0
    starts = inside.clone()
    starts[:, 1:] &= trace_index[:, 1:] != trace_index[:, :-1]
    ordinal = starts.flatten().to(torch.int64).cumsum(0).view(rows, length) - 1
    documents = torch.where(inside, ordinal, torch.full_like(ordinal, -1))
    first_column = columns[starts]  # row-major, so entry d is document d's first column
    offsets = torch.where(inside, columns - first_column[documents.clamp(min=0)], torch.zeros_like(columns))
    return documents, offsets, trace_index[starts]


def answer_layout(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    eos_id: int,
    trace_index: torch.Tensor | None = None,
    *,
    packed: bool = False,
) -> AnswerLayout:
    """The answer region of each document: the labelled reply, then EOS up to the document's end.

    Unlabelled tokens *before* the reply's last labelled token (the prompt, template tokens) stay as they are
    and are never corrupted; everything after it (template tail; with one trace per row, the row's padding)
    becomes EOS and is trained. ``packed``: the rows hold several traces (``trace_index`` tells them apart);
    each trace is a document of its own, and a row's padding is in none (never corrupted, never trained).
    """
    response = labels != IGNORE_INDEX
    rows, length = labels.shape
    documents, offsets, traces = _documents(trace_index, rows, length, packed, labels.device)
    inside = documents >= 0
    count = rows if not packed else int((documents.amax() + 1).clamp(min=0)) if documents.numel() else 0
    columns = torch.arange(length, device=labels.device)[None, :].expand(rows, -1)
    labelled = torch.where(response & inside, columns, torch.full_like(columns, -1))
    last = torch.full((count,), -1, dtype=torch.int64, device=labels.device)
    last = last.scatter_reduce(0, documents[inside], labelled[inside], reduce="amax")
    has_answer = last >= 0
    index = documents.clamp(min=0)
    tail = inside & (columns > last[index]) & has_answer[index]
    targets = torch.where(tail, torch.full_like(input_ids, eos_id), input_ids)
    return AnswerLayout(
        targets=targets, answer=response | tail, response=response, has_answer=has_answer,
        documents=documents, offsets=offsets, traces=traces,
    )


def check_one_trace_per_row(trace_index: torch.Tensor) -> None:
    """Refuse packed rows where one trace per row is expected (the data module said ``packing: false``)."""
    valid = trace_index >= 0
    high = torch.where(valid, trace_index, torch.full_like(trace_index, -1)).amax(dim=1)
    low = torch.where(valid, trace_index, torch.full_like(trace_index, torch.iinfo(torch.int64).max)).amin(
        dim=1
    )
    packed = valid.any(dim=1) & (high != low)
    if bool(packed.any()):
        raise DiffusionStudentError(
            f"{int(packed.sum())} row(s) of a micro-batch hold more than one trace, but the student was set up "
            "for one trace per row (data.batching.packing: false); packed rows need data.batching.packing: true"
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
    """The random part of the corruption at optimizer step ``step``: ``(p [D], random_mask [R, L])``.

    ``traces`` is the dataset index of each document's trace (``layout.traces``; :func:`row_traces` for one
    trace per row); the draws depend only on ``(seed, step, trace, position inside the trace)``, so a trace
    draws the same packed or alone. Positions in ``keep`` (the anchors) are corrupted with probability
    ``anchor_visibility · p`` instead of ``p`` (an independent thinning draw: 0 keeps them always visible).
    """
    p = mask_ratios(hash_uniform(seed, step, traces, 1, _STREAM_RATIO)[:, 0], objective, eps, t_range)
    token_traces = layout.per_token(traces.long())
    uniforms = hash_uniform_at(seed, step, token_traces, layout.offsets, _STREAM_TOKENS)
    random_mask = (uniforms < layout.per_token(p)) & layout.answer
    if keep is not None and bool(keep.any()):
        thinned = hash_uniform_at(seed, step, token_traces, layout.offsets, _STREAM_ANCHORS) < anchor_visibility
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
        position_ids: ``[R, L]`` positions restarting at every document of a packed row (the model then sees
            each document alone); ``None``: one sequence per row, positions ``0..L−1``.
    """

    noisy_ids: torch.Tensor
    targets: torch.Tensor
    corrupted: torch.Tensor
    weights: torch.Tensor
    normaliser: float
    answer_tokens: int
    position_ids: torch.Tensor | None = None


def inclusion_probability(
    p: torch.Tensor,
    must: torch.Tensor,
    keep: torch.Tensor | None = None,
    anchor_visibility: float = 0.0,
) -> torch.Tensor:
    """``[R, L]`` float64 probability that each position is corrupted: 1 where forced (``must``),
    ``anchor_visibility · p`` where kept visible (``keep``), the sequence's ``p`` elsewhere.

    ``p`` is per row (``[R]``, one sequence per row) or already per token (``[R, L]``, packed rows)."""
    q = p.to(torch.float64)
    q = q[:, None].expand(must.shape) if q.dim() == 1 else q
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
        length = layout.per_token(layout.per_document_sum(answer.to(torch.int64)))
        per_token = 1.0 / (q.clamp(min=eps) * length.clamp(min=1).to(torch.float64))
        weights = torch.where(corrupted, per_token, torch.zeros_like(per_token)).float()
        normaliser = float(layout.has_answer.sum())
    elif normalization == "sequence":
        count = layout.per_document_sum(corrupted.to(torch.int64))
        weights = corrupted.float() / layout.per_token(count).clamp(min=1).float()
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

    ``p`` is each document's masking ratio (``[D]``, as :func:`draw_corruption` returns it) or per token.
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
    if p.dim() == 1:  # one ratio per document
        p = layout.per_token(p.to(torch.float64))
    q = inclusion_probability(p, must, keep, anchor_visibility)
    views = [_view(layout, corrupted, q, mask_id, objective, normalization, eps)]
    if complementary:
        views.append(_view(layout, layout.answer & ~corrupted, 1.0 - q, mask_id, objective, normalization, eps))
    return views


def view_loss_sum(logprobs: torch.Tensor, view: CorruptedView) -> torch.Tensor:
    """Σ weight · (−log p) over the corrupted positions of a view (``logprobs`` in row-major order)."""
    return -(view.weights[view.corrupted].to(logprobs.dtype) * logprobs).sum()
