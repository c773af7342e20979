"""Teacher-trace data: row reading, records and field presets, chat-template rendering with completion-only
labels, packing, and the ``TeacherTraceDataModule`` that turns traces into optimizer-step batches.

The names below are imported on first use, so reading rows or answer text (``t3s grade``) loads no torch,
transformers or Lightning.
"""

from __future__ import annotations

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(
    __name__,
    {
        ".fields": ("FIELD_PRESETS", "FieldMapping"),
        ".module": ("ScoringBatches", "TeacherTraceDataModule"),
        ".packing": ("collate", "collate_rows", "first_fit_decreasing"),
        ".records": ("load_records",),
        ".render": ("tokenize_trace", "show_trace", "use_chat_template"),
        ".rows": ("DataFileError", "iter_rows"),
        ".schema": ("IGNORE_INDEX", "LoadStats", "TokenizedTrace", "TraceDataError", "TraceRecord"),
        ".sources": ("TraceSource", "parse_sources"),
        ".steps": ("TraceSchedule", "StepSampler"),
    },
)
