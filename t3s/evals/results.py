"""The evaluation ledger ``<run>/eval/results.jsonl``: one line per (step, task) with its metrics.

``t3s evaluate`` appends a line once a (step, task) is fully written (generations, TensorBoard scalars);
a rerun skips what the ledger holds, and the benchmark callback's ``subprocess`` mode reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_FILE = Path("eval") / "results.jsonl"


def read_results(output: str | Path) -> list[dict[str, Any]]:
    """Every line of ``<output>/eval/results.jsonl`` (an unfinished last line, from a kill, is ignored)."""
    path = Path(output) / RESULTS_FILE
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
