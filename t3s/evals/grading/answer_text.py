"""Where a long reasoning response states its answer, and whether it was cut off before stating one.

:func:`locate_answer` reads a response's final text (the text after its reasoning block, or the whole
response when it has none) and returns the answer it states, by these rules:

1. **A box wins**: the last complete ``\\boxed{}`` (or ``\\fbox{}``), unless an explicit answer sentence
   ("the answer is ...", "... is the correct answer", "Answer: ...") comes after it.
2. **Otherwise the last concluding statement**: a sentence that says "the (final) answer/result is X",
   "X is the correct answer", "**Final Answer**" over a value, "so/thus/hence/therefore/in total/adding
   these up ... is/=/equals X", or, more weakly, "... is/are/equals X", "we get/obtain/find X", "... comes
   (out) to X". Its value is read in a principled way: filler words before it are dropped ("is *indeed* 284",
   "is *equal to* 0.15"), inline math is unwrapped (a stray closing ``\\)`` too), a number written as a word
   counts as the number ("three"), trailing words and clauses are cut ("16 such squares in total", "4, which is
   even"), and a sentence ending in "is:" takes the display math that follows (``\\[ ... \\]``,
   ``$$ ... $$``). A value that is only words ("the correct answer") is no value, and the statement
   before it is tried. A long response without a reasoning block (several paragraphs, or 1,000+
   characters) is thinking written out (QwQ style, or a template that opened ``<think>`` itself): there only a
   conclusion concludes (a plain "the total is 200 feet" is a step), and a conclusion followed by more mathematics
   is a step too.
3. **Otherwise a bare final text** (a short line that is only an expression) is the answer.

A response is **cut off** when its text stops mid-sentence (no closing punctuation, math delimiter or
box) and goes on past its answer into a new sentence, or states no answer at all in a long text (several
paragraphs or 1,000+ characters; a short unfinished reply is merely unanswered): a model that stopped
mid-thought has not answered, whatever intermediate value its last lines compute (``700 - 500 = 200
feet``). Its last, unfinished sentence is read only when it is an explicit answer that ends with its
value ("so the answer is 25"); "so x^2 + y^2 = 4" may have been cut from "4R^2". A complete answer followed
only by a stray fragment of a special token or tag (``<``, ``<|im_``, ``<think>``) is complete:
:func:`strip_stray_tail` removes the fragment.

Everything is linear in the input and bounded (the last :data:`~t3s.data.text.MAX_SCAN_CHARS`
characters, at most :data:`MAX_SENTENCES` sentences examined); only the standard library is used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from t3s.data.text import MAX_SCAN_CHARS, boxed_spans

__all__ = ["MAX_SENTENCES", "AnswerSpan", "clean_value", "locate_answer", "strip_stray_tail"]

#: Concluding statements are looked for in at most this many trailing sentences.
MAX_SENTENCES = 60
#: A sentence this long states no answer (and reading it would cost more than it is worth).
_MAX_SENTENCE_CHARS = 6_000
#: At most this many answer cues or verbs of one sentence are tried (each reads the rest of the sentence).
_MAX_CUES = 8


@dataclass(frozen=True)
class AnswerSpan:
    """The answer a final text states, where, and whether the text was cut off.

    ``text``: the answer (``None``: none found); ``kind``: ``"boxed"``, ``"statement"`` or ``"bare"``
    (``"none"`` without an answer); ``cut_off``: the text stops mid-sentence, without an answer or after
    going on past it (the response was cut off: never to be credited).
    """

    text: str | None
    kind: str
    cut_off: bool


# ----------------------------------------------------------------------------------------------------
# stray tails and the end of the text
# ----------------------------------------------------------------------------------------------------

# a trailing fragment of a special token or tag: "<", "<|im_", "<think>", "</s>", "<｜end▁of▁sentence｜>"
_STRAY_TAIL_RE = re.compile(r"(?:\s*<[/|｜]?[A-Za-z_▁|｜]{0,32}>?)+\s*\Z")


def strip_stray_tail(text: str) -> str:
    """``text`` without a trailing fragment of a special token or tag (``<``, ``<|im_``, ``<think>``) that
    follows a finished sentence, box or formula (``x<y`` at the end stays as written)."""
    tail = text[-400:]
    m = _STRAY_TAIL_RE.search(tail)
    if m is None:
        return text
    head = text[: len(text) - len(tail) + m.start()]
    return head if _terminated(head) else text


# what may close a complete sentence: punctuation, a closing bracket or math delimiter, markdown emphasis
_TERMINATED_RE = re.compile(r"(?:[.!?)\]}$*\"'`»”’:]|\\\)|\\\]|\\end\{[a-z*]+\})\s*\Z")


def _terminated(text: str) -> bool:
    return bool(_TERMINATED_RE.search(text[-64:])) if text.strip() else True


# ----------------------------------------------------------------------------------------------------
# math spans and sentences
# ----------------------------------------------------------------------------------------------------

_DELIM_RE = re.compile(r"\\\[|\\\]|\\\(|\\\)|\$\$|\\\$|\$|\n[ \t]*\n")
_CLOSER = {"\\[": "\\]", "\\(": "\\)", "$$": "$$", "$": "$"}


def _math_spans(text: str) -> list[tuple[int, int, int, int]]:
    """``(start, content_start, content_end, end)`` of every ``\\[..\\]``, ``$$..$$``, ``\\(..\\)``, ``$..$``.

    One pass over the delimiters; an opener waits for its own closer (an unclosed one spans nothing), and
    no span crosses a blank line (a "$" left open in one paragraph does not swallow the next).
    """
    spans = []
    open_at: tuple[int, int, str] | None = None
    for m in _DELIM_RE.finditer(text):
        token = m.group()
        if token == "\\$":
            continue
        if token.startswith("\n"):
            open_at = None
            continue
        if open_at is None:
            if token in _CLOSER:
                open_at = (m.start(), m.end(), _CLOSER[token])
        elif token == open_at[2]:
            spans.append((open_at[0], open_at[1], m.start(), m.end()))
            open_at = None
        elif token in ("\\[", "\\(") and open_at[2] in ("$", "$$"):
            open_at = (m.start(), m.end(), _CLOSER[token])  # a lone "$" before: it was no math
    return spans


# a sentence ends at a period that is no decimal point and not inside "i.e.", a "!" that is no factorial
# and no "\!" (LaTeX spacing), a "?", a line end
_SENTENCE_END_RE = re.compile(r"(?<!\d)\.(?![\dA-Za-z])|\.(?=\s|\Z)|(?<![\d)}\\])!|\?|\n")


@dataclass(frozen=True)
class _Sentence:
    start: int
    end: int  # exclusive, before the terminator
    display: tuple[int, int] | None  # the content span when the sentence is one display-math block


def _sentences(text: str, spans: list[tuple[int, int, int, int]]) -> list[_Sentence]:
    """The sentences of ``text`` in order; math spans are never split (a display block is one sentence)."""
    masked = list(text)
    displays: dict[int, tuple[int, int, int]] = {}
    for start, c0, c1, end in spans:
        for i in range(c0, c1):
            if masked[i] in ".!?\n":
                masked[i] = " "
        if text[start : start + 2] in ("\\[", "$$"):
            displays[start] = (c0, c1, end)
    flat = "".join(masked)
    out: list[_Sentence] = []
    at = 0
    for m in _SENTENCE_END_RE.finditer(flat):
        _add(out, text, at, m.start(), displays)
        at = m.end()
    _add(out, text, at, len(text), displays)
    return out


def _add(out: list[_Sentence], text: str, start: int, end: int, displays: dict[int, tuple[int, int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return
    block = displays.get(start)
    display = (block[0], block[1]) if block and text[block[2] : end].strip(" .,;") == "" else None
    out.append(_Sentence(start, end, display))


# ----------------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_NUMBER_WORD_RE = re.compile(
    r"(?i:(" + "|".join(_TENS) + r")(?:[- ](" + "|".join(list(_NUMBER_WORDS)[1:10]) + r"))?|("
    + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r"))\b"
)
#: Words that may stand between a concluding verb and the value ("is indeed 284", "is equal to 0.15").
_FILLER_RE = re.compile(
    r"(?i:(?:indeed|just|simply|actually|definitely|clearly|exactly|precisely|still|then|now|also|really|"
    r"obviously|certainly|therefore|thus|hence|so|finally|only|equal\s+to|equals|given\s+by|found\s+to\s+be|"
    r"to\s+be|as\s+follows|that)\b[,:]?\s*|[:=]\s*)"
)
# a clause that follows the value: "16, which is 4 squared", "4 because ...", "x = 5 since ..."
_CLAUSE_RE = re.compile(
    r"(?:,\s*|\s+)\(?(?i:which|since|because|as|so|where|when|given|for|from|by|not|rather|after|before|"
    r"if|and\s+(?:so|thus|this|that|the)|in\s+order|meaning|i\.e|e\.g|"
    r"or\s+(?:approximately|about|roughly|around|equivalently|simply|in\s+decimal))\b"
    r"|\s*(?:\(\s*)?(?:≈|\\approx\b)"  # "\frac{14}{3} ≈ 4.67", "(\approx 4.67)"
)
#: Words that continue a mathematical value rather than end it ("25 or 26", "3 times 4", "5 squared").
_MATH_WORDS = frozenset(
    "or and to plus minus times over divided mod modulo squared cubed percent sqrt root roots power factorial "
    "choose".split()
)
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*")
# words that make a phrase a description, not an answer ("the correct answer", "this", "not sure")
_NOT_ANSWER_WORDS = frozenset(
    "the a an this that these those it its we i you correct right wrong answer answers true false not sure "
    "to be is are was because so then what which how why there here our my your one consistent same".split()
)


def _number_word(m: re.Match[str]) -> str:
    if m.group(3):
        return str(_NUMBER_WORDS[m.group(3).lower()])
    return str(_TENS[m.group(1).lower()] + (_NUMBER_WORDS[m.group(2).lower()] if m.group(2) else 0))


def _strip_math_delimiters(value: str) -> str:
    """The content of a value that starts with inline or display math; a value read from inside math ends
    at its closing delimiter (``284 \\)``, ``6$ and ... $5$``)."""
    spans = _math_spans(value)
    if spans and spans[0][0] == 0:
        return value[spans[0][1] : spans[0][2]].strip()
    value = re.sub(r"^(?:\\\(|\\\[|\$\$|\$)", "", value)
    # a value read from inside a math span ends where the span closes: "6$ and ... $5$" -> "6"
    dollars = len(re.findall(r"(?<!\\)\$", value))
    for m in _DELIM_RE.finditer(value):
        token = m.group()
        if token in ("\\(", "\\[") or (token in ("$", "$$") and dollars % 2 == 0):
            break
        if token in ("\\)", "\\]", "$", "$$"):
            return value[: m.start()].strip()
    return value.strip()


_COMMAND_RE = re.compile(r"\\[A-Za-z]+|\\.", re.DOTALL)
_NEXT_WORD_RE = re.compile(r"\s+[A-Za-z]{2,}")


def _math_head(value: str) -> str | None:
    """The leading mathematical part of a value: it stops at the first English word outside braces and
    commands ("16 such squares in total" -> "16"; "x^2 + 1" and "\\frac{1}{2}" stay whole); None when
    the value starts with a word."""
    depth, i = 0, 0
    while i < len(value):
        ch = value[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif ch == "\\":
            m = _COMMAND_RE.match(value, i)
            i += len(m.group()) if m else 1
            continue
        elif depth == 0 and ch.isascii() and ch.isalpha():
            m = _WORD_RE.match(value, i)
            word = m.group() if m else ch
            glued = i > 0 and (value[i - 1].isdigit() or value[i - 1] in "^_")  # "5th", "2x", "x^{th}"
            if len(word) == 1 and _NEXT_WORD_RE.match(value, i + 1) and not value[:i].strip():
                return None  # "I hope ...", "a total of ...": an English word, not a variable
            if len(word) >= 2 and not glued and word.lower() not in ("i", "pi"):
                if word.lower() in _MATH_WORDS and value[:i].strip():
                    return value.strip()  # "25 or 26", "5 squared": the words are part of the value
                head = value[:i].rstrip(" ([,;:").strip()  # "16 (sixteen)": no opening bracket left behind
                return head or None
            i += len(word)
            continue
        i += 1
    return value.strip()


def clean_value(raw: str) -> str | None:
    """The answer a concluding phrase states, without filler words, delimiters, units or trailing clauses.

    ``"indeed 284"`` -> ``284``; ``"equal to 0.15"`` -> ``0.15``; ``"\\( 284 \\)"`` and ``"284 \\)"`` ->
    ``284``; ``"three boxes contain both"`` -> ``3``; ``"16, which is 4 squared"`` -> ``16``; a plain-word
    answer ("west", "Evelyn") is kept; a description ("the correct answer", "this") gives None.
    """
    value = raw.replace("**", "").replace("__", "").strip()  # markdown emphasis: "**18** dollars"
    for _ in range(4):
        m = _FILLER_RE.match(value)
        if not m or not m.group():
            break
        value = value[m.end() :].strip().strip("*").strip()
    value = _strip_math_delimiters(value.rstrip(".;,").strip())
    value = value.strip().strip("*").strip().rstrip(".;,").strip()
    if not value:
        return None
    value = _NUMBER_WORD_RE.sub(_number_word, value, count=1) if _NUMBER_WORD_RE.match(value) else value
    whole = value
    clause = _CLAUSE_RE.search(value)
    if clause and clause.start() > 0:
        value = value[: clause.start()].strip()
    head = _math_head(value)
    if head is not None:
        return head
    words = _WORD_RE.findall(value)
    # a value that starts with a word is an answer only when it is a few words and nothing else ("west")
    plain = re.fullmatch(r"[A-Za-z][A-Za-z'’ -]*", whole)  # "divided by 7 is 5" is no word answer
    if plain and len(words) <= 3 and not _NOT_ANSWER_WORDS & {w.lower() for w in words}:
        return value
    return None


# ----------------------------------------------------------------------------------------------------
# concluding statements
# ----------------------------------------------------------------------------------------------------

# "the answer is X", "final answer: X", "the answer should be X", "the result is X", "Result: X"
_ANSWER_IS_RE = re.compile(
    r"(?i:\b(?:answers?|result)\b\s*(?:\((?:[^()]{0,40})\)\s*)?(?:is|was|would\s+be|should\s+be|must\s+be|"
    r"will\s+be|remains|[:=：])\s*:?)"
)
# "X is the correct answer", "X should be the final answer"
_IS_THE_ANSWER_RE = re.compile(
    r"(?i:\s(?:is|as|should\s+be|must\s+be|would\s+be|seems\s+to\s+be)\s+(?:indeed\s+|definitely\s+|really\s+|"
    r"probably\s+)?(?:the|our|my)\s+(?:(?:correct|final|right|required|desired|only)\s+)*answer\b)"
)
# "44 is correct", "so x = 5 seems right" (the value before it)
_IS_CORRECT_RE = re.compile(
    r"(?i:\s(?:is|seems|seems\s+to\s+be|should\s+be|must\s+be)\s+(?:indeed\s+|definitely\s+|also\s+)?"
    r"(?:correct|right)\b)"
)
_HEADING_RE = re.compile(r"(?i:[#*\s]*(?:final\s+)?answer[*\s]*:?[*\s]*)")
_CONCLUDE_RE = re.compile(
    r"(?i:\b(?:so|thus|hence|therefore|consequently|finally|altogether|overall|in\s+conclusion|in\s+summary|"
    r"in\s+total|in\s+the\s+end|all\s+in\s+all|to\s+sum(?:marize)?(?:\s+up)?|summing\s+up|"
    r"adding\s+(?:[a-z]+\s+){0,2}up|putting\s+(?:[a-z]+\s+){0,3}together|this\s+means|which\s+means)\b)"
)
_VERB_RE = re.compile(
    r"(?i:\b(?:is|are|was|were|['’]s|equals|be|becomes|gives|yields|get|obtain|find|have|totals?|makes|"
    r"comes?\s+(?:out\s+)?to|works\s+out\s+to|simplifies\s+to|evaluates\s+to|reduces\s+to)\b)"
)
# the value before "is the correct answer": trailing math, or the last word
_LEAD_IN_RE = re.compile(
    r"(?i:.*\b(?:that|so|thus|hence|therefore|confident|believe|think|guess|yes|then|gives?(?:\s+us)?|gave|"
    r"get|got|obtain|obtained|have|has)\b[,:]?)"
)


@dataclass(frozen=True)
class _Statement:
    value: str
    start: int
    end: int
    level: int  # _ANSWER (it outranks an earlier box), _CONCLUSION or _PLAIN
    reaches_end: bool  # nothing but the value follows the cue in its sentence (it may end the text unclosed)
    display: bool = False  # the value is the display math after "is:"


#: How explicit a statement is: "the answer is X" / "so ... is X" / "... is X", "we get X".
_ANSWER, _CONCLUSION, _PLAIN = 2, 1, 0


_UNIT_RE = re.compile(r"\s*[A-Za-z]+(?:\s+[A-Za-z]+)?\s*")
_NOT_UNIT_WORDS = frozenset("and or but so then which since because as if when where not let wait".split())


def _reaches_end(rest: str, value: str) -> bool:
    """``value`` is what ``rest`` ends with: nothing after it but closing delimiters, punctuation or a unit
    of one or two words ("5 inches"); not a clause ("25, but wait, let me re")."""
    compact = re.sub(r"\s+", "", value)
    tail = re.sub(r"(?:\\\)|\\\]|\$|\*|[.,;!])+$", "", re.sub(r"\s+", "", rest))
    if compact and tail.endswith(compact):
        return True
    at = rest.rfind(value)
    after = rest[at + len(value) :] if value and at >= 0 else ""
    unit = _UNIT_RE.fullmatch(re.sub(r"^(?:\\\)|\$)+", "", after))
    return bool(unit) and not _NOT_UNIT_WORDS & {w.lower() for w in after.split()}


def _after(
    text: str, sentence: _Sentence, at: int, nxt: _Sentence | None, level: int
) -> _Statement | None:
    """The statement whose value follows position ``at`` of ``sentence``: the rest of it, or the display
    math that follows when the rest is empty or a colon ("The plane is:\\n\\[ ... \\]")."""
    rest = text[at : sentence.end]
    if rest.strip(" :*") == "" and nxt is not None and nxt.display is not None:
        value = text[nxt.display[0] : nxt.display[1]].strip()
        return _Statement(value, sentence.start, nxt.end, level, True, True) if value else None
    value = clean_value(rest)
    return _Statement(value, sentence.start, sentence.end, level, _reaches_end(rest, value)) if value else None


def _before(text: str, sentence: _Sentence, at: int) -> str | None:
    """The value a sentence states before ``at`` ("I'm confident that 44 is the correct answer")."""
    head = text[sentence.start : at]
    lead = _LEAD_IN_RE.match(head)
    if lead:
        head = head[lead.end() :]
    head = head.strip().strip(",").strip()
    return clean_value(head) if head else None


def _statement(text: str, sentence: _Sentence, nxt: _Sentence | None) -> _Statement | None:
    """The value ``sentence`` concludes with, or None when it is no concluding statement."""
    if sentence.end - sentence.start > _MAX_SENTENCE_CHARS:
        return None
    body = text[sentence.start : sentence.end]
    if nxt is not None and _HEADING_RE.fullmatch(body):  # "**Final Answer**" over the value
        if nxt.display is not None:
            value = text[nxt.display[0] : nxt.display[1]].strip()
            return _Statement(value, sentence.start, nxt.end, _ANSWER, True, True) if value else None
        value = clean_value(text[nxt.start : nxt.end])
        return _Statement(value, sentence.start, nxt.end, _ANSWER, True) if value else None
    for m in list(_ANSWER_IS_RE.finditer(body))[: -_MAX_CUES - 1 : -1]:  # the last few, last first
        found = _after(text, sentence, sentence.start + m.end(), nxt, _ANSWER)
        if found:
            return found
    for pattern, level in ((_IS_THE_ANSWER_RE, _ANSWER), (_IS_CORRECT_RE, _CONCLUSION)):
        m = pattern.search(body)
        value = _before(text, sentence, sentence.start + m.start()) if m else None
        if value:
            return _Statement(value, sentence.start, sentence.end, level, False)
    concluding = _CONCLUDE_RE.search(body)
    cut = concluding.end() if concluding else 0
    verbs = [v.end() for v in _VERB_RE.finditer(body, cut)]
    if concluding is not None:  # "Thus, n = 284": an equation counts after a concluding word
        verbs = sorted(verbs + [cut + v.end() for v in re.finditer(r"=", body[cut:])])
    for at in verbs[:_MAX_CUES]:
        found = _after(text, sentence, sentence.start + at, nxt, _CONCLUSION if concluding else _PLAIN)
        if found:
            return found
    return None


# what makes a sentence part of the reasoning rather than a closing remark ("Yes, that seems right.")
_MATH_CONTENT_RE = re.compile(r"[\d=\\$^]")


def _last_statement(text: str, sentences: list[_Sentence], untagged: bool) -> _Statement | None:
    """The last concluding statement (scanning back at most :data:`MAX_SENTENCES` sentences).

    Without a reasoning block (``untagged``) the text is all reasoning, so only a conclusion concludes it:
    a plain statement ("the total is 200 feet", "we get 16") is a step unless it is display math that
    ends the text, and a conclusion followed by more mathematics is a step too (closing remarks with no
    mathematics, "I think that's it.", may follow it). When the text stops mid-sentence, its last sentence
    counts only if it is an explicit answer that ends with its value ("so the answer is 25"); any other
    last sentence ("so x^2 + y^2 = 4", cut from "4R^2"; "the answer is 25, but wait, let me re") makes
    the text hold no answer.
    """
    closed = _terminated(text)
    math_after: list[int] = []  # starts of the later sentences that hold mathematics
    for i in range(len(sentences) - 1, max(-1, len(sentences) - 1 - MAX_SENTENCES), -1):
        sentence = sentences[i]
        found = _statement(text, sentence, sentences[i + 1] if i + 1 < len(sentences) else None)
        ends_text = found is not None and found.end >= sentences[-1].end
        if found is not None and untagged and found.level == _PLAIN and not (found.display and ends_text):
            found = None  # a step of the reasoning
        if found is None:
            if i == len(sentences) - 1 and not closed:
                return None  # stopped mid-sentence, in a sentence that states nothing
            if _MATH_CONTENT_RE.search(text, sentence.start, sentence.end):
                math_after.append(sentence.start)
            continue
        if untagged and any(start >= found.end for start in math_after):
            return None
        if ends_text and not closed and not (found.level == _ANSWER and found.reaches_end):
            return None
        return found
    return None


# ----------------------------------------------------------------------------------------------------
# the answer of a final text
# ----------------------------------------------------------------------------------------------------

_BARE_RE = re.compile(r"[^\n]{1,200}")
#: A text without a paragraph break is "long" (reasoning, not a short reply) from this many characters on.
_LONG_TEXT_CHARS = 1_000


def locate_answer(final: str, *, untagged: bool = False) -> AnswerSpan:
    """The answer ``final`` states (see the module docstring) and whether the text was cut off.

    ``untagged``: the response had no reasoning block, so ``final`` may be its whole thinking (QwQ style);
    when it is long (several paragraphs, or 1,000+ characters), plain statements and conclusions followed
    by more mathematics are steps of the reasoning, not its answer.
    """
    offset = max(0, len(final) - MAX_SCAN_CHARS)
    text = strip_stray_tail(final[offset:]).rstrip()
    spans = boxed_spans(text)
    sentences = _sentences(text, _math_spans(text))
    # a long response without a reasoning block (several paragraphs, or 1,000+ characters) is thinking
    long_text = len(text) >= _LONG_TEXT_CHARS or re.search(r"\n[ \t]*\n", text) is not None
    thinking = untagged and long_text
    statement = _last_statement(text, sentences, thinking)
    answer: str | None
    if spans and not (statement is not None and statement.level == _ANSWER and statement.start > spans[-1][2]):
        _, start, end = spans[-1]
        answer, kind, answer_end = text[start:end].strip(), "boxed", end + 1
    elif statement is not None:
        answer, kind, answer_end = statement.value, "statement", statement.end
    elif _BARE_RE.fullmatch(text.strip()) and len(_WORD_RE.findall(_strip_math_delimiters(text.strip()))) <= 2:
        answer, kind, answer_end = _strip_math_delimiters(text.strip().rstrip(".")), "bare", len(text)
    else:
        answer, kind, answer_end = None, "none", len(text)
    cut_off = False
    if not _terminated(text):
        # stopped mid-sentence: cut off when it went on past its answer into a new sentence, or when a long
        # text (reasoning) states no answer; a short unfinished reply is just unanswered
        if answer is None:
            cut_off = long_text
        else:
            cut_off = bool(_SENTENCE_END_RE.search(text[answer_end:].rstrip()))
    return AnswerSpan(answer or None, kind if answer else "none", cut_off)
