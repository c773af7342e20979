"""Trace records: presets on hand-written rows, the real R1 traces, and one-line errors on bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from t3s.data import FIELD_PRESETS, FieldMapping, TraceDataError, load_records
from t3s.data.text import last_boxed, split_response


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ text helpers
def test_last_boxed_takes_the_last_balanced_group() -> None:
    solution = r"First $\boxed{3}$ is wrong; in fact $x = \boxed{\frac{1}{2}}$."
    assert last_boxed(solution) == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{\sqrt{\frac{a}{b}} + {c}} and \fbox{7}") == "7"
    assert last_boxed(r"ends \boxed{2} then \boxed{unclosed") == "2"
    assert last_boxed("no box here") is None


def test_split_response_markers() -> None:
    assert split_response("<think>\nsteps\n</think>\n\nAnswer: 4") == ("steps", "Answer: 4")
    assert split_response("steps only closed</think>4") == ("steps only closed", "4")
    assert split_response("plain answer ") == (None, "plain answer")
    open_thoughts = (
        "<|begin_of_thought|>\n\nthink hard\n\n<|end_of_thought|>\n\n"
        "<|begin_of_solution|>\n\nx = 2\n\n<|end_of_solution|>"
    )
    assert split_response(open_thoughts) == ("think hard", "x = 2")


# ------------------------------------------------------------------------------------------------ presets
def test_default_preset_prompt_response_and_messages(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "traces.jsonl",
        [
            {"id": 7, "prompt": "What is 2+2?", "reasoning": " add ", "answer_text": " 4 ", "answer": 4},
            {"prompt": "Say hi", "response": "<think>greet</think>\n\nhi", "system": "Be kind."},
            {
                "messages": [
                    {"role": "user", "content": "q?"},
                    {"role": "assistant", "content": "<think>r</think>a"},
                ],
            },
            {"question": "Pick", "options": ["x", "y"], "answer_text": "B", "answer": "B"},
        ],
    )
    records, stats = load_records(path, FIELD_PRESETS["default"])
    assert (stats.rows, stats.loaded, stats.skipped_empty) == (4, 4, 0)
    first, second, third, fourth = records
    assert (first.id, first.messages, first.reasoning, first.answer_text, first.gold) == (
        "7",
        [{"role": "user", "content": "What is 2+2?"}],
        "add",
        "4",
        "4",
    )
    assert first.source == f"{path}:1"
    assert second.id == f"{path}:2"
    assert second.messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Say hi"},
    ]
    assert (second.reasoning, second.answer_text, second.gold) == ("greet", "hi", None)
    assert third.messages == [{"role": "user", "content": "q?"}]
    assert (third.reasoning, third.answer_text) == ("r", "a")
    assert fourth.choices == ["x", "y"]
    assert fourth.messages[0]["content"].startswith("Pick\n\n(A) x\n(B) y\n\nAnswer with the letter")


def test_s1k_preset_gold_from_worked_solution(tmp_path: Path) -> None:
    row = {
        "question": "Half of one?",
        "solution": r"Divide: $1/2$, so the answer is $\boxed{\frac{1}{2}}$.",
        "deepseek_thinking_trajectory": "One split in two halves.",
        "deepseek_attempt": r"The answer is $\boxed{\frac12}$.",
    }
    no_box = dict(row, solution="It is one half.")
    records, _ = load_records(write_jsonl(tmp_path / "s1k.jsonl", [row, no_box]), FIELD_PRESETS["s1k"])
    assert records[0].gold == r"\frac{1}{2}"
    assert records[1].gold is None
    assert records[0].reasoning == "One split in two halves."
    assert records[0].answer_text == r"The answer is $\boxed{\frac12}$."
    assert records[0].messages == [{"role": "user", "content": "Half of one?"}]


def test_conversations_preset_sharegpt_and_openthoughts(tmp_path: Path) -> None:
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "You think first."},
            {"from": "human", "value": "2*3?"},
            {"from": "gpt", "value": "<think>\ntwo threes\n</think>\n\n6"},
        ]
    }
    open_thoughts = {
        "system": "Reason step by step.",
        "conversations": [
            {"from": "user", "value": "1+1?"},
            {
                "from": "assistant",
                "value": "<|begin_of_thought|>\n\none and one\n\n<|end_of_thought|>\n\n"
                "<|begin_of_solution|>\n\n2\n\n<|end_of_solution|>",
            },
        ],
    }
    records, _ = load_records(
        write_jsonl(tmp_path / "conv.jsonl", [sharegpt, open_thoughts]), FIELD_PRESETS["conversations"]
    )
    assert records[0].messages == [
        {"role": "system", "content": "You think first."},
        {"role": "user", "content": "2*3?"},
    ]
    assert (records[0].reasoning, records[0].answer_text) == ("two threes", "6")
    assert records[1].messages == [
        {"role": "system", "content": "Reason step by step."},
        {"role": "user", "content": "1+1?"},
    ]
    assert (records[1].reasoning, records[1].answer_text) == ("one and one", "2")


def test_r1_mc_preset_small(tmp_path: Path) -> None:
    row = {
        "id": "q1",
        "question": "Which is a prime?",
        "options": ["4", "6", "7"],
        "answer_letter": "C",
        "reasoning": "7 has no divisors.",
        "answer_text": "The answer is C.",
    }
    (record,), _ = load_records(write_jsonl(tmp_path / "mc.jsonl", [row]), FIELD_PRESETS["r1_mc"])
    assert record.messages == [
        {
            "role": "user",
            "content": "Which is a prime?\n\n(A) 4\n(B) 6\n(C) 7\n\n"
            "Answer with the letter of the correct option inside \\boxed{}, e.g. \\boxed{A}.",
        }
    ]
    assert (record.id, record.gold, record.choices) == ("q1", "C", ["4", "6", "7"])


def test_r1_mc_real_traces(shared_dir: Path) -> None:
    path = shared_dir / "data" / "r1_traces_mmlupro_200.jsonl"
    records, stats = load_records(path, FIELD_PRESETS["r1_mc"])
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert (len(records), stats.rows, stats.skipped_empty) == (200, 200, 0)
    assert [r.gold for r in records] == [row["answer_letter"] for row in rows]
    assert {r.gold for r in records} == set("ABCDEFGHIJ")
    assert [len(r.choices or []) for r in records] == [len(row["options"]) for row in rows]
    assert sum(len(r.choices or []) == 10 for r in records) == 186
    assert records[0].source == f"{path}:1" and records[-1].source == f"{path}:200"
    assert records[0].id == "8ffec765762f5030"
    prompt = records[0].messages[0]["content"]
    assert "\n(A) Mars does not have enough internal heat" in prompt and "\n(J) the greenhouse effect" in prompt
    assert all(r.reasoning and r.answer_text for r in records)


def test_limit_is_a_reproducible_nested_subset(tmp_path: Path) -> None:
    rows = [{"id": str(i), "prompt": f"q{i}", "answer_text": f"a{i}"} for i in range(20)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    five, stats = load_records(path, FIELD_PRESETS["default"], limit=5, seed=3)
    again, _ = load_records(path, FIELD_PRESETS["default"], limit=5, seed=3)
    ten, _ = load_records(path, FIELD_PRESETS["default"], limit=10, seed=3)
    other, _ = load_records(path, FIELD_PRESETS["default"], limit=5, seed=4)
    ids = [r.id for r in five]
    assert stats.loaded == 5 and ids == [r.id for r in again]
    assert ids == sorted(ids, key=int)  # file order kept
    assert set(ids) <= {r.id for r in ten}
    assert ids != [r.id for r in other]


def test_json_list_and_parquet(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "answer_text": "b"}, {"prompt": "c", "answer_text": "d"}]
    json_path = tmp_path / "t.json"
    json_path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    records, _ = load_records(json_path, FIELD_PRESETS["default"])
    assert [r.source for r in records] == [f"{json_path}:2", f"{json_path}:6"]
    assert [r.answer_text for r in records] == ["b", "d"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet_path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    records, _ = load_records(parquet_path, FIELD_PRESETS["default"])
    assert [(r.messages[0]["content"], r.answer_text, r.source) for r in records] == [
        ("a", "b", f"{parquet_path}:1"),
        ("c", "d", f"{parquet_path}:2"),
    ]


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_required_field_names_file_line_and_key(tmp_path: Path) -> None:
    good = {
        "id": "1",
        "question": "q",
        "options": ["a", "b"],
        "answer_letter": "A",
        "reasoning": "r",
        "answer_text": "A",
    }
    bad = {k: v for k, v in good.items() if k != "reasoning"}
    path = write_jsonl(tmp_path / "traces.jsonl", [good, bad])
    with pytest.raises(TraceDataError) as info:
        load_records(path, FIELD_PRESETS["r1_mc"])
    assert str(info.value) == f"{path}:2: record has no field 'reasoning' (data.layout.fields.reasoning)"


def test_override_makes_a_field_required(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [{"prompt": "q", "thinking": "t", "answer_text": "a"}, {"prompt": "q", "answer_text": "a"}],
    )
    mapping = FIELD_PRESETS["default"].with_overrides({"reasoning": "thinking"})
    with pytest.raises(
        TraceDataError, match=r"t\.jsonl:2: record has no field 'thinking' \(data\.layout\.fields\.reasoning\)"
    ):
        load_records(path, mapping)
    with pytest.raises(TraceDataError, match=r"unknown field mapping key\(s\) \['reasonning'\]"):
        FIELD_PRESETS["default"].with_overrides({"reasonning": "x"})


def test_non_json_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"prompt": "q", "answer_text": "a"}\n\n{"prompt": "q", oops}\n', encoding="utf-8")
    with pytest.raises(TraceDataError, match=r"t\.jsonl:3: line is not valid JSON"):
        load_records(path, FIELD_PRESETS["default"])


def test_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"prompt": "q", "answer_text": "a"}\n{"prompt": "caf\xe9", "answer_text": "a"}\n')
    with pytest.raises(TraceDataError, match=r"t\.jsonl:2: line is not valid UTF-8"):
        load_records(path, FIELD_PRESETS["default"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": 5, "answer_text": "a"},
            r"t\.jsonl:1: field 'prompt' must be a string, got int \(data\.layout\.fields\.prompt\)",
        ),
        (
            {"prompt": "q", "answer_text": "a", "reasoning": [1]},
            r"field 'reasoning' must be a string or a list of strings, got list",
        ),
        (
            {"question": "q", "options": "abc", "answer_text": "a"},
            r"field 'options' must be a list of strings, got str",
        ),
        ({"messages": [{"role": "robot", "content": "x"}], "answer_text": "a"}, r"turn 0 has role 'robot'"),
        ({"answer_text": "a"}, r"record has no prompt: none of the fields 'messages', 'prompt', 'question'"),
        ({"prompt": "q"}, r"record has no reply: neither field 'answer_text' nor 'response'"),
        (
            {"prompt": "q", "answer_text": "a", "answer": {"x": 1}},
            r"field 'answer' must be a string or number, got dict",
        ),
    ],
)
def test_wrong_types_and_missing_parts(tmp_path: Path, row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(TraceDataError, match=message):
        load_records(path, FIELD_PRESETS["default"])


def test_non_object_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(TraceDataError, match=r"t\.jsonl:1: expected a JSON object, got list"):
        load_records(path, FIELD_PRESETS["default"])


def test_empty_teacher_reply_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"prompt": "q1", "reasoning": "", "answer_text": "  "},
        {"prompt": "q2", "reasoning": "r", "answer_text": "a"},
        {"prompt": "q3", "response": "<think>\n</think>\n\n"},
        {"prompt": "q4", "reasoning": "only thinking", "answer_text": ""},
    ]
    with caplog.at_level(logging.WARNING, logger="t3s.data.records"):
        records, stats = load_records(write_jsonl(tmp_path / "t.jsonl", rows), FIELD_PRESETS["default"])
    assert [r.messages[0]["content"] for r in records] == ["q2", "q4"]
    assert (stats.rows, stats.skipped_empty, stats.loaded) == (4, 2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 of 4 records" in warnings[0]


def test_unknown_file_type_and_bad_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("prompt,answer_text\n", encoding="utf-8")
    with pytest.raises(TraceDataError, match=r"unsupported file type '\.txt'"):
        load_records(path, FIELD_PRESETS["default"])
    with pytest.raises(TraceDataError, match=r"limit must be a positive number"):
        load_records(path, FIELD_PRESETS["default"], limit=0)


def test_field_mapping_rejects_unknown_required_key() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        FieldMapping(required=("nope",))


def test_conversations_errors(tmp_path: Path) -> None:
    rows = [{"messages": []}]
    with pytest.raises(
        TraceDataError,
        match=r"c\.jsonl:1: record has no field 'conversations' \(data\.layout\.fields\.conversations\)",
    ):
        load_records(write_jsonl(tmp_path / "c.jsonl", rows), FIELD_PRESETS["conversations"])
    rows = [{"conversations": [{"from": "human", "value": "hi"}]}]
    with pytest.raises(TraceDataError, match=r"field 'conversations' has no assistant turn"):
        load_records(write_jsonl(tmp_path / "c.jsonl", rows), FIELD_PRESETS["conversations"])
    rows = [
        {
            "conversations": [
                {"from": "human", "value": "hi"},
                {"from": "gpt", "value": "yo"},
                {"from": "human", "value": "?"},
            ]
        }
    ]
    with pytest.raises(TraceDataError, match=r"has turns after the last assistant turn"):
        load_records(write_jsonl(tmp_path / "c.jsonl", rows), FIELD_PRESETS["conversations"])
