"""Teacher-trace data types: a trace independent of any tokenizer, a tokenized trace, load statistics, and the
error every bad input raises."""

from __future__ import annotations

from dataclasses import dataclass

from t3s.data.rows import DataFileError

__all__ = ["IGNORE_INDEX", "LoadStats", "TokenizedTrace", "TraceDataError", "TraceRecord"]

#: The label of tokens that are not trained (the Hugging Face / PyTorch cross-entropy convention).
IGNORE_INDEX = -100


class TraceDataError(DataFileError):
    """Bad teacher-trace input; the message is one line naming the file:line and the mapping key involved."""


@dataclass
class TraceRecord:
    """One teacher trace, independent of any tokenizer.

    Attributes:
        id: Stable identifier (the row's id field, else its source location).
        messages: The prompt turns only, as ``{"role", "content"}`` dicts (a system turn first, if any).
        reasoning: The teacher's thinking text (stripped), or None when the trace has none.
        answer_text: The visible final reply after the thinking (stripped).
        gold: The reference answer used to grade the problem (e.g. ``"B"``, ``"\\frac{1}{2}"``), or None.
        choices: The options of a multiple-choice problem (lettered A, B, ... in the prompt), or None.
        source: Where the record came from, ``"path:line"`` (1-based line, row or list item).
    """

    id: str
    messages: list[dict[str, str]]
    reasoning: str | None
    answer_text: str
    gold: str | None = None
    choices: list[str] | None = None
    source: str = ""


@dataclass
class TokenizedTrace:
    """A trace rendered with a tokenizer's chat template.

    ``labels`` is aligned with ``input_ids`` in the Hugging Face convention: ``labels[t] == input_ids[t]`` on
    trained tokens (the assistant reply and its end-of-turn token) and :data:`IGNORE_INDEX` (-100) elsewhere (the
    prompt and anything the template emits after the end-of-turn token). ``index`` is the trace's position in the
    dataset (what ``trace_index`` in a micro-batch refers to). ``truncated`` marks a trace cut to
    ``max_length`` under ``overlong="truncate"``.
    """

    index: int
    record: TraceRecord
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_response_tokens(self) -> int:
        """Number of trained (labelled) tokens."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class LoadStats:
    """What :func:`load_records` read: rows seen, rows skipped for an empty reply or
    for no verified generation, records returned."""

    source: str
    rows: int = 0
    skipped_empty: int = 0
    skipped_unverified: int = 0
    loaded: int = 0
    limit: int | None = None
