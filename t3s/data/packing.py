"""Packing tokenized traces into rows and collating rows into micro-batches.

A micro-batch is a dict of ``[R, L]`` tensors (right padded): ``input_ids``, ``labels`` (-100 = not trained,
padding included), ``position_ids`` (0, 1, ... restarting for every trace; the padding run restarts at 0 too so
that transformers' packed-sequence detection makes it a segment of its own), ``trace_index`` (dataset index of
the trace owning the token, -1 on padding) and ``attention_mask`` (1 real, 0 padding; not for the model when
rows are packed: with ``attention_mask=None`` and ``use_cache=False`` transformers builds the block-diagonal
mask from ``position_ids``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t3s.data.schema import IGNORE_INDEX, TokenizedTrace

__all__ = ["MICRO_BATCH_KEYS", "collate", "collate_rows", "first_fit_decreasing", "next_fit", "rows_of"]

MICRO_BATCH_KEYS = ("input_ids", "labels", "position_ids", "trace_index", "attention_mask")


def _check(lengths: Sequence[int], capacity: int) -> None:
    if capacity < 1:
        raise ValueError(f"row capacity must be positive, got {capacity}")
    too_long = [n for n in lengths if n > capacity]
    if too_long:
        raise ValueError(
            f"{len(too_long)} item(s) longer than the row capacity {capacity} (longest {max(too_long)})"
        )


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of item positions: longest first, each into the first bin it fits (total length <= capacity).

    Ties keep the input order, so the result is deterministic.
    """
    _check(lengths, capacity)
    bins: list[list[int]] = []
    free: list[int] = []
    for item in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        size = lengths[item]
        for b, room in enumerate(free):
            if size <= room:
                bins[b].append(item)
                free[b] -= size
                break
        else:
            bins.append([item])
            free.append(capacity - size)
    return bins


def next_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of consecutive item positions in input order, a new bin whenever the next item does not fit."""
    _check(lengths, capacity)
    bins: list[list[int]] = []
    used = capacity
    for item, size in enumerate(lengths):
        if used + size > capacity:
            bins.append([])
            used = 0
        bins[-1].append(item)
        used += size
    return bins


def rows_of(
    traces: Sequence[TokenizedTrace], max_length: int | None, *, pack: bool = True
) -> list[list[TokenizedTrace]]:
    """Rows of traces: packed first-fit-decreasing into ``max_length`` tokens (all in one row when
    ``max_length`` is None), or one trace per row, longest first, when ``pack`` is False."""
    if not pack:
        return [[t] for t in sorted(traces, key=lambda t: -len(t))]
    if max_length is None:
        return [list(traces)] if traces else []
    return [[traces[i] for i in row] for row in first_fit_decreasing([len(t) for t in traces], max_length)]


def collate_rows(rows: Sequence[Sequence[TokenizedTrace]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate each row's traces and right-pad the rows to the longest one (see the module docstring)."""
    if not rows or not all(rows):
        raise ValueError("collate needs at least one row and no empty row")
    width = max(sum(len(t) for t in row) for row in rows)
    columns: dict[str, list[list[int]]] = {key: [] for key in MICRO_BATCH_KEYS}
    for row in rows:
        values: dict[str, list[int]] = {key: [] for key in MICRO_BATCH_KEYS}
        for trace in row:
            n = len(trace)
            values["input_ids"] += trace.input_ids
            values["labels"] += trace.labels
            values["position_ids"] += range(n)
            values["trace_index"] += [trace.index] * n
            values["attention_mask"] += [1] * n
        pad = width - len(values["input_ids"])
        values["input_ids"] += [pad_id] * pad
        values["labels"] += [IGNORE_INDEX] * pad
        values["position_ids"] += range(pad)
        values["trace_index"] += [-1] * pad
        values["attention_mask"] += [0] * pad
        for key in MICRO_BATCH_KEYS:
            columns[key].append(values[key])
    return {key: torch.tensor(columns[key], dtype=torch.long) for key in MICRO_BATCH_KEYS}


def collate(
    traces: Sequence[TokenizedTrace], pad_id: int, pack: bool = True, max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """One micro-batch of ``traces``.

    ``pack=True``: the traces share rows, packed first-fit-decreasing into rows of at most ``max_length``
    tokens (a single row when ``max_length`` is None). ``pack=False``: one trace per row, right padded (the
    per-sample layout).
    """
    return collate_rows(rows_of(traces, max_length, pack=pack), pad_id)
