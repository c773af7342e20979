"""``t3s traces select``: keep N traces in a file ``fit --data.path`` reads as it is."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from t3s.traces.files import TracesError, read_rows, write_rows

RULES = ("verified", "length", "random", "difficulty")


def _spread(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` rows taken round-robin over problems (in the given order): every problem gets one trace
    before any gets a second."""
    queues: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        queues.setdefault(row.get("problem_id", row.get("id")), []).append(row)
    picked: list[dict[str, Any]] = []
    while len(picked) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def failure_rates(student: str | None) -> dict[Any, float]:
    """Problem id → the fraction of θ_0's traces that are not correct (a verified trace file of θ_0)."""
    if not student:
        raise TracesError("--rule difficulty needs --student: θ_0's verified traces of the same problems")
    rows = read_rows(student)
    if not any("correct" in r for r in rows):
        raise TracesError(f"{student} is not verified; run `t3s traces verify {student}` first")
    tally: dict[Any, list[int]] = {}
    for row in rows:
        counts = tally.setdefault(row.get("problem_id"), [0, 0])
        counts[0] += row.get("correct") is not True
        counts[1] += 1
    return {pid: wrong / total for pid, (wrong, total) in tally.items()}


def select_traces(
    path: str,
    n: int,
    output: str | None = None,
    rule: Literal["verified", "length", "random", "difficulty"] = "verified",
    seed: int = 0,
    keep_truncated: bool = False,
    student: str | None = None,
) -> Path:
    """Write ``n`` traces of ``path`` to ``output`` (default: ``<path stem>.selected.jsonl`` next to it).

    Rules: ``verified`` keeps correct traces only (``t3s traces verify`` first), in a seeded random order spread
    over problems (one trace per problem before a second); ``length`` the shortest traces (``num_tokens``, else
    characters); ``random`` a seeded random subset. Truncated traces are left out unless ``keep_truncated``.
    Fewer candidates than ``n``: all of them are written, with a note.
    """
    if rule not in RULES:
        raise TracesError(f"unknown rule {rule!r}; choose {', '.join(RULES)}")
    if n < 1:
        raise TracesError(f"--n must be >= 1, got {n}")
    rows = read_rows(path)
    if rule in ("verified", "difficulty") and not any("correct" in r for r in rows):
        raise TracesError(f"{path} is not verified; run `t3s traces verify {path}` first")
    candidates = [r for r in rows if keep_truncated or not (r.get("truncated") or r.get("hit_limit"))]
    if rule in ("verified", "difficulty"):
        candidates = [r for r in candidates if r.get("correct") is True]
    if not candidates:
        raise TracesError(f"{path}: no trace passes rule {rule!r}"
                          + ("" if keep_truncated else " (truncated traces are left out; --keep_truncated keeps them)"))
    output = output or str(Path(path).with_suffix("")) + ".selected.jsonl"
    rng = random.Random(seed)
    if rule == "difficulty":
        failure = failure_rates(student)
        rng.shuffle(candidates)
        candidates.sort(key=lambda r: -failure.get(r.get("problem_id"), 0.0))  # stable: seeded order within
        chosen = _spread(candidates, n)
    elif rule == "length":
        chosen = sorted(candidates,
                        key=lambda r: (r.get("num_tokens") or len(r.get("response", "")), str(r.get("id"))))[:n]
    else:
        rng.shuffle(candidates)
        chosen = _spread(candidates, n) if rule == "verified" else candidates[:n]
    if Path(output).resolve() == Path(path).resolve():
        raise TracesError("--output must differ from the trace file it selects from")
    write_rows(output, chosen)
    note = f" (only {len(chosen)} pass rule {rule!r})" if len(chosen) < n else ""
    print(f"wrote {len(chosen)} traces to {output}{note}; train with --data.path {output}")
    return Path(output)
