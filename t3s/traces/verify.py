"""``t3s traces verify``: grade every trace against its gold with t3s's graders; mark truncated traces."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from t3s.traces.files import TracesError, read_rows, write_rows


def verify_traces(path: str, grader: str = "math", output: str | None = None) -> dict[str, int]:
    """Add ``correct``, ``extracted``, ``truncated`` and ``grader`` to every row of ``path`` (in place, or into
    ``output``); returns the counts.

    ``truncated``: the trace stopped at the token limit (``hit_limit``) or its reasoning block never closed;
    a truncated trace is never correct. A row without a gold answer gets ``correct: null``.
    """
    from t3s.evals.grading.graders import GRADERS, grade
    from t3s.evals.grading.verdict import UngradableGold

    if grader not in GRADERS:
        raise TracesError(f"unknown grader {grader!r}; choose from {', '.join(sorted(GRADERS))}")
    rows = read_rows(path)
    if not rows:
        raise TracesError(f"{path}: no traces")
    counts: Counter[str] = Counter()
    for number, row in enumerate(rows, start=1):
        response = row.get("response")
        if not isinstance(response, str):
            raise TracesError(f"{path}:{number}: no 'response' text")
        hit_limit = bool(row.get("hit_limit"))
        gold = row.get("answer")
        if gold is None:
            verdict_correct, extracted, truncated = None, None, hit_limit
        else:
            try:
                verdict = grade(grader, response, str(gold), hit_token_limit=hit_limit)
            except UngradableGold as err:
                raise TracesError(
                    f"{path}:{number}: the {grader} grader cannot read the gold {gold!r} ({err})"
                ) from None
            verdict_correct, extracted, truncated = verdict.correct, verdict.extracted, verdict.truncated or hit_limit
        row.update(correct=verdict_correct, extracted=extracted, truncated=truncated, grader=grader)
        counts["traces"] += 1
        counts["correct"] += verdict_correct is True
        counts["truncated"] += truncated
        counts["no_gold"] += gold is None
    target = Path(output) if output else Path(path)
    write_rows(target, rows)
    print(f"{target}: {counts['correct']}/{counts['traces']} correct, {counts['truncated']} truncated"
          + (f", {counts['no_gold']} without a gold answer" if counts["no_gold"] else ""))
    return dict(counts)
