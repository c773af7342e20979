"""Rendering with the real Qwen3 chat template and completion-only labels."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from t3s.data import FIELD_PRESETS, IGNORE_INDEX, TraceDataError, TraceRecord, load_records, tokenize_trace
from t3s.data.render import render_texts

IGNORE = -100


@pytest.fixture(scope="module")
def qwen(shared_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(shared_dir / "tokenizers" / "qwen3")


def record(
    reasoning: str | None = "Two plus two.\nThat is 4.", answer: str = "The answer is \\boxed{4}."
) -> TraceRecord:
    return TraceRecord(
        id="r",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
        reasoning=reasoning,
        answer_text=answer,
        source="mem:1",
    )


def labelled(trace: Any) -> list[int]:
    return [label for label in trace.labels if label != IGNORE]


def first_labelled(trace: Any) -> int:
    return next(t for t, label in enumerate(trace.labels) if label != IGNORE)


def test_labels_are_exactly_the_reply_and_end_of_turn(qwen: Any) -> None:
    rec = record()
    trace = tokenize_trace(qwen, rec, 3, max_length=1000)
    assert trace is not None and trace.index == 3 and trace.record is rec
    assert len(trace.labels) == len(trace.input_ids)
    assert (
        qwen.decode(labelled(trace))
        == "<think>\nTwo plus two.\nThat is 4.\n</think>\n\nThe answer is \\boxed{4}.<|im_end|>"
    )
    prompt_text, full_text = render_texts(qwen, rec)
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert full_text.endswith("<|im_end|>\n")
    prompt_len = len(qwen(prompt_text, add_special_tokens=False)["input_ids"])
    assert all(
        label == IGNORE for label in trace.labels[:prompt_len]
    )  # prompt (incl. assistant header) untrained
    assert all(
        label == tok for label, tok in zip(trace.labels[prompt_len:-1], trace.input_ids[prompt_len:-1])
    )
    im_end = qwen.convert_tokens_to_ids("<|im_end|>")
    assert trace.input_ids[-2] == im_end and trace.labels[-2] == im_end  # end of turn trained
    assert qwen.decode(trace.input_ids[-1:]) == "\n" and trace.labels[-1] == IGNORE  # after it: not trained
    assert trace.num_response_tokens == len(trace.input_ids) - prompt_len - 1


def test_non_thinking_mode_trains_the_answer_only(qwen: Any) -> None:
    trace = tokenize_trace(qwen, record(), 0, max_length=1000, enable_thinking=False)
    assert trace is not None
    assert qwen.decode(labelled(trace)) == "The answer is \\boxed{4}.<|im_end|>"
    assert "<think>\n\n</think>\n\n" in qwen.decode(trace.input_ids)


def test_template_ignoring_reasoning_content_falls_back_to_think_tags(qwen: Any) -> None:
    plain = copy.copy(qwen)
    plain.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    trace = tokenize_trace(plain, record(), 0, max_length=1000)
    assert trace is not None
    assert (
        plain.decode(labelled(trace))
        == "<think>\nTwo plus two.\nThat is 4.\n</think>\n\nThe answer is \\boxed{4}.<|im_end|>"
    )


def test_prompt_must_be_a_token_prefix(qwen: Any) -> None:
    broken = copy.copy(qwen)
    broken.chat_template = (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant-generation]{% endif %}"
    )
    with pytest.raises(TraceDataError, match=r"mem:1: the chat template .* not a prefix"):
        tokenize_trace(broken, record(), 0, max_length=1000)


def test_overlong_drop_and_truncate(qwen: Any) -> None:
    long_record = record(reasoning="step " * 200)
    full = tokenize_trace(qwen, long_record, 0, max_length=10_000)
    assert full is not None and len(full) > 200
    assert tokenize_trace(qwen, long_record, 0, max_length=100) is None
    cut = tokenize_trace(qwen, long_record, 0, max_length=100, overlong="truncate")
    assert cut is not None and cut.truncated
    assert cut.input_ids == full.input_ids[:100] and cut.labels == full.labels[:100]
    prompt_len = first_labelled(full)
    assert tokenize_trace(qwen, long_record, 0, max_length=prompt_len, overlong="truncate") is None
    with pytest.raises(ValueError, match="overlong"):
        tokenize_trace(qwen, long_record, 0, max_length=100, overlong="cut")  # type: ignore[arg-type]


def test_real_r1_traces_render(qwen: Any, shared_dir: Path) -> None:
    records, _ = load_records(shared_dir / "data" / "r1_traces_mmlupro_200.jsonl", FIELD_PRESETS["r1_mc"], limit=3)
    for i, rec in enumerate(records):
        trace = tokenize_trace(qwen, rec, i, max_length=32_768)
        assert trace is not None
        text = qwen.decode(labelled(trace))
        assert text == f"<think>\n{rec.reasoning}\n</think>\n\n{rec.answer_text}<|im_end|>"
        assert "(A) " in qwen.decode(trace.input_ids[: first_labelled(trace)])


def test_repo_tiny_tokenizer_renders_with_completion_only_labels(tiny_world: Path) -> None:
    from transformers import AutoTokenizer

    from t3s.data import TraceRecord, tokenize_trace

    tok = AutoTokenizer.from_pretrained(str(tiny_world / "tokenizer"))
    record = TraceRecord(id="t", messages=[{"role": "user", "content": "add 1 2 + 3 4 ."}],
                         reasoning="Units : 2 + 4 + 0 = 6 ;", answer_text="So the answer is \\boxed{ 4 6 }",
                         source="inline:1")
    trace = tokenize_trace(tok, record, 0, max_length=128)
    trained = [i for i, label in zip(trace.input_ids, trace.labels) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "<think> Units : 2 + 4 + 0 = 6 ; </think> So the answer is \\boxed{ 4 6 } <|im_end|>"
    prompt = [i for i, label in zip(trace.input_ids, trace.labels) if label == IGNORE_INDEX]
    assert tok.decode(prompt) == "<|im_start|> user add 1 2 + 3 4 . <|im_end|> <|im_start|> assistant"
