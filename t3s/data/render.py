"""Render a :class:`TraceRecord` with a tokenizer's own chat template and build completion-only labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from t3s.data.schema import IGNORE_INDEX, TokenizedTrace, TraceDataError, TraceRecord

__all__ = [
    "BUILTIN_TEMPLATES",
    "END_OF_TURN_TOKENS",
    "IGNORE_INDEX",
    "Overlong",
    "end_of_turn_ids",
    "render_texts",
    "show_trace",
    "stop_token_ids",
    "tokenize_trace",
    "use_chat_template",
]

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


#: Templates shipped by name for tokenizers that have none (base models): ``data.template.chat_template: chatml``.
#: ``chatml``: ChatML turns (``<|im_start|>role ... <|im_end|>``), the reply's reasoning in a
#: ``<think>...</think>`` block; ``enable_thinking=false`` opens the reply with an empty block.
BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and m.reasoning_content is defined and m.reasoning_content %}"
        "<think>\n{{ m.reasoning_content.strip() }}\n</think>\n\n{% endif %}"
        "{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
        "{% endif %}"
    ),
}


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or "the tokenizer")


def use_chat_template(tokenizer: Any, chat_template: str | None = None) -> str:
    """Install the chat template to render with on ``tokenizer`` and return it (``data.template.chat_template``).

    ``chat_template``: None keeps the tokenizer's own (its ``default`` one when it has several); else a path
    to a Jinja file, the name of one of the tokenizer's templates, the name of a :data:`BUILTIN_TEMPLATES`
    entry, or a Jinja template itself. No template at all is a one-line :class:`TraceDataError`.
    """
    own = getattr(tokenizer, "chat_template", None)
    named = own if isinstance(own, Mapping) else {}
    name = _tokenizer_name(tokenizer)
    if chat_template is None:
        if isinstance(own, str) and own.strip():
            return own
        if "default" in named:
            template = named["default"]
        elif named:
            raise TraceDataError(f"{name}: the tokenizer has several chat templates and none is 'default'; "
                                 f"pick one with data.template.chat_template (one of {', '.join(sorted(named))})")
        else:
            raise TraceDataError(
                f"{name}: the tokenizer has no chat template (a base model?); set data.template.chat_template to a "
                f"Jinja file, a template of the tokenizer or a built-in one ({', '.join(BUILTIN_TEMPLATES)})"
            )
    elif chat_template in named:
        template = named[chat_template]
    elif chat_template in BUILTIN_TEMPLATES:
        template = BUILTIN_TEMPLATES[chat_template]
    elif "{{" in chat_template or "{%" in chat_template:
        template = chat_template
    else:
        path = Path(chat_template).expanduser()
        if not path.is_file():
            known = sorted({*named, *BUILTIN_TEMPLATES})
            raise TraceDataError(
                f"{chat_template}: no such template file, and not a template name of {name} or a built-in one "
                f"({', '.join(known)}) (data.template.chat_template)"
            )
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TraceDataError(f"{chat_template}: cannot read the template file ({err}) "
                                 "(data.template.chat_template)") from None
    tokenizer.chat_template = template
    return template


def _template(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    generation: bool,
    thinking: bool,
    extra: Mapping[str, Any] | None = None,
) -> str:
    if not getattr(tokenizer, "chat_template", None):
        use_chat_template(tokenizer)  # raises the one-line error when there is none
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, enable_thinking=thinking, **(extra or {})
        )
    except Exception as err:  # noqa: BLE001 - jinja2 raises several kinds; one line naming the template
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TraceDataError(f"{_tokenizer_name(tokenizer)}: the chat template failed to render ({first}) "
                             "(data.template.chat_template)") from None


def render_texts(
    tokenizer: Any,
    record: TraceRecord,
    *,
    enable_thinking: bool = True,
    template_kwargs: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """``(prompt_text, full_text)`` of a record under the tokenizer's chat template.

    The prompt ends with the template's generation prompt (e.g. ``<|im_start|>assistant\\n``). The reply is
    passed as ``{"role": "assistant", "content": answer, "reasoning_content": reasoning}``. A template that
    ignores ``reasoning_content`` (renders the same without it) gets the content
    ``"<think>\\n" + reasoning + "\\n</think>\\n\\n" + answer`` instead. With ``enable_thinking=False`` the
    reasoning is left out: the template's non-thinking form of the answer is trained. ``enable_thinking``
    reaches the template as ``enable_thinking`` (Qwen3's switch; templates without one ignore it), and
    ``template_kwargs`` are further template variables (``data.template.chat_template_kwargs``).
    """

    def conversation(content: str, reasoning_content: str | None = None) -> str:
        reply = {"role": "assistant", "content": content}
        if reasoning_content is not None:
            reply["reasoning_content"] = reasoning_content
        return _template(tokenizer, [*record.messages, reply], generation=False, thinking=enable_thinking,
                         extra=template_kwargs)

    prompt = _template(tokenizer, record.messages, generation=True, thinking=enable_thinking,
                       extra=template_kwargs)
    full = conversation(record.answer_text)
    reasoning = record.reasoning.strip() if enable_thinking and record.reasoning else ""
    if reasoning:
        with_reasoning = conversation(record.answer_text, reasoning)
        if with_reasoning != full:
            full = with_reasoning
        else:
            full = conversation(f"<think>\n{reasoning}\n</think>\n\n{record.answer_text}")
    return prompt, full


def _special_ids(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's added (special) tokens by text; a plain vocabulary entry such as Qwen's ``</s>`` is not
    one, so it never ends a turn."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return {str(token): int(token_id) for token_id, token in added.items()}


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Ids that close an assistant turn: the eos token and the usual template end-of-turn tokens it has as
    special tokens."""
    return set(stop_token_ids(tokenizer))


def stop_token_ids(tokenizer: Any) -> list[int]:
    """:func:`end_of_turn_ids` in order, the eos token first: what an exported ``generation_config`` lists as
    ``eos_token_id`` so that a plain ``generate()`` stops at the end of the turn."""
    ids = [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else []
    special = _special_ids(tokenizer)
    for token in END_OF_TURN_TOKENS:
        token_id = special.get(token)
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
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
    template_kwargs: Mapping[str, Any] | None = None,
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
    prompt_text, full_text = render_texts(
        tokenizer, record, enable_thinking=enable_thinking, template_kwargs=template_kwargs
    )
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


def show_trace(tokenizer: Any, trace: TokenizedTrace, *, open_mark: str = "[[", close_mark: str = "]]") -> str:
    """The rendered text of a tokenized trace with every run of trained (labelled) tokens between
    ``open_mark`` and ``close_mark``: what the student sees, and what enters its loss."""
    pieces: list[str] = []
    run: list[int] = []
    trained = False
    for token, label in zip(trace.input_ids, trace.labels, strict=True):
        if (label != IGNORE_INDEX) != trained and run:
            text = tokenizer.decode(run)
            pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
            run = []
        trained = label != IGNORE_INDEX
        run.append(token)
    if run:
        text = tokenizer.decode(run)
        pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
    return "".join(pieces)
