"""Answer graders for reasoning benchmarks.

Every grader has the signature ``grade_X(response, gold, **kw) -> Verdict`` and shares the same
handling of reasoning: text inside ``<think>...</think>`` is never graded, a response whose
``<think>`` never closes is truncated (and wrong), and a caller-provided ``hit_token_limit=True``
marks the response truncated (and wrong) as well. When the chat template itself opened the thinking
block (the prompt ends inside ``<think>``), pass ``think_in_prompt=True`` so that a response without
``</think>`` counts as unclosed.

Graders: ``aime`` (integers 0..999), ``math`` (LaTeX, via math-verify with a hard wall-clock limit),
``exact`` (normalised string match) and ``mc`` (multiple-choice letters A..J).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from t3s.evals import _mathverify_worker

__all__ = [
    "GRADERS",
    "MathVerifier",
    "UngradableGold",
    "Verdict",
    "get_math_verifier",
    "grade",
    "grade_aime",
    "grade_exact",
    "grade_math",
    "grade_mc",
    "iter_boxed",
    "last_boxed",
    "split_reasoning",
    "validate_gold",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MC_LETTERS = "ABCDEFGHIJ"


class UngradableGold(ValueError):
    """The gold answer itself cannot be parsed by the grader; callers exclude the item and report it."""

    def __init__(self, gold: str, grader: str, reason: str = "") -> None:
        self.gold = gold
        self.grader = grader
        msg = f"{grader} grader cannot parse gold answer {gold!r}"
        super().__init__(f"{msg}: {reason}" if reason else msg)


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one response.

    ``extracted`` is the (normalised) answer the grader read from the final text, or None.
    ``truncated`` responses (unclosed ``<think>`` or token limit hit) are always wrong.
    ``extraction_failed`` means a complete response contained no answer the grader could read.
    ``timed_out`` means the comparison exceeded the grader's wall-clock limit (graded wrong).
    """

    extracted: str | None
    correct: bool
    truncated: bool
    extraction_failed: bool
    timed_out: bool = False


# ----------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------


def split_reasoning(response: str, *, think_in_prompt: bool = False) -> tuple[str | None, str | None, bool]:
    """Split a response into ``(reasoning, final, closed)``.

    * No think tags (and ``think_in_prompt`` False): ``(None, response, True)``.
    * ``</think>`` present: reasoning is everything before the last ``</think>`` (without the opening
      tag), final is everything after it, ``closed`` is True.
    * ``<think>`` opened (in the response, or in the prompt when ``think_in_prompt``) but never closed:
      ``(reasoning, None, False)`` -- the response was cut off while thinking.
    """
    close = response.rfind(THINK_CLOSE)
    if close >= 0:
        reasoning = response[:close]
        open_pos = reasoning.find(THINK_OPEN)
        if open_pos >= 0:
            reasoning = reasoning[open_pos + len(THINK_OPEN) :]
        return reasoning.strip(), response[close + len(THINK_CLOSE) :].strip(), True
    open_pos = response.find(THINK_OPEN)
    if open_pos >= 0:
        return response[open_pos + len(THINK_OPEN) :].strip(), None, False
    if think_in_prompt:
        return response.strip(), None, False
    return None, response, True


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")


def _balanced_group(text: str, start: int) -> int | None:
    """Index just past the brace group opening at ``text[start] == '{'``; None when unbalanced.

    Escaped braces (``\\{``, ``\\}``) are literal characters and do not count.
    """
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def iter_boxed(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(position, content)`` of every complete ``\\boxed{...}``/``\\fbox{...}`` in ``text``.

    Braces are balanced (nested groups allowed, escaped braces ignored); ``\\boxed 5`` (no braces)
    yields the following token. Unbalanced (cut-off) boxes are skipped.
    """
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        if pos < len(text) and text[pos] == "{":
            end = _balanced_group(text, pos)
            if end is None:
                continue
            yield m.start(), text[pos + 1 : end - 1].strip()
        elif pos < len(text) and text[pos - 1].isspace():
            tok = re.match(r"[^\s$]+", text[pos:])
            if tok:
                yield m.start(), tok.group(0).rstrip(".")


def last_boxed(text: str | None) -> str | None:
    """Content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, or None."""
    if not text:
        return None
    found = None
    for _, content in iter_boxed(text):
        found = content
    return found


def _prepare(response: str, hit_token_limit: bool, think_in_prompt: bool) -> tuple[str | None, bool]:
    """Return ``(final_text, truncated)`` for a response."""
    _, final, closed = split_reasoning(response, think_in_prompt=think_in_prompt)
    return final, (not closed) or bool(hit_token_limit)


_FINAL_ANSWER_RE = re.compile(r"final\s+answer\s*(?:is|:|=)?\s*:?", re.IGNORECASE)
_ANSWER_RE = re.compile(r"answer\s*(?:is|:|=)\s*:?", re.IGNORECASE)


def _answer_phrase(text: str) -> str | None:
    """Text after the last "final answer is"/"answer is"/"Answer:" up to the end of its line."""
    for pattern in (_FINAL_ANSWER_RE, _ANSWER_RE):
        last = None
        for m in pattern.finditer(text):
            last = m
        if last is not None:
            rest = text[last.end() :].strip().split("\n", 1)[0].strip()
            rest = rest.strip("*").strip()
            if rest:
                return rest
    return None


def _unwrap_commands(s: str) -> str:
    """Replace ``\\text{x}``, ``\\textbf{x}``, ``\\mathrm{x}``, ``\\mathbf{x}`` ... by ``x``."""
    pattern = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{")
    while True:
        m = pattern.search(s)
        if not m:
            return s
        end = _balanced_group(s, m.end() - 1)
        if end is None:
            return s
        s = s[: m.start()] + s[m.end() : end - 1] + s[end:]


# ----------------------------------------------------------------------------------------------------
# AIME (integers)
# ----------------------------------------------------------------------------------------------------

_INT_TOKEN_RE = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")


def _to_int(s: str | None) -> int | None:
    """Parse an integer answer: "025" -> 25, "1,000" -> 1000, "25.0" -> 25, "$x = 25$." -> 25."""
    if s is None:
        return None
    s = _unwrap_commands(str(s))
    for junk in ("$", "\\,", "\\!", "\\;", "\\ ", "{,}", "\\%", "%", "^{\\circ}", "^\\circ", "\\circ", "°"):
        s = s.replace(junk, "")
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    s = re.sub(r"\s+", "", s).replace(",", "").rstrip(".").strip("{}()")
    m = re.fullmatch(r"[+-]?\d+(?:\.0*)?", s)
    if not m:
        return None
    return int(float(s)) if "." in s else int(s)


def _first_int(s: str) -> int | None:
    m = _INT_TOKEN_RE.search(s)
    return _to_int(m.group(0)) if m else None


def _last_int(s: str) -> int | None:
    found = None
    for m in _INT_TOKEN_RE.finditer(s):
        found = m
    return _to_int(found.group(0)) if found else None


def grade_aime(
    response: str,
    gold: str | int,
    *,
    hit_token_limit: bool = False,
    think_in_prompt: bool = False,
    **_: Any,
) -> Verdict:
    """Grade an AIME-style integer answer (0..999, compared numerically so "025" == 25).

    The answer is the last ``\\boxed{}`` of the final text; otherwise the number after
    "The final answer is"/"answer is"; otherwise the last integer of the final text.
    """
    gold_int = _to_int(str(gold))
    if gold_int is None:
        raise UngradableGold(str(gold), "aime", "not an integer")
    final, truncated = _prepare(response, hit_token_limit, think_in_prompt)
    if final is None:
        return Verdict(None, False, True, False)
    boxed = last_boxed(final)
    value: int | None
    raw: str | None
    if boxed is not None:
        raw, value = boxed, _to_int(boxed)
        if value is None:  # e.g. "\boxed{25 \text{ minutes}}"
            value = _first_int(_unwrap_commands(boxed))
    else:
        phrase = _answer_phrase(final)
        value = _first_int(phrase) if phrase is not None else None
        if value is None:
            value = _last_int(final)
        raw = None if value is None else str(value)
    extracted = str(value) if value is not None else raw
    failed = extracted is None and not truncated
    correct = (not truncated) and value is not None and value == gold_int
    return Verdict(extracted, correct, truncated, failed)


# ----------------------------------------------------------------------------------------------------
# MATH (LaTeX, math-verify with a wall-clock limit)
# ----------------------------------------------------------------------------------------------------

_WORKER_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


def _check_math_pair(gold: str, pred: str) -> dict[str, Any]:
    """In-process math-verify comparison (used by the ``thread`` backend)."""
    return _mathverify_worker.check(gold, pred)


@dataclass
class _Outcome:
    gold_ok: bool
    extracted: str | None
    correct: bool
    timed_out: bool = False


class MathVerifier:
    """Runs math-verify comparisons under a hard wall-clock limit.

    ``backend="process"`` (default) keeps one light worker subprocess (it imports only math-verify)
    and kills and restarts it when a comparison exceeds ``timeout_s``: this interrupts anything,
    including C-level big-integer arithmetic that holds the GIL (e.g. ``9^{9^{9}}``).
    ``backend="thread"`` runs each comparison in a daemon thread and abandons it on timeout
    (cheaper, no subprocess, but a runaway computation keeps burning CPU in the background and a
    computation that holds the GIL cannot be interrupted).

    ``num_timeouts`` counts comparisons that hit the limit (each graded wrong).
    """

    def __init__(
        self,
        timeout_s: float = 10.0,
        backend: Literal["process", "thread"] = "process",
        startup_timeout_s: float = 120.0,
    ) -> None:
        if backend not in ("process", "thread"):
            raise ValueError(f"backend must be 'process' or 'thread', got {backend!r}")
        self.timeout_s = float(timeout_s)
        self.backend = backend
        self.startup_timeout_s = float(startup_timeout_s)
        self.num_calls = 0
        self.num_timeouts = 0
        self.num_worker_errors = 0
        self._gold_ok: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_pid_owner: int | None = None
        self._buf = b""
        self._next_id = 0

    # -- public ---------------------------------------------------------------------------------
    def check(self, gold: str, pred: str, timeout_s: float | None = None) -> _Outcome:
        """Compare ``pred`` with ``gold``; raises :class:`UngradableGold` if gold cannot be parsed."""
        if self._gold_ok.get(gold) is False:
            raise UngradableGold(gold, "math")
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            self.num_calls += 1
            if self.backend == "thread":
                out = self._check_thread(gold, pred, limit)
            else:
                out = self._check_process(gold, pred, limit)
        if out.timed_out:
            self.num_timeouts += 1
            return out
        self._gold_ok[gold] = out.gold_ok
        if not out.gold_ok:
            raise UngradableGold(gold, "math")
        return out

    def close(self) -> None:
        """Stop the worker subprocess (if any)."""
        proc, self._proc = self._proc, None
        self._buf = b""
        if proc is not None and self._proc_pid_owner == os.getpid():
            try:
                proc.kill()
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except Exception:  # noqa: BLE001
                    pass

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown ordering varies
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- thread backend ---------------------------------------------------------------------------
    def _check_thread(self, gold: str, pred: str, limit: float) -> _Outcome:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["res"] = _check_math_pair(gold, pred)
            except Exception as err:  # noqa: BLE001
                box["err"] = err

        worker = threading.Thread(target=target, name="t3s-math-verify", daemon=True)
        worker.start()
        worker.join(limit)
        if worker.is_alive():
            return _Outcome(True, None, False, timed_out=True)
        if "err" in box:
            self.num_worker_errors += 1
            return _Outcome(True, None, False)
        res = box["res"]
        return _Outcome(bool(res["gold_ok"]), res["extracted"], bool(res["correct"]))

    # -- process backend --------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self.close()
        path = str(Path(_mathverify_worker.__file__).resolve())
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self._proc_pid_owner = os.getpid()
        self._buf = b""
        ready = self._read_line(time.monotonic() + self.startup_timeout_s)
        if ready is None or not ready.get("ready"):
            self.close()
            raise RuntimeError("math-verify worker subprocess failed to start (is math-verify installed?)")

    def _read_line(self, deadline: float) -> dict[str, Any] | None:
        """Next JSON line from the worker; None on timeout or EOF."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _check_process(self, gold: str, pred: str, limit: float) -> _Outcome:
        if self._proc is None or self._proc.poll() is not None or self._proc_pid_owner != os.getpid():
            if self._proc_pid_owner != os.getpid():
                self._proc = None  # inherited through fork: belongs to the parent process
            self._start_worker()
        assert self._proc is not None and self._proc.stdin is not None
        self._next_id += 1
        req_id = self._next_id
        payload = json.dumps({"id": req_id, "gold": gold, "pred": pred}) + "\n"
        deadline = time.monotonic() + limit
        try:
            self._proc.stdin.write(payload.encode())
            self._proc.stdin.flush()
            res = self._read_line(deadline)
            while res is not None and res.get("id") != req_id:  # stale answer (should not happen)
                res = self._read_line(deadline)
        except (BrokenPipeError, OSError, ValueError):
            res = None
        if res is None:
            timed_out = time.monotonic() >= deadline
            self.close()  # kill the runaway (or dead) worker; the next call starts a fresh one
            if not timed_out:
                self.num_worker_errors += 1
            return _Outcome(True, None, False, timed_out=timed_out)
        if "error" in res:
            self.num_worker_errors += 1
            return _Outcome(True, None, False)
        return _Outcome(bool(res["gold_ok"]), res["extracted"], bool(res["correct"]))


_DEFAULT_VERIFIER: MathVerifier | None = None
DEFAULT_MATH_TIMEOUT_S = 10.0


def get_math_verifier() -> MathVerifier:
    """The process-wide default :class:`MathVerifier` (process backend, 10 s limit), created lazily."""
    global _DEFAULT_VERIFIER
    if _DEFAULT_VERIFIER is None:
        _DEFAULT_VERIFIER = MathVerifier(timeout_s=DEFAULT_MATH_TIMEOUT_S)
        atexit.register(_DEFAULT_VERIFIER.close)
    return _DEFAULT_VERIFIER


def grade_math(
    response: str,
    gold: str,
    *,
    hit_token_limit: bool = False,
    think_in_prompt: bool = False,
    timeout_s: float | None = None,
    verifier: MathVerifier | None = None,
    **_: Any,
) -> Verdict:
    """Grade a LaTeX answer with math-verify (``verify(parse(gold), parse(answer))``).

    The answer is the last ``\\boxed{}`` of the final text; without a box math-verify reads the final
    text itself ("final answer is $x$", last expression...). Each comparison runs under a hard
    wall-clock limit (``timeout_s``, default the verifier's); one that exceeds it is graded wrong
    with ``timed_out=True``. Raises :class:`UngradableGold` when math-verify cannot parse ``gold``.
    """
    verifier = verifier or get_math_verifier()
    gold = str(gold)
    final, truncated = _prepare(response, hit_token_limit, think_in_prompt)
    if final is None:
        verifier.check(gold, "\\boxed{}", timeout_s)  # still validates the gold answer
        return Verdict(None, False, True, False)
    boxed = last_boxed(final)
    pred = "\\boxed{" + boxed + "}" if boxed is not None else final
    out = verifier.check(gold, pred, timeout_s)
    if out.timed_out:
        return Verdict(boxed, False, truncated, False, timed_out=True)
    extracted = boxed if boxed is not None else out.extracted
    failed = out.extracted is None and not truncated
    return Verdict(extracted, out.correct and not truncated, truncated, failed)


# ----------------------------------------------------------------------------------------------------
# Exact match
# ----------------------------------------------------------------------------------------------------


def normalize_exact(s: str) -> str:
    """Normalise a short answer for exact matching.

    Unwraps ``\\text{}``-like commands, drops ``$``, thousands separators ("1,234" -> "1234"),
    all whitespace (so "1 4 8 1 4" == "14814"), LaTeX spacing commands and a trailing period,
    and case-folds.
    """
    s = _unwrap_commands(str(s))
    for junk in ("$", "\\,", "\\!", "\\;", "\\ ", "{,}", "~"):
        s = s.replace(junk, " " if junk == "~" else "")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    return s.casefold()


def grade_exact(
    response: str,
    gold: str,
    *,
    hit_token_limit: bool = False,
    think_in_prompt: bool = False,
    **_: Any,
) -> Verdict:
    """Normalised exact string match (see :func:`normalize_exact`).

    The answer is the last ``\\boxed{}`` of the final text, else the text after "answer is"/"Answer:",
    else the last non-empty line of the final text.
    """
    gold_norm = normalize_exact(str(gold))
    if not gold_norm:
        raise UngradableGold(str(gold), "exact", "empty after normalisation")
    final, truncated = _prepare(response, hit_token_limit, think_in_prompt)
    if final is None:
        return Verdict(None, False, True, False)
    raw = last_boxed(final)
    if raw is None:
        raw = _answer_phrase(final)
    if raw is None:
        lines = [ln.strip() for ln in final.strip().splitlines() if ln.strip()]
        raw = lines[-1] if lines else None
    extracted = normalize_exact(raw) if raw is not None else None
    if extracted == "":
        extracted = None
    failed = extracted is None and not truncated
    correct = (not truncated) and extracted == gold_norm
    return Verdict(extracted, correct, truncated, failed)


# ----------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------

_MC_ANSWER_RE = re.compile(
    r"(?i:answer)(?:\s+(?i:is)\s*[:：]?|\s*[:：])\s*(?:\*\*\s*)?(?:\$\s*)?(?:\\boxed\{\s*)?"
    r"(?:\\text(?:bf)?\{\s*)?(?:(?i:option|choice)\s+)?\(?([A-J])\)?(?![A-Za-z0-9])"
)
_MC_PAREN_RE = re.compile(r"\(([A-J])\)")
_MC_ALONE_RE = re.compile(r"\s*\**\s*\(?([A-J])\)?[.)]?\s*\**\s*")


def mc_letter(s: str | None) -> str | None:
    """Read a single option letter from a short string: "C", "(C)", "C.", "\\text{C}", "C) 42"."""
    if s is None:
        return None
    s = _unwrap_commands(str(s)).replace("$", "").strip().strip("*").strip()
    m = re.match(r"\(?([A-J])\)?(?:[\s.:)]|$)", s)
    return m.group(1) if m else None


def _mc_extract(final: str) -> str | None:
    strong: list[tuple[int, str]] = []
    for pos, content in iter_boxed(final):
        letter = mc_letter(content)
        if letter:
            strong.append((pos, letter))
    strong.extend((m.start(), m.group(1)) for m in _MC_ANSWER_RE.finditer(final))
    if strong:
        return max(strong, key=lambda t: t[0])[1]
    alone = _MC_ALONE_RE.fullmatch(final)
    if alone:
        return alone.group(1)
    bare = [m.group(1) for m in _MC_PAREN_RE.finditer(final)]
    return bare[-1] if bare else None


def grade_mc(
    response: str,
    gold: str,
    *,
    hit_token_limit: bool = False,
    think_in_prompt: bool = False,
    **_: Any,
) -> Verdict:
    """Grade a multiple-choice letter (A..J, up to 10 options).

    Explicit forms -- ``\\boxed{X}``, "Answer: X", "the answer is (X)" -- are read first and the last
    occurrence wins; a final text that is only a letter counts too; otherwise the last bare "(X)".
    A letter beyond the item's options is extracted as is (and is wrong).
    """
    gold_letter = mc_letter(str(gold))
    if gold_letter is None:
        raise UngradableGold(str(gold), "mc", "not an option letter A..J")
    final, truncated = _prepare(response, hit_token_limit, think_in_prompt)
    if final is None:
        return Verdict(None, False, True, False)
    letter = _mc_extract(final)
    failed = letter is None and not truncated
    correct = (not truncated) and letter == gold_letter
    return Verdict(letter, correct, truncated, failed)


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------

Grader = Callable[..., Verdict]

GRADERS: dict[str, Grader] = {
    "aime": grade_aime,
    "math": grade_math,
    "exact": grade_exact,
    "mc": grade_mc,
}


def grade(grader: str, response: str, gold: str, **kw: Any) -> Verdict:
    """Grade with the grader registered under ``grader`` (a key of :data:`GRADERS`)."""
    try:
        fn = GRADERS[grader]
    except KeyError:
        raise KeyError(f"unknown grader {grader!r}; choose from {sorted(GRADERS)}") from None
    return fn(response, gold, **kw)


def validate_gold(grader: str, gold: str, **kw: Any) -> None:
    """Raise :class:`UngradableGold` if ``grader`` cannot parse ``gold`` (otherwise return None)."""
    grade(grader, "", str(gold), **kw)
