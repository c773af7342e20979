"""Render a :class:`TraceRecord` with a tokenizer's own chat template and build completion-only labels."""

from __future__ import annotations

from typing import Any, Literal

from t3s.data.schema import IGNORE_INDEX, TokenizedTrace, TraceDataError, TraceRecord

__all__ = ["END_OF_TURN_TOKENS", "IGNORE_INDEX", "Overlong", "end_of_turn_ids", "render_texts", "tokenize_trace"]

Overlong = Literal["drop", "truncate"]

#: End-of-turn tokens of common chat templates (ChatML/Qwen, Llama 3, Gemma, Phi, GPT-2 style, Llama 2/Mistral);
#: only those a tokenizer knows are used. Training labels end at one; generation stops at any.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<eos>",
)


def _template(tokenizer: Any, messages: list[dict[str, Any]], *, generation: bool, thinking: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise TraceDataError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template "
                             "(chat_template in tokenizer_config.json or chat_template.jinja): traces are rendered "
                             "with it; use a chat model's tokenizer (data.tokenizer)")
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation, enable_thinking=thinking
    )


def render_texts(tokenizer: Any, record: TraceRecord, *, enable_thinking: bool = True) -> tuple[str, str]:
    """``(prompt_text, full_text)`` of a record under the tokenizer's chat template.

    The prompt ends with the template's generation prompt (e.g. ``<|im_start|>assistant\\n``). The reply is
    passed as ``{"role": "assistant", "content": answer, "reasoning_content": reasoning}``. A template that
    ignores ``reasoning_content`` (renders the same without it) gets the content
    ``"<think>\\n" + reasoning + "\\n</think>\\n\\n" + answer`` instead. With ``enable_thinking=False`` the
    reasoning is left out: the template's non-thinking form of the answer is trained.
    """

    def conversation(content: str, reasoning_content: str | None = None) -> str:
        reply = {"role": "assistant", "content": content}
        if reasoning_content is not None:
            reply["reasoning_content"] = reasoning_content
        return _template(tokenizer, [*record.messages, reply], generation=False, thinking=enable_thinking)

    prompt = _template(tokenizer, record.messages, generation=True, thinking=enable_thinking)
    full = conversation(record.answer_text)
    reasoning = record.reasoning.strip() if enable_thinking and record.reasoning else ""
    if reasoning:
        with_reasoning = conversation(record.answer_text, reasoning)
        if with_reasoning != full:
            full = with_reasoning
        else:
            full = conversation(f"<think>\n{reasoning}\n</think>\n\n{record.answer_text}")
    return prompt, full


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Ids that close an assistant turn: the eos token and the usual template end-of-turn tokens it knows."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    unk = tokenizer.unk_token_id
    for token in END_OF_TURN_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != unk:
            ids.add(token_id)
    return ids


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The chat template already wrote every special token it wants (bos included), so add none.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_trace(
    tokenizer: Any,
    record: TraceRecord,
    index: int,
    *,
    max_length: int,
    overlong: Overlong = "drop",
    enable_thinking: bool = True,
) -> TokenizedTrace | None:
    """Tokenize one record with completion-only labels; None when it is dropped for length.

    Labels: ``-100`` on the prompt (including the template's assistant header), the token ids on the reply and
    on its end-of-turn token (the last eos / end-of-turn token of the rendering), ``-100`` on anything after
    that (e.g. Qwen's trailing ``"\\n"``). A template without a known end-of-turn token gets every token after
    the prompt labelled.

    Length: a trace longer than ``max_length`` is dropped (``overlong="drop"``) or cut to ``max_length``
    (``overlong="truncate"``); one whose prompt alone fills ``max_length`` is always dropped.

    Raises:
        TraceDataError: if the rendered prompt's tokens are not a prefix of the rendered conversation's tokens.
    """
    if overlong not in ("drop", "truncate"):
        raise ValueError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    prompt_text, full_text = render_texts(tokenizer, record, enable_thinking=enable_thinking)
    prompt_ids, input_ids = _encode(tokenizer, prompt_text), _encode(tokenizer, full_text)
    start = len(prompt_ids)
    if input_ids[:start] != prompt_ids or len(input_ids) <= start:
        raise TraceDataError(
            f"{record.source}: the chat template of {getattr(tokenizer, 'name_or_path', 'the tokenizer')!r} "
            "renders a prompt (add_generation_prompt=True) whose tokens are not a prefix of the tokens of the "
            "whole conversation, so the reply cannot be labelled"
        )
    end_ids = end_of_turn_ids(tokenizer)
    stop = next((t for t in range(len(input_ids) - 1, start - 1, -1) if input_ids[t] in end_ids), None)
    stop = len(input_ids) if stop is None else stop + 1
    labels = [IGNORE_INDEX] * start + input_ids[start:stop] + [IGNORE_INDEX] * (len(input_ids) - stop)
    truncated = False
    if len(input_ids) > max_length:
        if overlong == "drop" or start >= max_length:
            return None
        input_ids, labels, truncated = input_ids[:max_length], labels[:max_length], True
    return TokenizedTrace(index=index, record=record, input_ids=input_ids, labels=labels, truncated=truncated)
