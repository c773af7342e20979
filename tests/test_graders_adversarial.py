"""Graders under adversarial and real-output-shaped responses: bounded time, no crash, no false positive."""

from __future__ import annotations

import time

import pytest

from t3s.data.text import REASONING_TAGS
from t3s.evals.grading.graders import grade, grade_aime, grade_exact, grade_math, grade_mc, integer_text
from t3s.evals.grading.mathverify import MathVerifier

WRONG_VALUES = [  # none of these is exactly the integer 25
    "25/4", "\\frac{25}{4}", "\\dfrac{25}{4}", "25\\sqrt{2}", "25^{2}", "25^2", "\u221225", "-25", "2.5", "250",
    "0.25", "25.5", "25!", "\\sqrt{25}", "25i", "25x", "25\\pi", "25 pi", "25_6", "1021_3", "25 or 26",
    "25, 26", "\\{25\\}", "[25, 26]", "25:1", "25\\cdot 2", "2\\cdot 25", "025.1", "1e25", "\uff12\uff15",
    "\u0662\u0665", "25 \\times 2", "\\frac{25}{0}", "52", "24", "26", "5^{2}+1", "x", "",
]
SHAPES = [  # how a response states its (wrong) answer
    "\\boxed{{{}}}",
    "<think>maybe \\boxed{{25}}</think>\nThe answer is $\\boxed{{{}}}$.",
    "<think>x</think>\nThe final answer is {}.",
    "The answer is a number between 20 and 30. Hence n = {}.",
    "<|begin_of_thought|>25<|end_of_thought|>\n<|begin_of_solution|>\\boxed{{{}}}<|end_of_solution|>",
]
CUT_OFF = [  # the right answer appears, but only in reasoning or in a response cut off before its answer
    "<think>so the answer is \\boxed{25}",
    "<|begin_of_thought|>We get 25. The answer is \\boxed{25}",
    "<thinking>\\boxed{25}",
    "<reasoning>n = 25",
    "<think>a</think>b<think>\\boxed{25}",
    "The answer is \\boxed{2",
    "\\boxed{\\frac{50}{",
    "<think>x</think>\\boxed{" * 50 + "25",
]
STRESS = [
    "\\boxed{" * 3000 + "24" + "}" * 3000,
    "\\boxed{" * 3000 + "25",
    "word " * 240_000 + "\\boxed{24}",
    "{" * 1_200_000,
    "}" * 600_000 + "{" * 600_000 + "\\boxed{24}",
    "\\boxed{1}" * 120_000,
    "\\boxed{" + "9" * 100_000 + "}",
    "The answer is " + "9" * 100_000 + ".",
    "1" + "0" * 120_000 + "25",
    "\\boxed{" + "\\text{" * 2_000 + "24" + "}" * 2_000 + "}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{" + "(" * 5_000 + "24" + ")" * 5_000 + "}",
    "\\boxed{\\frac{" + "1" * 6_000 + "}{" + "1" * 6_000 + "}}",
    "\ud800\\boxed{24}\udfff",
    "$" * 100_000,
    "answer is " * 50_000,
    "Hence n = " * 30_000 + "24.",
]


def _corpus() -> list[str]:
    responses = [shape.format(value) for value in WRONG_VALUES for shape in SHAPES]
    return responses + CUT_OFF + STRESS


@pytest.fixture(scope="module")
def verifier():
    verifier = MathVerifier(timeout_s=3.0)
    yield verifier
    verifier.close()


def test_adversarial_corpus_is_bounded_crash_free_and_never_credited():
    corpus = _corpus()
    assert len(corpus) >= 200
    slowest = 0.0
    for response in corpus:
        for name, gold, kw in (("aime", "25", {}), ("exact", "25", {}), ("mc", "C", {}),
                               ("math", "25", {})):  # the default verifier and time limit
            start = time.process_time()  # this process's CPU: math-verify runs in its worker under its own limit
            verdict = grade(name, response, gold, **kw)
            elapsed = time.process_time() - start
            slowest = max(slowest, elapsed)
            assert elapsed < 5.0, (name, response[:80], elapsed)
            assert not verdict.grader_error, (name, response[:80])
            assert not verdict.correct, (name, response[:80], verdict)
    # every grader reads huge inputs in well under a second (math-verify's own limit aside)
    for response in STRESS[:10]:
        for grader, gold in ((grade_aime, "25"), (grade_exact, "25"), (grade_mc, "C")):
            start = time.process_time()  # CPU time: load stretches the wall clock, not the work
            grader(response, gold)
            assert time.process_time() - start < 1.0, (grader.__name__, response[:40])


def test_a_hit_token_limit_is_never_credited():
    assert grade_aime("<think>a</think>\\boxed{25}", "25").correct
    assert not grade_aime("<think>a</think>\\boxed{25}", "25", hit_token_limit=True).correct


def test_aime_accepts_only_an_exact_integer():
    for right in ("\\boxed{25}", "\\boxed{\\frac{50}{2}}", "\\boxed{50/2}", "\\boxed{025}", "\\boxed{25.0}",
                  "\\boxed{x = 25}", "\\boxed{5^{\\text{th}}\\text{ floor}}".replace("5", "25"),
                  "\\boxed{25 \\text{ minutes}}", "\\boxed{" + "0" * 5000 + "25}"):
        assert grade_aime(right, "25").correct, right
    for wrong in ("25/4", "\\frac{25}{4}", "25\\sqrt{2}", "25^{2}", "\u221225", "1021_3"):
        assert not grade_aime(f"\\boxed{{{wrong}}}", "25").correct, wrong
    assert not grade_aime("\\boxed{1021_3}", "1021").correct
    assert integer_text("\u221225") == "-25" and integer_text("-0") == "0"


def test_integers_of_any_length():
    big = "9" * 5000 + "1"
    assert grade_aime(f"\\boxed{{{big}}}", big).correct
    assert not grade_aime(f"\\boxed{{{big}}}", big[:-1] + "2").correct
    assert grade_exact(f"so \\boxed{{{big}}}", big).correct
    assert grade_aime(f"the result is {big}", big).correct


def test_unclosed_reasoning_in_every_format_is_truncated():
    for open_tag, _ in REASONING_TAGS:
        verdict = grade_aime(f"{open_tag}We find 25. So the answer is \\boxed{{25}}", "25")
        assert verdict.truncated and not verdict.correct, open_tag
    closed = "<|begin_of_thought|>try 7<|end_of_thought|><|begin_of_solution|>\\boxed{25}<|end_of_solution|>"
    assert grade_aime(closed, "25").correct


def test_user_named_reasoning_tags():
    tags = [("<reflect>", "</reflect>")]
    assert grade_aime("<reflect>\\boxed{7}</reflect> so \\boxed{25}", "25", reasoning_tags=tags).correct
    assert not grade_aime("<reflect>\\boxed{7}</reflect> so \\boxed{25}", "7", reasoning_tags=tags).correct
    cut = grade_aime("<reflect>\\boxed{25}", "25", reasoning_tags=tags)
    assert cut.truncated and not cut.correct


def test_the_last_concluding_sentence_wins(verifier):
    response = "The answer is a digit from 0 to 6, so we check each case. Hence n = 4."
    assert grade_aime(response, "4").correct and not grade_aime(response, "0").correct
    assert grade_math(response, "4", verifier=verifier).correct
    assert not grade_math(response, "0", verifier=verifier).correct


def test_words_and_ordinals_in_the_box(verifier):
    response = "\\boxed{5^{\\text{th}}\\text{ floor}}"
    assert grade_aime(response, "5").correct and grade_math(response, "5", verifier=verifier).correct
    assert not grade_math(response, "6", verifier=verifier).correct
    assert not grade_math("\\boxed{5\\pi}", "5", verifier=verifier).correct


def test_bare_word_answers(verifier):
    assert grade_math("So the final answer is west.", "\\text{west}", verifier=verifier).correct
    assert not grade_math("So the final answer is west.", "\\text{east}", verifier=verifier).correct
    assert grade_math("\\boxed{\\text{West}}", "west", verifier=verifier).correct


def test_base_subscripts_must_match(verifier):
    assert not grade_math("\\boxed{1021_3}", "1021", verifier=verifier).correct
    assert not grade_math("\\boxed{1021}", "1021_3", verifier=verifier).correct
    assert grade_math("\\boxed{1021_{3}}", "1021_3", verifier=verifier).correct


def test_a_grader_failure_is_contained_counted_and_logged(caplog):
    verdict = grade("aime", None, "25")  # type: ignore[arg-type] - a generation backend that returned no text
    assert verdict.grader_error and not verdict.correct
    assert "aime grader failed" in caplog.text
