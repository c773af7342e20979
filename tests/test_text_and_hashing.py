"""The shared reasoning/answer text module (used by data and evals alike) and the deterministic hash."""

from __future__ import annotations

import torch

from t3s.data import FIELD_PRESETS, load_records
from t3s.data.render import END_OF_TURN_TOKENS, stop_token_ids
from t3s.data.text import (
    REASONING_TAGS,
    braces_balanced,
    concluding_phrase,
    format_multiple_choice,
    last_boxed,
    matching_braces,
    split_reasoning,
    split_response,
    unwrap_text_commands,
)
from t3s.evals.backends import base as generation
from t3s.evals.grading.graders import grade_aime
from t3s.ops.hashing import counter_uniform, hash_uniform, stable_seed


def test_boxes_drifted_cases_have_one_answer() -> None:
    assert last_boxed("so the result is \\boxed 5.") == "5"  # TeX's brace-less form
    assert last_boxed("\\boxed{a \\} b}") == "a \\} b"  # escaped braces are literal
    assert last_boxed("\\boxed{\\{1, 2\\}} then \\fbox{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{3} and a cut-off \\boxed{\\frac{1}{") == "3"
    assert last_boxed("\\boxedfoo{3}") is None and last_boxed("") is None


def test_gold_answers_of_solutions_use_the_same_extraction(tmp_path) -> None:
    # the s1K preset extracts gold answers from worked solutions with the graders' box reader
    row = {"question": "q", "deepseek_thinking_trajectory": "r", "deepseek_attempt": "a",
           "solution": "We find $\\boxed{a \\} b}$ and then \\boxed 7."}
    path = tmp_path / "s1k.jsonl"
    import json

    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (record,), _ = load_records(path, FIELD_PRESETS["s1k"])
    assert record.gold == "7"


def test_the_last_closing_tag_ends_reasoning_for_data_and_graders() -> None:
    reply = "<think>the format is <think>...</think> then the answer</think>\n\n\\boxed{12}"
    assert split_response(reply) == ("the format is <think>...</think> then the answer", "\\boxed{12}")
    assert split_reasoning(reply).final == "\\boxed{12}"
    assert grade_aime(reply, "12").correct
    # OpenThoughts markers, the solution block unwrapped
    ot = "<|begin_of_thought|>hmm<|end_of_thought|>\n<|begin_of_solution|>x = 2<|end_of_solution|>"
    assert split_response(ot) == ("hmm", "x = 2")
    # an unclosed block of any known format holds no answer
    for open_tag, _ in REASONING_TAGS:
        split = split_reasoning(f"{open_tag} so the answer is \\boxed{{4}}")
        assert not split.closed and split.final is None
    # reopening after the last close: cut off inside the second block
    assert not split_reasoning("<think>a</think> b <think> c").closed
    # user-named tags
    custom = split_reasoning("<reflect>4?</reflect> 5", tags=[("<reflect>", "</reflect>")])
    assert (custom.reasoning, custom.final) == ("4?", "5")


def test_brace_scanner_and_unwrapping() -> None:
    text = "{a{b}\\{c\\}}"
    assert matching_braces(text) == {0: 10, 2: 4}
    assert braces_balanced(text) and not braces_balanced("{a}}") and not braces_balanced("{")
    assert unwrap_text_commands("5^{\\text{th}}\\text{ floor \\textbf{x}}") == "5^{th} floor x"


def test_the_last_concluding_phrase() -> None:
    text = "The answer is a digit from 0 to 6, as shown. Hence n = 4. Done"
    assert concluding_phrase(text) == "4"
    assert concluding_phrase("So the final answer is west.") == "west"
    assert concluding_phrase("The answer is 7. So the answer is") == "7"
    assert concluding_phrase("no conclusion here") is None


def test_one_multiple_choice_format() -> None:
    prompt = format_multiple_choice("Which?", ["x", "y"], "Pick one.")
    assert prompt == "Which?\n\n(A) x\n(B) y\n\nPick one."


def test_one_end_of_turn_list() -> None:
    assert generation.stop_token_ids is stop_token_ids  # generation stops where exports and rendering do
    assert {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>"} <= set(END_OF_TURN_TOKENS)


def test_stable_seed_is_pinned() -> None:
    # sha256-derived: the same in every process and release (shuffled option orders depend on it)
    assert stable_seed("t3s-choices", 0, "q1", 0) == stable_seed("t3s-choices", 0, "q1", 0)
    assert stable_seed("a", 1) == 4742018630964328543
    assert stable_seed("a", 1) != stable_seed("a", 2)


def test_counter_uniform_is_stateless_and_uniform() -> None:
    traces = torch.arange(64)[:, None]
    positions = torch.arange(512)[None, :]
    u = counter_uniform(7, traces, positions)
    assert u.shape == (64, 512) and u.dtype == torch.float64
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01
    # an element's draw does not depend on the other elements it is drawn with
    assert torch.equal(counter_uniform(7, torch.tensor([5]), torch.tensor([9])), u[5:6, 9])
    assert not torch.equal(counter_uniform(8, traces, positions), u)
    grid = hash_uniform(3, 11, torch.tensor([0, 4]), 6, 2)
    assert torch.equal(grid[1], hash_uniform(3, 11, torch.tensor([4]), 6, 2)[0])
