"""Teacher-trace data: row reading, records and field presets, chat-template rendering with completion-only
labels, packing, and the ``TeacherTraceDataModule`` that turns traces into optimizer-step batches.

The names below are imported on first use, so reading rows or answer text (``t3s grade``) loads no torch,
transformers or Lightning.
"""

from __future__ import annotations

from t3s.lazy import lazy_exports

_EXPORTS = {
    "FIELD_PRESETS": "t3s.data.fields",
    "FieldMapping": "t3s.data.fields",
    "ScoringBatches": "t3s.data.module",
    "TeacherTraceDataModule": "t3s.data.module",
    "collate": "t3s.data.packing",
    "collate_rows": "t3s.data.packing",
    "first_fit_decreasing": "t3s.data.packing",
    "load_records": "t3s.data.records",
    "tokenize_trace": "t3s.data.render",
    "DataFileError": "t3s.data.rows",
    "iter_rows": "t3s.data.rows",
    "IGNORE_INDEX": "t3s.data.schema",
    "LoadStats": "t3s.data.schema",
    "TokenizedTrace": "t3s.data.schema",
    "TraceDataError": "t3s.data.schema",
    "TraceRecord": "t3s.data.schema",
    "TraceSource": "t3s.data.sources",
    "parse_sources": "t3s.data.sources",
    "show_trace": "t3s.data.render",
    "use_chat_template": "t3s.data.render",
    "TraceSchedule": "t3s.data.steps",
    "StepSampler": "t3s.data.steps",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
