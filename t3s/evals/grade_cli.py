"""Re-grade a JSONL file of generations (``t3s grade``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from t3s.evals.graders import GRADERS
from t3s.evals.metrics import BenchmarkMetrics
from t3s.evals.verdict import UngradableGold

__all__ = ["grade_file"]


def _resolve_grader(task: str) -> tuple[str, dict[str, Any]]:
    if task in GRADERS:
        return task, {}
    from t3s.evals.tasks import load_task_spec

    spec = load_task_spec(task)
    return spec.grader, dict(spec.grader_kwargs)


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
            grader (and grader kwargs) is used.
        input: JSONL file, one generation per row.
        response_field: the field holding the model's response text.
        gold_field: the field holding the gold answer (for multiple choice: the letter of this sample).
        output: JSONL file to write: the input rows in the same order, each with ``extracted``,
            ``correct``, ``truncated``, ``extraction_failed`` and ``timed_out`` added. Rows whose gold
            the grader cannot parse get ``correct: null`` and ``excluded: "ungradable gold"`` and are
            left out of the metrics (reported once).
        hit_limit_field: optional boolean field saying that generation hit its token limit (such
            responses are truncated, hence wrong).

    Returns:
        The metrics over graded rows (each row one sample): ``avg@1`` (accuracy), ``truncation_rate``,
        ``extraction_failure_rate``, ``timeout_rate``, ``mean_tokens`` (when rows carry ``num_tokens``),
        plus ``num_rows``, ``num_graded``, ``num_correct`` and ``num_excluded``.

    Raises:
        ValueError: ``file:line`` of a malformed row (invalid JSON, not an object, missing field, response
            not a string).
    """
    grader_name, grader_kwargs = _resolve_grader(task)
    grader = GRADERS[grader_name]
    in_path = Path(input)
    rows: list[dict[str, Any]] = []
    with in_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{in_path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON: {err}") from err
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for name in (response_field, gold_field):
                if name not in row or row[name] is None:
                    raise ValueError(f"{where}: missing field {name!r}; available: {sorted(row)}")
            if not isinstance(row[response_field], str):
                raise ValueError(f"{where}: field {response_field!r} must be a string")
            if hit_limit_field is not None and hit_limit_field not in row:
                raise ValueError(f"{where}: missing field {hit_limit_field!r}")
            rows.append(row)

    metric = BenchmarkMetrics(n=1)
    bad_golds: dict[str, int] = {}
    out_rows = []
    cols: dict[str, list[list[Any]]] = {
        k: [] for k in ("correct", "truncated", "extraction_failed", "timed_out")
    }
    tokens: list[list[int]] = []
    for row in rows:
        gold = row[gold_field]
        gold = str(int(gold)) if isinstance(gold, float) and gold.is_integer() else str(gold)
        hit = bool(row[hit_limit_field]) if hit_limit_field is not None else False
        try:
            v = grader(row[response_field], gold, hit_token_limit=hit, **grader_kwargs)
        except UngradableGold:
            bad_golds[gold] = bad_golds.get(gold, 0) + 1
            out_rows.append({**row, "extracted": None, "correct": None, "excluded": "ungradable gold"})
            continue
        out_rows.append(
            {
                **row,
                "extracted": v.extracted,
                "correct": v.correct,
                "truncated": v.truncated,
                "extraction_failed": v.extraction_failed,
                "timed_out": v.timed_out,
            }
        )
        for key in cols:
            cols[key].append([getattr(v, key)])
        if isinstance(row.get("num_tokens"), (int, float)):
            tokens.append([int(row["num_tokens"])])

    out_path = Path(output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in out_rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out_path)

    graded = len(rows) - sum(bad_golds.values())
    if graded:
        metric.update(**cols, num_tokens=tokens if len(tokens) == graded else None)
        metrics = metric.compute()
    else:
        metrics = {"avg@1": 0.0}
    metrics.pop("num_items", None)
    metrics.pop("num_samples", None)
    if len(tokens) != graded or not graded:
        metrics.pop("mean_tokens", None)
    num_correct = sum(1 for r in out_rows if r.get("correct") is True)
    metrics.update(
        num_rows=float(len(rows)),
        num_graded=float(graded),
        num_correct=float(num_correct),
        num_excluded=float(len(rows) - graded),
    )
    if bad_golds:
        shown = ", ".join(f"{g!r} (x{c})" for g, c in list(bad_golds.items())[:10])
        print(
            f"excluded {len(rows) - graded} row(s) with a gold answer the {grader_name!r} grader cannot parse: {shown}"
        )
    print(
        f"{task}: accuracy {metrics['avg@1']:.4f} ({num_correct}/{graded} correct), "
        f"truncated {metrics.get('truncation_rate', 0.0):.2%}, "
        f"extraction failed {metrics.get('extraction_failure_rate', 0.0):.2%}, wrote {out_path}"
    )
    return metrics
