"""``t3s grade``: re-grade a JSONL file of generations (no torch).
"""

from __future__ import annotations

from pathlib import Path

from t3s.errors import ConfigError


def run(
    task: str,
    input: str,
    response_field: str = "response",
    gold_field: str = "gold",
    output: str | None = None,
    hit_limit_field: str | None = None,
) -> None:
    """Re-grade a JSONL file of generations (ours or another tool's); prints the accuracy.

    Args:
        task: grader (``aime``, ``math``, ``mc``, ``exact``) or a task name (``aime24``, …) / YAML path.
        input: JSONL with one generation per line.
        response_field: field holding the model's response.
        gold_field: field holding the gold answer.
        output: where to write one verdict per input row (same order; adds extracted, correct, truncated).
        hit_limit_field: optional boolean field marking responses cut at the token limit.
    """
    from t3s.evals.grade_cli import grade_file

    try:
        grade_file(task, input, response_field, gold_field,
                   output or str(Path(input).with_suffix(".verdicts.jsonl")), hit_limit_field=hit_limit_field)
    except ValueError as err:  # grade_file's documented input errors: ``file:line: …``
        raise ConfigError(str(err)) from None
