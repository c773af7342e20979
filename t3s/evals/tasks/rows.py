"""Reading a task's items: its dataset (a local file beside the task YAML, or a Hugging Face dataset id) through
the shared row reader :func:`t3s.data.rows.iter_rows`, each row checked and turned into an :class:`EvalItem`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from t3s.data.rows import LOCAL_SUFFIXES, errors_as, iter_file_rows, iter_hub_rows
from t3s.evals.grading.graders import MC_LETTERS, mc_letter
from t3s.evals.tasks.spec import MAX_CHOICES, EvalItem, TaskError, TaskFields, TaskSpec

__all__ = ["iter_task_rows", "make_item"]


def _resolve_local(dataset: str, source: str | None) -> Path | None:
    path = Path(dataset).expanduser()
    looks_local = path.suffix in LOCAL_SUFFIXES or path.is_absolute() or dataset.startswith(".")
    candidates = [path]
    if source is not None and not path.is_absolute():
        candidates.append(Path(source).parent / path)
    for c in candidates:
        if c.is_file():
            return c
    if looks_local:
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"dataset file not found: {dataset} (tried {tried})")
    return None


def iter_task_rows(spec: TaskSpec) -> Iterator[tuple[str, Any]]:
    """``(location, row)`` of the task's dataset; unreadable data raises :class:`TaskError` naming file:line."""
    if spec.dataset is None:
        raise TaskError(f"task {spec.name!r} has no dataset (build in-memory tasks with EvalTask.from_items)")
    local = _resolve_local(spec.dataset, spec.source)
    rows = iter_file_rows(local) if local is not None else iter_hub_rows(spec.dataset, spec.split, spec.subset)
    with errors_as(TaskError):
        yield from rows


def _gold_to_str(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TaskError(f"{where}: the answer is {value}, not a usable gold answer")
        if value.is_integer():
            return str(int(value))
    if not isinstance(value, (str, int, float)):
        raise TaskError(f"{where}: the answer must be a string or number, got {type(value).__name__}")
    return str(value).strip()


def _resolve_mc_gold(answer: Any, choices: Sequence[str], answer_type: str, where: str) -> int:
    """Original index of the correct option."""
    kind = answer_type
    if kind == "auto":
        if isinstance(answer, int) and not isinstance(answer, bool):
            kind = "index"
        elif (
            isinstance(answer, str) and mc_letter(answer) is not None and len(answer.strip().strip("()")) == 1
        ):
            kind = "letter"
        else:
            kind = "text"
    if kind == "index":
        if isinstance(answer, bool) or not isinstance(answer, (int, str)) or not str(answer).strip().isdigit():
            raise TaskError(f"{where}: answer {str(answer)[:40]!r} is not an option index")
        idx = int(str(answer).strip()[:6])
    elif kind == "letter":
        letter = mc_letter(str(answer))
        if letter is None:
            raise TaskError(f"{where}: answer {str(answer)[:40]!r} is not an option letter A..Z")
        idx = MC_LETTERS.index(letter)
    else:
        target = str(answer).strip()
        matches = [i for i, c in enumerate(choices) if c.strip() == target]
        if not matches:
            raise TaskError(f"{where}: answer text {target[:80]!r} matches none of the options")
        idx = matches[0]
    if not 0 <= idx < len(choices):
        raise TaskError(f"{where}: answer {str(answer)[:40]!r} is out of range for {len(choices)} options")
    return idx


def _check_choices(choices: Any, where: str) -> list[str]:
    if not isinstance(choices, (list, tuple)) or not all(
        isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in choices
    ):
        raise TaskError(f"{where}: options must be a list of strings, got {type(choices).__name__}")
    out = [str(c).strip() for c in choices]
    if not 2 <= len(out) <= MAX_CHOICES:
        raise TaskError(f"{where}: need 2..{MAX_CHOICES} options, got {len(out)}")
    return out


def make_item(
    fields: TaskFields, row: Mapping[str, Any], where: str, default_id: str, multiple_choice: bool | None = None
) -> EvalItem:
    """Turn one dataset row into an :class:`EvalItem` (errors name ``where``, e.g. ``file:line``)."""
    if not isinstance(row, Mapping):
        raise TaskError(f"{where}: expected a record (mapping), got {type(row).__name__}")

    def get(col: str, what: str) -> Any:
        if col not in row or row[col] is None:
            raise TaskError(f"{where}: missing field {col!r} ({what}); available: {sorted(map(str, row))[:20]}")
        return row[col]

    raw_id = get(fields.id, "id") if fields.id else default_id
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise TaskError(f"{where}: field {fields.id!r} (id) must be a string or integer")
    item_id = str(raw_id)
    prompt = get(fields.problem, "problem")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TaskError(f"{where}: field {fields.problem!r} (problem) must be a non-empty string")
    answer = get(fields.answer, "answer")
    mc = fields.multiple_choice if multiple_choice is None else multiple_choice
    if not mc:
        gold = _gold_to_str(answer, where)
        if not gold:
            raise TaskError(f"{where}: field {fields.answer!r} (answer) is empty")
        return EvalItem(id=item_id, prompt=prompt.strip(), gold=gold, source=where)
    if fields.choice_columns:
        choices = _check_choices([get(c, "option") for c in fields.choice_columns], where)
    else:
        assert fields.choices is not None
        choices = _check_choices(get(fields.choices, "options"), where)
    idx = _resolve_mc_gold(answer, choices, fields.answer_type, where)
    return EvalItem(
        id=item_id, prompt=prompt.strip(), gold=MC_LETTERS[idx], choices=choices, gold_index=idx, source=where
    )
