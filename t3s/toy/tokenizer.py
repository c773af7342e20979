"""A word-level Hugging Face tokenizer for the toy world.

The toy world writes every text as whitespace-separated words (digits are single words too), so a
WordLevel model over a few dozen words covers it exactly. The tokenizer carries a chat template in
Qwen3's shape (system / user / assistant turns, ``<think> ... </think>`` reasoning, ``enable_thinking``),
but space separated instead of newline separated, because a word-level tokenizer drops whitespace.

Two properties matter downstream and are tested:

* the token ids of ``apply_chat_template(prompt, add_generation_prompt=True)`` are an exact prefix of the
  token ids of the same conversation with the assistant turn appended;
* ``decode(encode(text)) == text`` for texts whose words are in the vocabulary and which are separated
  by single spaces (all texts the toy world produces, rendered chats included).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
THINK_END = "</think>"
MASK_TOKEN = "<|mask|>"
UNK_TOKEN = "<unk>"

#: Special tokens, in id order (ids 0..6).
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, IM_START, IM_END, THINK_START, THINK_END, MASK_TOKEN, UNK_TOKEN)

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))

#: Punctuation / markup words shared by every toy text (ids follow the digits).
SYMBOLS: tuple[str, ...] = ("+", "=", ";", ",", ".", ":", "#", "(", ")", "\\boxed{", "}")

#: Role names the chat template writes after ``<|im_start|>``.
ROLES: tuple[str, ...] = ("system", "user", "assistant")

#: Qwen3's chat template, rewritten with single spaces as separators (no tools). Assistant turns after
#: the last user query get a ``<think> ... </think>`` block (from ``reasoning_content`` or parsed out of
#: ``content``); earlier assistant turns keep only their content, as in Qwen3.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(sep='', last_query_index=messages|length - 1, found=false) -%}"
    "{%- for message in messages[::-1] -%}"
    "{%- if not ns.found and message.role == 'user' -%}"
    "{%- set ns.found = true -%}"
    "{%- set ns.last_query_index = (messages|length - 1) - loop.index0 -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- set content = (message.content or '') | trim -%}"
    "{%- if message.role == 'user' or message.role == 'system' -%}"
    "{{- ns.sep + '<|im_start|> ' + message.role + (' ' + content if content else '') + ' <|im_end|>' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{%- set reasoning = '' -%}"
    "{%- if message.reasoning_content is defined and message.reasoning_content is not none -%}"
    "{%- set reasoning = message.reasoning_content | trim -%}"
    "{%- elif '</think>' in content -%}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] | trim -%}"
    "{%- set content = content.split('</think>')[-1] | trim -%}"
    "{%- endif -%}"
    "{{- ns.sep + '<|im_start|> assistant' -}}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning) -%}"
    "{{- ' <think>' + (' ' + reasoning if reasoning else '') + ' </think>' -}}"
    "{%- endif -%}"
    "{{- (' ' + content if content else '') + ' <|im_end|>' -}}"
    "{%- else -%}"
    "{{- raise_exception('toy chat template: unsupported role ' + message.role) -}}"
    "{%- endif -%}"
    "{%- set ns.sep = ' ' -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- ns.sep + '<|im_start|> assistant' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- ' <think> </think>' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def base_vocabulary() -> list[str]:
    """Return the words every toy tokenizer has, in id order: special tokens, digits, symbols, roles."""
    return [*SPECIAL_TOKENS, *DIGITS, *SYMBOLS, *ROLES]


def build_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """Build the word-level toy tokenizer.

    Args:
        words: extra vocabulary words (style words, column names, ...). Each must be a single
            whitespace-free word; words already in the base vocabulary and repeats are skipped, the
            rest get ids in the given order after :func:`base_vocabulary`.

    Returns:
        A fast tokenizer with pad ``<|endoftext|>``, eos ``<|im_end|>``, unk ``<unk>``, mask ``<|mask|>``
        and ``<|im_start|>`` as special tokens, ``<think>`` / ``</think>`` as added non-special tokens (as
        in Qwen3), and the space-separated Qwen3-shaped chat template.
    """
    vocab: dict[str, int] = {}
    for word in [*base_vocabulary(), *words]:
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"vocabulary words must be non-empty and contain no whitespace: {word!r}")
        vocab.setdefault(word, len(vocab))

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # The WordPiece decoder joins tokens with single spaces (no token starts with its "##" prefix, and
    # cleanup is off so " ." and " ," stay as written), i.e. the inverse of WhitespaceSplit.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=IM_END,
        unk_token=UNK_TOKEN,
        mask_token=MASK_TOKEN,
        additional_special_tokens=[IM_START],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    # As in Qwen3, the think markers are added (always split out) but not special: decoding with
    # skip_special_tokens=True keeps them, so a reply can still be split into reasoning and answer.
    tokenizer.add_tokens([AddedToken(THINK_START, normalized=False), AddedToken(THINK_END, normalized=False)])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
