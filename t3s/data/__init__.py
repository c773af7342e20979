"""Teacher-trace data: row reading, records and field presets, chat-template rendering with completion-only
labels, packing, and the ``TeacherTraceDataModule`` that turns traces into optimizer-step batches."""

from __future__ import annotations

from t3s.data.fields import FIELD_PRESETS, FieldMapping
from t3s.data.module import ScoringBatches, TeacherTraceDataModule
from t3s.data.packing import collate, collate_rows, first_fit_decreasing
from t3s.data.records import load_records
from t3s.data.render import tokenize_trace
from t3s.data.rows import DataFileError, iter_rows
from t3s.data.schema import IGNORE_INDEX, LoadStats, TokenizedTrace, TraceDataError, TraceRecord
from t3s.data.steps import StepPlan, StepSampler

__all__ = [
    "FIELD_PRESETS",
    "IGNORE_INDEX",
    "DataFileError",
    "FieldMapping",
    "LoadStats",
    "ScoringBatches",
    "StepPlan",
    "StepSampler",
    "TeacherTraceDataModule",
    "TokenizedTrace",
    "TraceDataError",
    "TraceRecord",
    "collate",
    "collate_rows",
    "first_fit_decreasing",
    "iter_rows",
    "load_records",
    "tokenize_trace",
]
