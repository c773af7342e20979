"""Graders on long reasoning outputs (issue #26): one test per disagreement class A-E, and the agreement
of the ``math`` and ``aime`` graders with the adjudicated labels of ``tests/fixtures/grader_corpus.jsonl``
(built by ``tests/fixtures/make_grader_corpus.py`` from MATH-500, AIME and real R1 thinking)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from t3s.evals.grading.graders import grade, grade_aime, grade_math
from t3s.evals.grading.mathverify import MathVerifier

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = FIXTURES / "grader_corpus.jsonl"

#: Thinking written out without tags (QwQ style, or a chat template that opened ``<think>`` itself), with
#: intermediate results and hesitations, as long reasoning models write it.
THINKING = (
    "Okay, let me work through this carefully.\n\n"
    "First, 12 + 30 = 42, so the first part is 42. Then the second part: 7 * 6 = 42 again, hmm.\n\n"
    "Wait, so the intermediate total is 4, and each side is 4 as well.\n\n"
    "Let me double-check that computation. Yes, that seems right."
)


def untagged(ending: str) -> str:
    return f"{THINKING}\n\n{ending}"


def tagged(ending: str) -> str:
    return f"<think>\n{THINKING}\n</think>\n\nTo solve the problem, we add the parts: 12 + 30 = 42.\n\n{ending}"


@pytest.fixture(scope="module")
def verifier():
    verifier = MathVerifier(timeout_s=10.0)
    yield verifier
    verifier.close()


def _math(response: str, gold: str, verifier: MathVerifier):
    return grade_math(response, gold, verifier=verifier)


# ----------------------------------------------------------------------------------------------------
# the five classes
# ----------------------------------------------------------------------------------------------------

CLASS_A = [  # a concluding sentence with filler words, a stray \), a number written as a word
    ("So the answer is indeed 284.", "284", "285"),
    ("Therefore, the probability is equal to 0.15.", "0.15", "0.25"),
    ("Thus, \\( n = 284 \\).", "284", "248"),
    ("So the answer is just $\\frac{14}{3}$.", "\\frac{14}{3}", "\\frac{3}{14}"),
    ("So, the answer is: three boxes contain both pens and pencils.", "3", "4"),
    ("Therefore, the number of solutions is three.", "3", "2"),
]


@pytest.mark.parametrize("wrap", [untagged, tagged])
def test_class_a_filler_words_delimiters_and_number_words(verifier, wrap):
    for ending, gold, other in CLASS_A:
        response = wrap(ending)
        verdict = _math(response, gold, verifier)
        assert verdict.correct and not verdict.truncated, (ending, verdict)
        assert not _math(response, other, verifier).correct, (ending, other)
    assert grade_aime(untagged("So the answer is indeed 284."), "284").correct


def test_class_b_the_value_before_the_answer_and_the_last_conclusion(verifier):
    for wrap in (untagged, tagged):
        response = wrap("I'm confident that 44 is the correct answer.")
        assert _math(response, "44", verifier).correct
        assert not _math(response, "42", verifier).correct  # the earlier "so the first part is 42"
        assert grade_aime(response, "44").correct and not grade_aime(response, "42").correct
    # the final sentence says 16; the "4" of an earlier one is not the answer
    for ending in ("Therefore, there are 16 such squares in total.", "Adding everything up, we get 16.",
                   "In total, that comes out to 16."):
        response = untagged(ending)
        assert _math(response, "16", verifier).correct, ending
        assert not _math(response, "4", verifier).correct, ending


def test_class_c_display_math_after_is_colon(verifier):
    plane = "5x - 7y + 11z + 4 = 0"
    for wrap in (untagged, tagged):
        for ending in (f"The equation of the plane is:\n\\[ {plane} \\]",
                       f"Therefore, the equation of the plane is:\n$$\n{plane}\n$$"):
            response = wrap(ending)
            verdict = _math(response, plane, verifier)
            assert verdict.correct and verdict.extracted == plane, (ending, verdict)
            assert not _math(response, "5x - 7y + 11z - 4 = 0", verifier).correct


def test_class_d_a_response_cut_off_mid_thought_is_never_credited(verifier):
    cut_offs = [
        ("Okay, the path is 700 feet long and she has walked 500.\n\nThe rest is 700 - 500 = 200 feet", "200"),
        (untagged("The remaining distance is 700 - 500 = 200 feet"), "200"),
        (untagged("So the answer is 200. Wait, but we still need to account for the"), "200"),
        (untagged("So the answer is \\boxed{200}. But wait, let me recheck the second st"), "200"),
        (untagged("The distance to a vertex is R, so x^2 + y^2 + z^2 = 4"), "4"),  # cut from "4R^2"
        (tagged("The answer is $200$, but first let me expl"), "200"),
    ]
    for response, gold in cut_offs:
        for verdict in (_math(response, gold, verifier), grade_aime(response, gold)):
            assert not verdict.correct, (response[-60:], verdict)
            assert verdict.truncated, (response[-60:], verdict)
    # a cut after a complete sentence that concludes nothing is no answer either
    verdict = _math(untagged("Let me compute the difference: 700 - 500 = 200 feet."), "200", verifier)
    assert not verdict.correct and verdict.extracted is None


def test_class_e_a_stray_fragment_after_a_complete_box_is_not_truncation(verifier):
    for tail in ("<", "\n<think>", "<think>", "<|im_", "<｜end▁of▁sentence"):
        response = tagged(f"**Final Answer**\n\\[\n\\boxed{{5}}\n\\]{tail}")
        verdict = _math(response, "5", verifier)
        assert verdict.correct and not verdict.truncated, (tail, verdict)
        assert grade_aime(response, "5").correct
        assert not _math(response, "6", verifier).correct
    # a reasoning block reopened after the answer, with more reasoning, is still truncated
    assert grade_aime(tagged("\\boxed{5}\n<think>\nHmm, wait"), "5").truncated
    # and the generation's own token-limit flag still truncates
    assert grade_aime(tagged("\\boxed{5}<"), "5", hit_token_limit=True).truncated


# endings written by hand, not by the corpus generator: (ending, gold, credited), after THINKING in both forms
HAND_WRITTEN = [
    ("**Answer:** $\\boxed{12}$", "12", True),
    ("Hence, $f(-2)+f(-1)+f(0) = \\boxed{\\frac{14}{3}}$.", "\\frac{14}{3}", True),
    ("So, the final answer is:\n\n\\[\n\\boxed{12}\n\\]", "12", True),
    ("Final Answer: The final answer is $12$. I hope it is correct.", "12", True),
    ("Therefore, the remainder when $N$ is divided by 7 is 5.", "5", True),
    ("Therefore, the minimum value is 12, achieved when x = 3.", "12", True),
    ("So the answer is 12 (since the other case is impossible).", "12", True),
    ("Therefore, k = 12 is the only solution.", "12", True),
    ("So the number of integers is twelve.", "12", True),
    ("Therefore, the final answer is $\\boxed{12}$.\n\nI hope it is correct.", "12", True),
    ("So, the perimeter is $12 + 4\\sqrt{2}$ cm.", "12+4\\sqrt{2}", True),
    ("So the largest is 99, which is odd.", "99", True),
    ("Answer: 5 inches", "5", True),
    ("That gives us 5 as the final answer.", "5", True),
    ("So, the expression evaluates to 5.", "5", True),
    ("So the answer is 7.\n\nWait, no. x = 2, so 2x + 1 = 5. So the answer is 5.", "5", True),
    ("So the answer is 7.\n\nWait, no. x = 2, so 2x + 1 = 5. So the answer is 5.", "7", False),
    ("So the answer is 12. But wait", "12", False),
    ("Hmm, so far we have x = 12, and then y =", "12", False),
    ("So the sum is 12, and the product", "12", False),
    ("Therefore, the area is:\n\\[\n12 +", "12", False),
    ("Let me verify: 12 * 1 = 12. So 12 works. Now check 13: 13 is prime, so", "12", False),
]


@pytest.mark.parametrize("wrap", [untagged, tagged])
def test_hand_written_endings(verifier, wrap):
    for ending, gold, credited in HAND_WRITTEN:
        verdict = _math(wrap(ending), gold, verifier)
        assert verdict.correct == credited, (ending, gold, verdict)
        if credited:
            assert not _math(wrap(ending), "999", verifier).correct, ending


def test_math500_golds_stated_without_a_box(shared_dir, verifier):
    """Every 4th MATH-500 gold, stated in prose, inline or display math at the end of written-out thinking,
    is read exactly; another item's gold stated the same way is rejected."""
    rows = [json.loads(line) for line in (shared_dir / "data" / "math500.jsonl").read_text().splitlines()]
    golds = [r["answer"] for r in rows]
    forms = ("So the answer is {}.", "I am confident that ${}$ is the correct answer.",
             "Therefore, the final answer is:\n\\[\n{}\n\\]")

    def key(ans: str) -> str:
        return (ans.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
                .replace(" ", "").split("=")[-1])

    for i in range(0, len(golds), 4):
        gold = golds[i]
        other = next(g for g in golds[i + 1 :] + golds if key(g) != key(gold))
        for form in forms:
            assert _math(untagged(form.format(gold)), gold, verifier).correct, (form, gold)
            assert not _math(untagged(form.format(other)), gold, verifier).correct, (form, gold, other)


# ----------------------------------------------------------------------------------------------------
# the corpus
# ----------------------------------------------------------------------------------------------------


def _corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_corpus_agreement_and_no_false_positive_on_cut_off_responses():
    rows = _corpus()
    assert len(rows) >= 300
    classes = Counter((r["class"], r["correct"]) for r in rows)
    for cls in ("base", "A", "B", "C", "E"):  # complete shapes: stated right and stated wrong
        assert classes[cls, True] >= 10 and classes[cls, False] >= 10, cls
    assert classes["D", False] >= 50 and all(r["truncated"] for r in rows if r["class"] == "D")
    disagreements, false_positives = [], []
    for row in rows:
        verdict = grade(row["grader"], row["response"], row["gold"])
        assert not verdict.grader_error, row["id"]
        if verdict.correct != row["correct"]:
            disagreements.append((row["id"], verdict.extracted))
        if row["truncated"] and verdict.correct:
            false_positives.append(row["id"])
    agreement = 1 - len(disagreements) / len(rows)
    assert false_positives == []
    assert agreement >= 0.995, (agreement, disagreements[:20])


def test_corpus_is_reproducible_from_shared(shared_dir):
    sys.path.insert(0, str(FIXTURES))
    try:
        import make_grader_corpus
    finally:
        sys.path.remove(str(FIXTURES))
    assert make_grader_corpus.build(shared_dir / "data") == _corpus()


# ----------------------------------------------------------------------------------------------------
# the answer locator
# ----------------------------------------------------------------------------------------------------


def test_clean_value_and_locate_answer():
    from t3s.evals.grading.answer_text import clean_value, locate_answer, strip_stray_tail

    cleaned = {
        "indeed 284": "284",
        "equal to 0.15": "0.15",
        "284 \\)": "284",
        "\\( \\frac{14}{3} \\) units": "\\frac{14}{3}",
        "three boxes contain both": "3",
        "twenty-five": "25",
        "16, which is 4 squared": "16",
        "\\frac{14}{3}, or approximately 4.67": "\\frac{14}{3}",
        "25 or 26": "25 or 26",  # an alternative is no single value
        "west": "west",
        "the correct answer": None,
        "I hope": None,
    }
    assert {text: clean_value(text) for text in cleaned} == cleaned
    assert strip_stray_tail("\\boxed{5}<|im_") == "\\boxed{5}"
    assert strip_stray_tail("a < b") == "a < b" and strip_stray_tail("so x<y") == "so x<y"

    found = locate_answer("So the answer is indeed 284.")
    assert (found.text, found.kind, found.cut_off) == ("284", "statement", False)
    assert locate_answer("We get $\\boxed{4}$. The answer is 16.").text == "16"  # an explicit answer after a box
    assert locate_answer("\\boxed{4}. So the total is 16.").text == "4"  # a plain statement does not
    assert locate_answer("\\boxed{12} square units").cut_off is False
    assert locate_answer("$\\frac{14}{3}$").text == "\\frac{14}{3}"
    # thinking written out: a conclusion followed by more mathematics is a step
    text = "So the answer is 5.\n\nThen 2 + 3 = 6, hmm.\n\nOkay."
    assert locate_answer(text, untagged=True).text is None
    assert locate_answer(text).text == "5"  # the same text after a closed reasoning block: the last conclusion
    assert locate_answer("So, the answer is 5.\n\nI think that's it.", untagged=True).text == "5"


def test_the_locator_is_bounded():
    from t3s.evals.grading.answer_text import locate_answer

    for text in ("So the value is 5. " * 20_000, "$" * 100_000, "\\[" * 50_000, "is " * 100_000,
                 "\n\n" * 50_000 + "The answer is 3.", "(" * 100_000 + " is the correct answer"):
        found = locate_answer(text, untagged=True)
        assert found.text is None or len(found.text) < 100_000
