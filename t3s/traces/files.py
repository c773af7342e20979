"""Trace files: JSON Lines read tolerantly (a run killed mid-write leaves a partial last line) and rewritten
atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from t3s.errors import ConfigError


class TracesError(ConfigError):
    """Bad input to ``t3s traces`` (a missing file or field, a resumed run with other settings)."""


def read_rows(path: str | Path, *, tolerate_partial: bool = False) -> list[dict[str, Any]]:
    """The rows of a JSONL trace file. ``tolerate_partial``: drop an unterminated last line (a killed writer)."""
    path = Path(path)
    if not path.is_file():
        raise TracesError(f"{path}: no such trace file")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if tolerate_partial and lines and lines[-1].strip():
        lines = lines[:-1]  # no newline after it: written only in part
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TracesError(f"{path}:{number}: not a JSON object ({err.msg})") from None
        if not isinstance(row, dict):
            raise TracesError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path`` through a temporary sibling renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json_line(row))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` in one write, synced to disk (a chunk of a generation run)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json_line(row) for row in rows))
        f.flush()
        os.fsync(f.fileno())
