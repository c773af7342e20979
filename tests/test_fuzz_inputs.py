"""Bounded hypothesis fuzzing of the trace reader and the graders: only our own error types, never a crash."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t3s.data import FIELD_PRESETS, TraceDataError, load_records
from t3s.evals.grading.graders import grade_aime, grade_exact, grade_mc
from t3s.evals.grading.verdict import Verdict

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# text biased towards what the graders look for
_PIECES = st.sampled_from([
    "\\boxed{", "}", "{", "\\}", "\\{", "<think>", "</think>", "<|begin_of_thought|>", "<|end_of_thought|>",
    "The answer is ", "Hence n = ", "Answer: ", "25", "-", "\u2212", "/", "^", "_3", "\\frac{50}{2}", "\\text{",
    "(C)", ".", "\n", " ", "$", "\\fbox{", "\ud800", "9" * 50, "0", "!", ",",
])
RESPONSES = st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=60).map("".join))

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_ROWS = st.dictionaries(
    st.sampled_from(["id", "prompt", "messages", "question", "options", "reasoning", "response", "answer_text",
                     "answer", "system"]),
    _JSON_VALUES,
    max_size=6,
)


@FUZZ
@given(response=RESPONSES, gold=st.sampled_from(["25", "0", "7"]))
def test_graders_never_crash_and_stay_fast(response: str, gold: str) -> None:
    for grader, gold_value in ((grade_aime, gold), (grade_exact, gold), (grade_mc, "C")):
        start = time.process_time()  # CPU time: load stretches the wall clock, not the grader's work
        verdict = grader(response, gold_value)
        assert isinstance(verdict, Verdict) and time.process_time() - start < 1.0
        if verdict.correct:  # credit needs the answer outside any reasoning block
            assert not verdict.truncated and verdict.extracted is not None


@FUZZ
@given(lines=st.lists(st.one_of(_ROWS.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
                      min_size=0, max_size=5))
def test_the_trace_reader_accepts_or_refuses_in_one_line(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "traces.jsonl"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
        try:
            records, stats = load_records(path, FIELD_PRESETS["default"])
        except TraceDataError as err:
            assert "\n" not in str(err) and "traces.jsonl" in str(err)
        else:
            assert records and stats.loaded == len(records)
            assert len({r.id for r in records}) == len(records)
