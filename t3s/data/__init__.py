"""Teacher-trace data: records and presets, chat-template rendering with completion-only labels, packing,
and the ``TeacherTraceDataModule`` that turns traces into optimizer-step batches."""

from __future__ import annotations

from t3s.data.module import ScoringBatches, TeacherTraceDataModule
from t3s.data.packing import collate, collate_rows, first_fit_decreasing
from t3s.data.records import (
    PRESETS,
    FieldMapping,
    LoadStats,
    Problem,
    TokenizedTrace,
    TraceDataError,
    TraceRecord,
    load_records,
)
from t3s.data.render import tokenize_trace
from t3s.data.steps import StepPlan, StepSampler

__all__ = [
    "PRESETS",
    "FieldMapping",
    "LoadStats",
    "Problem",
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
    "load_records",
    "tokenize_trace",
]
