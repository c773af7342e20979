"""Every trace layout of the README's table, each on a 3-row file: what the prompt, reasoning and answer become,
and the one-line errors when reasoning would be lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from t3s.data import FIELD_PRESETS, TraceDataError, load_records

Q = [f"What is {i}+{i}?" for i in range(3)]
R = [f"Add {i} to itself: {2 * i}." for i in range(3)]
A = [f"The answer is \\boxed{{{2 * i}}}." for i in range(3)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def think(i: int) -> str:
    return f"<think>\n{R[i]}\n</think>\n\n{A[i]}"


def user(i: int) -> dict[str, str]:
    return {"role": "user", "content": Q[i]}


#: (preset, row i -> source row). Every row must load as prompt Q[i], reasoning R[i], answer A[i].
LAYOUTS: dict[str, Any] = {
    "messages/reasoning_content": (
        "messages",
        lambda i: {"messages": [user(i), {"role": "assistant", "reasoning_content": R[i], "content": A[i]}]},
    ),
    "messages/reasoning (default preset)": (
        "default",
        lambda i: {"messages": [user(i), {"role": "assistant", "reasoning": R[i], "content": A[i]}]},
    ),
    "messages/thinking + content parts": (
        "messages",
        lambda i: {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": Q[i]}]},
                {"role": "assistant", "thinking": R[i], "content": A[i]},
            ]
        },
    ),
    "messages/think tags in content": (
        "messages",
        lambda i: {"messages": [user(i), {"role": "assistant", "content": think(i)}]},
    ),
    "TRL prompt-completion (plain)": ("prompt_completion", lambda i: {"prompt": Q[i], "completion": think(i)}),
    "TRL prompt-completion (conversational)": (
        "prompt_completion",
        lambda i: {
            "prompt": [user(i)],
            "completion": [{"role": "assistant", "reasoning_content": R[i], "content": A[i]}],
        },
    ),
    "ShareGPT": (
        "sharegpt",
        lambda i: {"conversations": [{"from": "human", "value": Q[i]}, {"from": "gpt", "value": think(i)}]},
    ),
    "s1K 1.0": (
        "s1k-1.0",
        lambda i: {"question": Q[i], "thinking_trajectories": [R[i]], "attempt": A[i], "solution": f"${2 * i}$"},
    ),
    "s1K 1.1": (
        "s1k-1.1",
        lambda i: {
            "question": Q[i],
            "deepseek_thinking_trajectory": R[i],
            "deepseek_attempt": A[i],
            "thinking_trajectories": ["a Gemini trace"],
            "solution": f"so \\boxed{{{2 * i}}}",
        },
    ),
    "OpenThoughts-114k": (
        "openthoughts",
        lambda i: {
            "system": "Think first.",
            "conversations": [
                {"from": "user", "value": Q[i]},
                {
                    "from": "assistant",
                    "value": f"<|begin_of_thought|>\n\n{R[i]}\n\n<|end_of_thought|>\n\n"
                    f"<|begin_of_solution|>\n\n{A[i]}\n\n<|end_of_solution|>",
                },
            ],
        },
    ),
    "OpenThoughts metadata": (
        "openthoughts",
        lambda i: {"problem": Q[i], "deepseek_reasoning": R[i], "deepseek_solution": A[i]},
    ),
    "OpenR1 generations": (
        "openr1",
        lambda i: {
            "uuid": f"u{i}",
            "problem": Q[i],
            "answer": str(2 * i),
            # the first generation is wrong; the second verified by the LLM judge only; the third by both
            "generations": ["<think>\nguess\n</think>\n\nwrong", think(i), think(i).replace("Add", "Sum")],
            "correctness_math_verify": [False, False, True],
            "correctness_llama": [False, True, True] if i != 1 else None,
            "is_reasoning_complete": [True, True, True],
        },
    ),
    "Alpaca": (
        "alpaca",
        lambda i: {"instruction": "Add.", "input": Q[i], "output": think(i)},
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_three_rows(tmp_path: Path, name: str) -> None:
    preset, make = LAYOUTS[name]
    path = write_jsonl(tmp_path / "t.jsonl", [make(i) for i in range(3)])
    records, stats = load_records(path, FIELD_PRESETS[preset])
    assert stats.loaded == 3
    for i, record in enumerate(records):
        expected_reasoning = R[i]
        if name == "OpenR1 generations" and i == 1:  # no judge flags on this row: the math_verify one is taken
            expected_reasoning = R[i].replace("Add", "Sum")
        assert record.reasoning == expected_reasoning, name
        assert record.answer_text == A[i], name
        prompt = record.messages[-1]["content"]
        assert prompt == (f"Add.\n\n{Q[i]}" if preset == "alpaca" else Q[i]), name
        assert record.source == f"{path}:{i + 1}"
    if preset == "openthoughts" and name.endswith("114k"):
        assert records[0].messages[0] == {"role": "system", "content": "Think first."}
    if preset in ("s1k-1.0", "s1k-1.1"):
        assert [r.gold for r in records] == (["0", "2", "4"] if preset == "s1k-1.1" else [None] * 3)
    if preset == "openr1":
        assert [(r.id, r.gold) for r in records] == [("u0", "0"), ("u1", "2"), ("u2", "4")]


def test_alpaca_empty_input_and_default_preset_input(tmp_path: Path) -> None:
    rows = [{"instruction": "Say hi.", "input": "", "output": "hi"}]
    (record,), _ = load_records(write_jsonl(tmp_path / "a.jsonl", rows), FIELD_PRESETS["alpaca"])
    assert record.messages == [{"role": "user", "content": "Say hi."}]
    rows = [{"prompt": "Translate.", "input": "chat", "response": "<think>fr</think>chat"}]
    (record,), _ = load_records(write_jsonl(tmp_path / "d.jsonl", rows), FIELD_PRESETS["default"])
    assert record.messages == [{"role": "user", "content": "Translate.\n\nchat"}]


def test_openr1_row_without_verified_generation_is_skipped_and_counted(tmp_path: Path) -> None:
    rows = [
        LAYOUTS["OpenR1 generations"][1](0),
        dict(LAYOUTS["OpenR1 generations"][1](1), correctness_math_verify=[False] * 3, correctness_llama=None),
        # verified, but its reasoning was cut off: not complete
        dict(LAYOUTS["OpenR1 generations"][1](2), is_reasoning_complete=[True, False, False]),
    ]
    records, stats = load_records(write_jsonl(tmp_path / "o.jsonl", rows), FIELD_PRESETS["openr1"])
    assert [r.id for r in records] == ["u0"]
    assert (stats.rows, stats.skipped_unverified, stats.loaded) == (3, 2, 1)
    bad = [dict(rows[0], correctness_math_verify=[True])]
    with pytest.raises(TraceDataError, match=r"o\.jsonl:1: field 'correctness_math_verify' must be a list of 3 "
                                             r"flags .*\(data\.layout\.fields\.verified\)"):
        load_records(write_jsonl(tmp_path / "o.jsonl", bad), FIELD_PRESETS["openr1"])


@pytest.mark.parametrize(
    ("preset", "row", "column"),
    [
        # the messages layout with reasoning in a top-level column the preset does not read
        ("messages", {"messages": [user(0), {"role": "assistant", "content": "A"}], "reasoning": "R"}, "reasoning"),
        # s1K 1.1 read with the 1.0 preset's columns swapped: the DeepSeek trajectory would be lost
        (
            "s1k-1.0",
            {"question": "q", "thinking_trajectories": [" "], "attempt": "A", "solution": "s",
             "deepseek_thinking_trajectory": "R"},
            "deepseek_thinking_trajectory",
        ),
        ("alpaca", {"instruction": "q", "output": "A", "thinking": "R"}, "thinking"),
    ],
)
def test_reasoning_that_would_be_dropped_is_an_error(tmp_path: Path, preset: str, row: dict, column: str) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(TraceDataError) as err:
        load_records(path, FIELD_PRESETS[preset])
    message = str(err.value)
    assert message.startswith(f"{path}:1: the record maps to an empty reasoning but the row has reasoning in "
                              f"field '{column}'")
    assert message.endswith("(data.layout.fields.reasoning)") and "\n" not in message


def test_bad_turn_shapes(tmp_path: Path) -> None:
    cases = [
        ({"prompt": [user(0), {"role": "assistant", "content": "x"}], "completion": "y"}, "ends with an assistant"),
        ({"prompt": "q", "completion": [{"role": "assistant", "content": "a"}] * 2}, "must hold one assistant turn"),
        ({"prompt": "q", "completion": 3}, "field 'completion' must be a string, got int"),
        (
            {"messages": [user(0), {"role": "assistant", "content": "a", "reasoning_content": ["x"]}]},
            "turn 1 reasoning_content must be a string, got list",
        ),
    ]
    for row, message in cases:
        with pytest.raises(TraceDataError, match=message):
            load_records(write_jsonl(tmp_path / "t.jsonl", [row]), FIELD_PRESETS["prompt_completion"]
                         if "completion" in row else FIELD_PRESETS["messages"])


# ------------------------------------------------------------------------------------------ through the module
def messages_rows(path: Path) -> Path:
    rows = [
        {"messages": [user(i), {"role": "assistant", "reasoning_content": R[i], "content": A[i]}]} for i in range(3)
    ]
    return write_jsonl(path, rows)


def test_reasoning_content_is_rendered_in_the_think_block_and_trained(tmp_path: Path, shared_dir: Path) -> None:
    """The acceptance contract: OpenAI-style rows with the real Qwen3 tokenizer, through the data module."""
    from t3s.data import TeacherTraceDataModule
    from t3s.data.render import render_texts

    dm = TeacherTraceDataModule(
        str(messages_rows(tmp_path / "m.jsonl")), str(shared_dir / "tokenizers" / "qwen3"), global_batch_size=3
    )
    dm.setup()
    tok = dm.tokenizer
    assert len(dm.traces) == 3
    for i, trace in enumerate(dm.traces):
        _, full_text = render_texts(tok, trace.record)
        assert f"<|im_start|>assistant\n<think>\n{R[i]}\n</think>\n\n{A[i]}<|im_end|>" in full_text
        trained = tok.decode([t for t, label in zip(trace.input_ids, trace.labels, strict=True) if label != -100])
        assert trained == f"<think>\n{R[i]}\n</think>\n\n{A[i]}<|im_end|>"
        assert dm.preview(i).endswith(f"[[<think>\n{R[i]}\n</think>\n\n{A[i]}<|im_end|>]]\n")
    # and the step batch the trainer gets carries those labels
    batch = dm.step_batch(0)
    labels = torch_labels(batch)
    assert sum(t.num_response_tokens for t in dm.traces) == labels


def torch_labels(batch: dict[str, Any]) -> int:
    return int(sum((mb["labels"] != -100).sum() for mb in batch["micro_batches"]))


def test_thinking_switch_and_template_kwargs_reach_the_template(tmp_path: Path, shared_dir: Path) -> None:
    from t3s.data import TeacherTraceDataModule

    tokenizer = str(shared_dir / "tokenizers" / "qwen3")
    path = str(messages_rows(tmp_path / "m.jsonl"))
    off = TeacherTraceDataModule(path, tokenizer, enable_thinking=False)
    # Qwen3's non-thinking form: the empty think block is part of the generation prompt, not trained
    assert off.preview(0).endswith(f"<|im_start|>assistant\n<think>\n\n</think>\n\n[[{A[0]}<|im_end|>]]\n")
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% for m in messages %}{{ m.role }}{% if m.role == 'assistant' %}({{ effort }}){% endif %}:\n"
        "{% if m.reasoning_content %}[{{ m.reasoning_content }}] {% endif %}{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}assistant({{ effort }}):\n{% endif %}"
    )
    custom = TeacherTraceDataModule(path, tokenizer, chat_template=str(template),
                                    chat_template_kwargs={"effort": "high"})
    assert custom.preview(1) == f"user:\n{Q[1]}<|im_end|>\nassistant(high):\n[[[{R[1]}] {A[1]}<|im_end|>]]\n"


def test_tokenizer_without_chat_template(tmp_path: Path, shared_dir: Path) -> None:
    from transformers import AutoTokenizer

    from t3s.data import TeacherTraceDataModule

    base = AutoTokenizer.from_pretrained(shared_dir / "tokenizers" / "qwen3")
    base.chat_template = None
    base.save_pretrained(tmp_path / "base")
    assert AutoTokenizer.from_pretrained(tmp_path / "base").chat_template is None
    path = str(messages_rows(tmp_path / "m.jsonl"))
    with pytest.raises(TraceDataError) as err:
        TeacherTraceDataModule(path, str(tmp_path / "base")).setup()
    assert str(err.value) == (
        f"{tmp_path / 'base'}: the tokenizer has no chat template (a base model?); set data.template.chat_template "
        "to a Jinja file, a template of the tokenizer or a built-in one (chatml)"
    )
    with pytest.raises(TraceDataError, match=r"nope: no such template file, and not a template name of .* "
                                             r"\(chatml\) \(data\.template\.chat_template\)"):
        TeacherTraceDataModule(path, str(tmp_path / "base"), chat_template="nope").setup()
    chatml = TeacherTraceDataModule(path, str(tmp_path / "base"), chat_template="chatml")
    assert chatml.preview(2) == (
        f"<|im_start|>user\n{Q[2]}<|im_end|>\n<|im_start|>assistant\n[[<think>\n{R[2]}\n</think>\n\n{A[2]}"
        "<|im_end|>]]\n"
    )


def test_chat_template_reaches_the_students_tokenizer(tmp_path: Path, shared_dir: Path) -> None:
    """data.chat_template also becomes the template of the student's tokenizer (its evaluations, its hf/)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from t3s.data import TeacherTraceDataModule
    from t3s.data.render import BUILTIN_TEMPLATES

    tokenizer = str(shared_dir / "tokenizers" / "qwen3")
    student = SimpleNamespace(tokenizer=AutoTokenizer.from_pretrained(tokenizer))
    dm = TeacherTraceDataModule(str(messages_rows(tmp_path / "m.jsonl")), tokenizer, chat_template="chatml")
    dm.trainer = SimpleNamespace(lightning_module=student)
    dm.setup("fit")
    assert student.tokenizer.chat_template == BUILTIN_TEMPLATES["chatml"] == dm.tokenizer.chat_template
