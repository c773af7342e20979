"""Loading teacher traces: :func:`load_records` reads a file or Hugging Face dataset into validated records.

Rows come from :func:`t3s.data.rows.iter_rows` (strict JSON, file:line locations), become records through a
:class:`~t3s.data.fields.FieldMapping` (:func:`t3s.data.validation.record_from_row`), and must carry distinct
ids. Problems raise :class:`~t3s.data.schema.TraceDataError` with one line naming the file and line.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path

from t3s.data.fields import FieldMapping
from t3s.data.rows import errors_as, iter_rows
from t3s.data.schema import LoadStats, TraceDataError, TraceRecord
from t3s.data.validation import UnverifiedRow, record_from_row

__all__ = ["load_records"]

log = logging.getLogger(__name__)


def load_records(
    path: str | Path,
    mapping: FieldMapping,
    *,
    split: str = "train",
    limit: int | None = None,
    seed: int = 0,
    subset: str | None = None,
    revision: str | None = None,
) -> tuple[list[TraceRecord], LoadStats]:
    """Read teacher traces from a local .jsonl/.json/.csv/.parquet file, a folder of them, a
    ``datasets.save_to_disk`` folder or a Hugging Face dataset id (``subset``, ``split``, ``revision``).

    Every row is validated (a bad one raises :class:`TraceDataError`); rows whose teacher reply is empty are
    skipped, counted in the stats and reported in one warning. ``limit`` keeps a reproducible random subset of
    ``limit`` records (drawn with ``seed``, kept in file order; a smaller limit gives a subset of a larger one).
    """
    if limit is not None and limit < 1:
        raise TraceDataError(f"{path}: limit must be a positive number of records, got {limit} (data.limit)")
    stats = LoadStats(source=str(path), limit=limit)
    records: list[TraceRecord] = []
    first_seen: dict[str, str] = {}
    with errors_as(TraceDataError):
        for where, row in iter_rows(path, split, subset, revision):
            stats.rows += 1
            if not isinstance(row, Mapping):
                raise TraceDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            try:
                record = record_from_row(row, mapping, where)
            except UnverifiedRow:
                stats.skipped_unverified += 1
                continue
            if record is None:
                stats.skipped_empty += 1
                continue
            if record.id in first_seen:
                raise TraceDataError(
                    f"{where}: duplicate id {record.id[:80]!r} (first at {first_seen[record.id]}) "
                    "(data.layout.fields.id)"
                )
            first_seen[record.id] = where
            records.append(record)
    if not records:
        detail = f"all {stats.rows} rows have an empty teacher reply" if stats.rows else "the file holds no rows"
        if stats.skipped_unverified:
            detail = (f"of {stats.rows} rows, {stats.skipped_unverified} have no verified generation and "
                      f"{stats.skipped_empty} an empty teacher reply")

        raise TraceDataError(f"{path}: no usable teacher traces ({detail})")
    if stats.skipped_empty:
        log.warning(
            "skipped %d of %d records of %s with an empty teacher reply (no reasoning and empty answer)",
            stats.skipped_empty,
            stats.rows,
            path,
        )
    if stats.skipped_unverified:
        log.warning(
            "skipped %d of %d records of %s with no verified generation (data.layout.fields.verified: %s)",
            stats.skipped_unverified,
            stats.rows,
            path,
            mapping.verified,
        )
    if limit is not None and limit < len(records):
        order = list(range(len(records)))
        random.Random(seed).shuffle(order)
        records = [records[i] for i in sorted(order[:limit])]
    stats.loaded = len(records)
    return records, stats
