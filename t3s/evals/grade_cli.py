"""Re-grade a JSONL file of generations (``t3s grade``), incrementally and resumably.

Every input row is checked before anything is graded (a bad row is one :class:`GradeInputError` line naming
``file:line``). Verdicts are appended to the output one row at a time and flushed, so a crash loses at most
the row being graded; a rerun keeps the verdicts already written for the same rows and grader and grades the
rest.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from t3s.data.rows import DataFileError, errors_as, iter_jsonl_rows, json_line
from t3s.evals.grading.graders import GRADERS, grade
from t3s.evals.grading.verdict import UngradableGold

__all__ = ["GradeInputError", "grade_file"]

VERDICT_FIELDS = ("extracted", "correct", "truncated", "extraction_failed", "timed_out", "grader_error")


class GradeInputError(DataFileError):
    """A ``t3s grade`` input or output cannot be used; the message is one line naming the file (and line)."""


def _resolve_grader(task: str) -> tuple[str, dict[str, Any]]:
    if task in GRADERS:
        return task, {}
    from t3s.evals.tasks import load_task_spec

    spec = load_task_spec(task)
    return spec.grader, dict(spec.grader_kwargs)


def _read_rows(
    path: Path, response_field: str, gold_field: str, hit_limit_field: str | None
) -> list[dict[str, Any]]:
    """All rows of the input, each checked; lone surrogates in text are kept (they are written back escaped)."""
    if path.is_dir():
        raise GradeInputError(f"{path}: is a directory, not a JSONL file of generations")
    rows = []
    with errors_as(GradeInputError):
        for where, row in iter_jsonl_rows(path, allow_surrogates=True):
            if not isinstance(row, dict):
                raise GradeInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for name in (response_field, gold_field):
                if name not in row or row[name] is None:
                    raise GradeInputError(f"{where}: missing field {name!r}; available: {sorted(row)[:20]}")
            if not isinstance(row[response_field], str):
                raise GradeInputError(f"{where}: field {response_field!r} must be a string")
            gold = row[gold_field]
            if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
                raise GradeInputError(f"{where}: field {gold_field!r} must be a string or number")
            if hit_limit_field is not None and not isinstance(row.get(hit_limit_field), bool):
                raise GradeInputError(f"{where}: field {hit_limit_field!r} must be true or false")
            rows.append(row)
    if rows:
        return rows
    raise GradeInputError(f"{path}: no generations to grade (the file holds no rows)")


def _gold_text(gold: str | int | float) -> str:
    if isinstance(gold, float) and math.isfinite(gold) and gold.is_integer():
        return str(int(gold))
    return str(gold)


def _done_rows(output: Path, rows: list[dict[str, Any]], grader: str) -> tuple[list[dict[str, Any]], int]:
    """Verdict rows of an earlier run that belong to the same input rows and grader, in order, and the byte
    length of that prefix of ``output`` (what a resumed run keeps)."""
    done: list[dict[str, Any]] = []
    kept = 0
    if not output.is_file():
        return done, kept
    with output.open("rb") as fh:
        for raw, row in zip(fh, rows):
            if not raw.endswith(b"\n"):
                break  # a line cut by a crash
            try:
                verdict = json.loads(raw)
            except ValueError:
                break
            if not isinstance(verdict, dict) or verdict.get("grader") != grader:
                break
            if any(verdict.get(k) != v for k, v in row.items() if k not in (*VERDICT_FIELDS, "grader", "excluded")):
                break
            done.append(verdict)
            kept += len(raw)
    return done, kept


def _open_output(output: Path, kept: int) -> IO[str]:
    """The output, cut after its first ``kept`` bytes (verdicts being resumed), open for appending."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.is_file():
            os.truncate(output, kept)
        return output.open("a", encoding="utf-8")
    except OSError as err:
        raise GradeInputError(f"{output}: cannot write the verdicts ({err.strerror or err})") from None


def grade_file(
    task: str,
    input: str,
    response_field: str,
    gold_field: str,
    output: str,
    hit_limit_field: str | None = None,
) -> dict[str, float]:
    """Grade every row of a JSONL file of generations and write the verdicts.

    Args:
        task: a grader name (``aime``, ``math``, ``exact``, ``mc``) or a task name / YAML path whose
            grader (and grader kwargs, e.g. ``reasoning_tags``) is used.
        input: JSONL file, one generation per row.
        response_field: the field holding the model's response text.
        gold_field: the field holding the gold answer (for multiple choice: the letter of this sample).
        output: JSONL file to write: the input rows in the same order, each with ``grader``, ``extracted``,
            ``correct``, ``truncated``, ``extraction_failed``, ``timed_out`` and ``grader_error`` added. Rows
            whose gold the grader cannot parse get ``correct: null`` and ``excluded: "ungradable gold"`` and
            are left out of the metrics (reported once). Written row by row; an existing output for the
            same rows and grader is resumed.
        hit_limit_field: optional boolean field saying that generation hit its token limit (such
            responses are truncated, hence wrong).

    Returns:
        The metrics over graded rows (each row one sample): ``avg@1`` (accuracy), ``truncation_rate``,
        ``extraction_failure_rate``, ``timeout_rate``, ``mean_tokens`` (when rows carry ``num_tokens``),
        plus ``num_rows``, ``num_graded``, ``num_correct``, ``num_truncated``, ``num_excluded`` and
        ``num_resumed``.

    Raises:
        GradeInputError: ``file:line`` of a malformed row (invalid JSON, not an object, missing field, response
            not a string), an empty input, or an output that cannot be written.
    """
    grader_name, grader_kwargs = _resolve_grader(task)
    in_path, out_path = Path(input), Path(output)
    if out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve():
        raise GradeInputError(f"{out_path}: the output would overwrite the input; choose another --output")
    rows = _read_rows(in_path, response_field, gold_field, hit_limit_field)
    done, kept = _done_rows(out_path, rows, grader_name)
    out_rows = list(done)
    bad_golds: dict[str, int] = {}
    with _open_output(out_path, kept) as fh:
        for row in rows[len(done) :]:
            gold = _gold_text(row[gold_field])
            hit = bool(row[hit_limit_field]) if hit_limit_field is not None else False
            try:
                v = grade(grader_name, row[response_field], gold, hit_token_limit=hit, **grader_kwargs)
            except UngradableGold:
                verdict_row = {**row, "grader": grader_name, "extracted": None, "correct": None,
                               "excluded": "ungradable gold"}
            else:
                verdict_row = {**row, "grader": grader_name, **{k: getattr(v, k) for k in VERDICT_FIELDS}}
            fh.write(json_line(verdict_row))
            fh.flush()
            out_rows.append(verdict_row)
        os.fsync(fh.fileno())
    for row in out_rows:
        if row.get("excluded"):
            gold = _gold_text(row[gold_field])
            bad_golds[gold] = bad_golds.get(gold, 0) + 1
    return _report(task, grader_name, out_rows, bad_golds, len(done), out_path)


def _report(
    task: str, grader: str, out_rows: list[dict[str, Any]], bad_golds: dict[str, int], resumed: int, out_path: Path
) -> dict[str, float]:
    graded_rows = [r for r in out_rows if not r.get("excluded")]
    graded = len(graded_rows)
    num_correct = sum(1 for r in graded_rows if r.get("correct") is True)
    num_truncated = sum(1 for r in graded_rows if r.get("truncated"))
    errors = sum(1 for r in graded_rows if r.get("grader_error"))

    def rate(flag: str) -> float:
        return sum(1 for r in graded_rows if r.get(flag)) / graded if graded else 0.0

    # each row is one sample (n = 1), so the metrics are plain rates (no torch: t3s grade stays light)
    metrics: dict[str, float] = {
        "avg@1": num_correct / graded if graded else 0.0,
        "truncation_rate": rate("truncated"),
        "extraction_failure_rate": rate("extraction_failed"),
        "timeout_rate": rate("timed_out"),
    }
    tokens = [float(r["num_tokens"]) for r in graded_rows if _is_count(r.get("num_tokens"))]
    if graded and len(tokens) == graded:
        metrics["mean_tokens"] = sum(tokens) / graded
    metrics.update(
        num_rows=float(len(out_rows)),
        num_graded=float(graded),
        num_correct=float(num_correct),
        num_truncated=float(num_truncated),
        num_excluded=float(len(out_rows) - graded),
        num_resumed=float(resumed),
    )
    if resumed:
        print(f"resumed: kept the verdicts of the first {resumed} row(s) from {out_path}")
    if bad_golds:
        shown = ", ".join(f"{g[:60]!r} (x{c})" for g, c in list(bad_golds.items())[:10])
        print(f"excluded {len(out_rows) - graded} row(s) with a gold answer the {grader!r} grader cannot parse: "
              f"{shown}")
    if errors:
        print(f"the grader failed on {errors} response(s); they are graded wrong (see the log)")
    print(
        f"{task}: accuracy {metrics['avg@1']:.4f} ({num_correct}/{graded} correct), "
        f"truncated {num_truncated} ({metrics.get('truncation_rate', 0.0):.2%}), "
        f"extraction failed {metrics.get('extraction_failure_rate', 0.0):.2%}, wrote {out_path}"
    )
    return metrics


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
