"""Graders on the real AIME 2024/2025 and MATH-500 answers, MC letters, truncation and time limits."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from t3s.data.text import ReasoningSplit, last_boxed, split_reasoning
from t3s.evals.grading import _mathverify_worker, graders
from t3s.evals.grading.graders import GRADERS, grade_aime, grade_exact, grade_math, grade_mc, validate_gold
from t3s.evals.grading.mathverify import MathVerifier
from t3s.evals.grading.verdict import UngradableGold


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def aime(shared_dir: Path) -> list[dict]:
    rows = _jsonl(shared_dir / "data" / "aime24.jsonl") + _jsonl(shared_dir / "data" / "aime25.jsonl")
    assert len(rows) == 60
    return rows


@pytest.fixture(scope="module")
def math500(shared_dir: Path) -> list[dict]:
    rows = _jsonl(shared_dir / "data" / "math500.jsonl")
    assert len(rows) == 500
    return rows


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def test_split_reasoning_cases():
    assert split_reasoning("plain 42") == ReasoningSplit(None, "plain 42", True)
    assert split_reasoning("<think>r \\boxed{1}</think> final") == ReasoningSplit("r \\boxed{1}", "final", True)
    assert split_reasoning("reasoning only</think>ans") == ReasoningSplit("reasoning only", "ans", True)
    assert split_reasoning("<think>never closed \\boxed{5}") == ReasoningSplit("never closed \\boxed{5}", None, False)
    assert split_reasoning("still thinking", opened_in_prompt=True) == ReasoningSplit("still thinking", None, False)
    # the LAST closing tag ends the reasoning (reasoning may quote the tag)
    quoted = "<think>I must end with </think> and then answer</think>\\boxed{3}"
    assert split_reasoning(quoted) == ReasoningSplit("I must end with </think> and then answer", "\\boxed{3}", True)


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("\\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested, the last of several
        ("\\fbox{7}", "7"),
        ("set \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{3} and a cut-off \\boxed{\\frac{1}{", "3"),
        ("\\boxed 5.", "5"),
        ("\\boxed{\\boxed{9}}", "9"),
        ("no box", None),
    ],
)
def test_last_boxed_nested_and_multiple(text: str, boxed: str | None):
    assert last_boxed(text) == boxed


# ----------------------------------------------------------------------------------------------------
# AIME
# ----------------------------------------------------------------------------------------------------


def _aime_forms(ans: int) -> list[str]:
    return [
        f"Some work.\n\\boxed{{{ans}}}",
        f"<think>\nLet me try \\boxed{{{ans + 7}}}... no.\n</think>\n\nThe answer is $\\boxed{{{ans}}}$.",
        f"<think>long reasoning</think>\nThe final answer is {ans}.",
        f"<think>x</think>\nAfter simplifying, we obtain {ans // 2} + {ans - ans // 2}, so the answer is {ans}.",
        f"<think>x</think>\n**Final answer:** $\\boxed{{{ans:03d}}}$",
        f"<think>x</think>\nThus $m+n = \\boxed{{{ans}}}$ minutes, as required.",
        f"We get {ans}.",
    ]


def test_aime_gold_accepted_in_realistic_forms(aime):
    for row in aime:
        gold = str(row["answer"])
        for form in _aime_forms(int(gold)):
            v = grade_aime(form, gold)
            assert v.correct, (gold, form, v)
            assert v.extracted == str(int(gold))
        assert grade_aime(f"\\boxed{{{int(gold)}}}", f"{int(gold):03d}").correct  # gold stored as "025"


def test_aime_wrong_answers_rejected(aime):
    golds = [int(r["answer"]) for r in aime]
    for i, gold in enumerate(golds):
        other = next(g for g in golds[i + 1 :] + golds[:i] if g != gold)
        for wrong in (gold + 1, other):
            for form in _aime_forms(wrong):
                v = grade_aime(form, str(gold))
                assert not v.correct and not v.truncated, (gold, form)


def test_aime_failures():
    v = grade_aime("<think>ok</think> I could not finish.", "25")
    assert v.extraction_failed and not v.correct and v.extracted is None
    with pytest.raises(UngradableGold):
        validate_gold("aime", "twenty")


def test_truncation_and_think_content_ignored():
    # <think> never closed: truncated and wrong even though the right box appears inside.
    v = grade_aime("<think>\nso the answer is \\boxed{25}", "25")
    assert v.truncated and not v.correct and not v.extraction_failed
    # answers inside <think> are ignored; the final text has the wrong one.
    assert not grade_aime("<think>\\boxed{25}</think>\nThe answer is \\boxed{24}.", "25").correct
    assert not grade_aime("<think>\\boxed{25}</think>\nI give up.", "25").correct
    # the caller's token-limit flag marks a response truncated (and wrong)
    v = grade_aime("<think>a</think>\\boxed{25}", "25", hit_token_limit=True)
    assert v.truncated and not v.correct
    # template-opened thinking: no </think> in the response means it never closed
    assert grade_aime("reasoning... \\boxed{25}", "25", think_in_prompt=True).truncated
    assert grade_aime("reasoning</think>\\boxed{25}", "25", think_in_prompt=True).correct
    # multiple boxes in the final answer: the last wins
    assert grade_aime("\\boxed{24} wait, actually \\boxed{25}", "25").correct
    assert not grade_aime("\\boxed{25} wait, actually \\boxed{24}", "25").correct


# ----------------------------------------------------------------------------------------------------
# MATH (math-verify)
# ----------------------------------------------------------------------------------------------------


def test_math500_gold_accepted_and_others_rejected(math500):
    golds = [r["answer"] for r in math500]
    for i, gold in enumerate(golds):
        v = grade_math(
            f"<think>\nTry \\boxed{{-12345}}.\n</think>\nTherefore the answer is $\\boxed{{{gold}}}$.", gold
        )
        assert v.correct, (i, gold, v)
        assert v.extracted == gold.strip()
        if i % 10 == 0:  # more phrasings on a tenth of the set (keeps the test fast)
            assert grade_math(f"We conclude.\n\nThe final answer is ${gold}$.", gold).correct, gold
            assert grade_math(f"\\boxed{{0}} is wrong; correct: \\boxed{{{gold}}}", gold).correct, gold

    # another item's (different) answer must be rejected; every 5th item keeps the test fast
    def key(ans: str) -> str:
        return ans.split("=")[-1].replace(" ", "")  # "x=5" and "5" are the same answer

    accepted_wrong = []
    for i, gold in list(enumerate(golds))[::5]:
        other = next(g for g in golds[i + 1 :] + golds[:i] if key(g) != key(gold))
        if grade_math(f"</think>\\boxed{{{other}}}", gold).correct:
            accepted_wrong.append((gold, other))
    assert accepted_wrong == []


def test_math_equivalent_and_wrong_forms():
    assert grade_math("\\boxed{0.5}", "\\frac{1}{2}").correct
    assert grade_math("\\boxed{\\dfrac{1}{2}}", "\\frac12").correct
    assert not grade_math("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}").correct
    v = grade_math("<think>\\boxed{\\frac{1}{2}}", "\\frac{1}{2}")
    assert v.truncated and not v.correct
    v = grade_math("I do not know.", "\\frac{1}{2}")
    assert v.extraction_failed and not v.correct


def test_math_ungradable_gold_raises():
    for bad in ("\\frac{1}{", ""):
        with pytest.raises(UngradableGold):
            grade_math("\\boxed{1}", bad)
        with pytest.raises(UngradableGold):
            validate_gold("math", bad)
    validate_gold("math", "\\frac{1}{2}")


def assert_times_out(verifier: MathVerifier, response: str, within_s: float) -> None:
    """Grading ``response`` against "2" stops at the verifier's limit: wrong and counted. ``within_s`` is a
    hang guard only (wide: a loaded machine stretches wall time); what is checked is what happened."""
    start = time.monotonic()
    verdict = grade_math(response, "2", verifier=verifier)
    assert time.monotonic() - start < within_s
    assert verdict.timed_out and not verdict.correct
    assert verifier.num_timeouts == 1


def test_math_time_limit_process_backend_kills_runaway():
    # 99999999^99999999 is evaluated as an exact integer by sympy: a C-level computation that holds the GIL
    verifier = MathVerifier(timeout_s=0.5, backend="process")
    try:
        assert grade_math("\\boxed{2}", "2", verifier=verifier, timeout_s=30).correct  # the worker is up
        first_worker = verifier._proc.pid
        assert_times_out(verifier, "\\boxed{99999999^{99999999}}", within_s=120.0)
        assert verifier._proc is None or verifier._proc.pid != first_worker  # the runaway worker was killed
        # the worker was replaced; grading continues normally
        assert grade_math("\\boxed{2}", "2", verifier=verifier, timeout_s=30).correct
    finally:
        verifier.close()


def test_math_time_limit_thread_backend(monkeypatch):
    finished = threading.Event()

    def slow(gold: str, pred: str) -> dict:
        time.sleep(3.0)
        finished.set()
        return {"gold_ok": True, "extracted": pred, "correct": True}

    monkeypatch.setattr(_mathverify_worker, "check", slow)
    verifier = MathVerifier(timeout_s=0.05, backend="thread")
    assert_times_out(verifier, "\\boxed{2}", within_s=60.0)
    assert not finished.is_set()  # the verdict came at the limit, not when the slow check ended
    assert grade_math("\\boxed{2}", "2", verifier=verifier, timeout_s=5.0).correct


# ----------------------------------------------------------------------------------------------------
# exact
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grader, output, gold, correct",
    [
        ("aime", "\\boxed{1,000}", "1000", True),
        ("aime", "\\boxed{25.0}", "25", True),
        ("aime", "\\boxed{x = 25}", "25", True),
        ("aime", "\\boxed{36^\\circ}", "36", True),
        ("aime", "\\boxed{25.5}", "25", False),
        ("exact", "The answer is 1 4 8 1 4.", "14814", True),
        ("exact", "\\boxed{14814}", "1 4 8 1 4", True),
        ("exact", "so we get\n1,234.", "1234", True),
        ("exact", "<think>hmm</think>Answer: \\text{Paris}", "paris", True),
        ("exact", "\\boxed{14815}", "14814", False),
        ("exact", "<think>\\boxed{14814}</think>\\boxed{1}", "14814", False),
        ("exact", "\\boxed{1, 234}", "1234", False),  # a list "1, 234" is not the number 1234
        ("exact", "the answer is " + " ".join("12345678901234567890"), "12345678901234567890", True),  # spaced
    ],
)
def test_aime_normalisation_and_exact_grader(grader: str, output: str, gold: str, correct: bool):
    """AIME answers normalised (thousands separators, decimals, ``x =``, degrees) and the exact grader's
    matching (spaced digits, separators, case), each a single verdict."""
    assert GRADERS[grader](output, gold).correct is correct


def test_exact_grader_truncated():
    assert grade_exact("<think>\\boxed{14814}", "14814").truncated


# ----------------------------------------------------------------------------------------------------
# multiple choice
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{C}",
        "\\boxed{(C)}",
        "$\\boxed{\\text{C}}$",
        "Answer: C",
        "**Answer:** (C)",
        "The answer is (C).",
        "the correct answer is C.",
        "The answer is: **C**",
        "So I pick (C).",
        "C",
        "(C)",
    ],
)
def test_mc_letter_forms(text):
    for letter in "ACJ":
        v = grade_mc("<think>maybe (B)? \\boxed{B}</think>\n" + text.replace("C", letter), letter)
        assert v.correct and v.extracted == letter, (text, letter, v)
        assert not grade_mc(text.replace("C", letter), "B" if letter != "B" else "D").correct


def test_mc_last_occurrence_and_priority():
    assert grade_mc("Answer: A ... on reflection, Answer: D", "D").correct
    assert grade_mc("\\boxed{A} hmm, \\boxed{D}", "D").correct
    # explicit answer beats a later bare mention of an option
    assert grade_mc("The answer is (B), since (A) is wrong.", "B").correct
    v = grade_mc("I am not sure about any of them.", "B")
    assert v.extraction_failed and v.extracted is None
    assert grade_mc("<think>Answer: B", "B").truncated
    with pytest.raises(UngradableGold):
        validate_gold("mc", "42")


def test_mc_real_r1_traces(shared_dir):
    rows = _jsonl(shared_dir / "data" / "r1_traces_mmlupro_200.jsonl")
    right = wrong = 0
    for r in rows:
        response = f"<think>\n{r['reasoning']}\n</think>\n\n{r['answer_text']}"
        right += grade_mc(response, r["answer_letter"]).correct
        other = "ABCDEFGHIJ"[("ABCDEFGHIJ".index(r["answer_letter"]) + 1) % 10]
        wrong += grade_mc(response, other).correct
    assert right == len(rows)
    assert wrong == 0


def test_registry():
    assert set(GRADERS) == {"aime", "math", "exact", "mc"}
    assert graders.grade("aime", "\\boxed{7}", "7").correct
    with pytest.raises(KeyError):
        graders.grade("nope", "", "")
