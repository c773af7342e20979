"""grade_file: re-grading a JSONL of generations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t3s.cli import main
from t3s.evals.grade_cli import GradeInputError, grade_file


def _write(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_round_trip_aime(tmp_path, capsys):
    rows = [
        {"id": "a", "resp": "<think>hmm</think>\\boxed{25}", "gold": 25, "num_tokens": 10, "cut": False},
        {
            "id": "b",
            "resp": "<think>hmm</think>The answer is 7.",
            "gold": "007",
            "num_tokens": 20,
            "cut": False,
        },
        {"id": "c", "resp": "<think>\\boxed{3}", "gold": "3", "num_tokens": 30, "cut": True},
        {"id": "d", "resp": "\\boxed{4}", "gold": "5", "num_tokens": 40, "cut": False},
        {"id": "e", "resp": "<think>a</think>\\boxed{6}", "gold": "6", "num_tokens": 50, "cut": True},
    ]
    src = _write(tmp_path / "gens.jsonl", rows)
    out = tmp_path / "out" / "graded.jsonl"
    metrics = grade_file("aime", str(src), "resp", "gold", str(out), hit_limit_field="cut")
    graded = _read(out)
    assert [g["id"] for g in graded] == ["a", "b", "c", "d", "e"]
    for original, g in zip(rows, graded):
        assert {k: g[k] for k in original} == original  # original fields kept
    assert [g["correct"] for g in graded] == [True, True, False, False, False]
    assert [g["truncated"] for g in graded] == [False, False, True, False, True]
    assert [g["extracted"] for g in graded] == ["25", "7", None, "4", "6"]
    assert metrics["avg@1"] == pytest.approx(0.4)
    assert metrics["num_correct"] == 2 and metrics["num_graded"] == 5 and metrics["num_excluded"] == 0
    assert metrics["truncation_rate"] == pytest.approx(0.4)
    assert metrics["mean_tokens"] == pytest.approx(30.0)
    assert "accuracy 0.4000 (2/5 correct)" in capsys.readouterr().out


def test_task_name_and_ungradable_math_gold(tmp_path, capsys):
    rows = [
        {"r": "\\boxed{\\frac{1}{2}}", "g": "\\frac12"},
        {"r": "\\boxed{2}", "g": "\\frac{1}{"},  # malformed gold
        {"r": "\\boxed{3}", "g": "\\frac{1}{"},
        {"r": "\\boxed{3}", "g": "4"},
    ]
    src = _write(tmp_path / "m.jsonl", rows)
    out = tmp_path / "m_out.jsonl"
    metrics = grade_file("math500", str(src), "r", "g", str(out))  # task name -> its grader (math)
    graded = _read(out)
    assert [g["correct"] for g in graded] == [True, None, None, False]
    assert graded[1]["excluded"] == "ungradable gold"
    assert metrics["num_excluded"] == 2 and metrics["num_graded"] == 2
    assert metrics["avg@1"] == pytest.approx(0.5)
    printed = capsys.readouterr().out
    assert printed.count("cannot parse") == 1 and "(x2)" in printed  # reported once
    assert "mean_tokens" not in metrics


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: line is not valid JSON"),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
        ('{"resp": "x"}', r"bad\.jsonl:2: missing field 'gold'"),
        ('{"resp": 5, "gold": "5"}', r"bad\.jsonl:2: field 'resp' must be a string"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, line, message):
    src = _write(tmp_path / "bad.jsonl", [{"resp": "\\boxed{1}", "gold": "1"}, line])
    with pytest.raises(ValueError, match=message):
        grade_file("exact", str(src), "resp", "gold", str(tmp_path / "o.jsonl"))
    assert not (tmp_path / "o.jsonl").exists()


def test_verdicts_are_written_incrementally_and_a_rerun_resumes(tmp_path, capsys):
    rows = [{"id": i, "resp": f"\\boxed{{{i}}}", "gold": str(i if i % 3 else i + 1)} for i in range(9)]
    src = _write(tmp_path / "gens.jsonl", rows)
    out = tmp_path / "v.jsonl"
    first = grade_file("aime", str(src), "resp", "gold", str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    # a crash after four verdicts, in the middle of the fifth line
    out.write_text("\n".join(lines[:4]) + "\n" + lines[4][:10], encoding="utf-8")
    again = grade_file("aime", str(src), "resp", "gold", str(out))
    assert again["num_resumed"] == 4 and first["num_resumed"] == 0
    assert out.read_text(encoding="utf-8").splitlines() == lines
    assert again["avg@1"] == first["avg@1"] == pytest.approx(6 / 9)
    assert "resumed: kept the verdicts of the first 4 row(s)" in capsys.readouterr().out
    # another grader's verdicts are not reused
    assert grade_file("exact", str(src), "resp", "gold", str(out))["num_resumed"] == 0
    # changed input rows are graded again from the first change on
    rows[6]["resp"] = "\\boxed{0}"
    _write(src, rows)
    assert grade_file("exact", str(src), "resp", "gold", str(out))["num_resumed"] == 6


def test_empty_input_truncation_count_and_lone_surrogates(tmp_path, capsys):
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(GradeInputError, match=r"empty\.jsonl: no generations to grade"):
        grade_file("aime", str(empty), "resp", "gold", str(tmp_path / "o.jsonl"))
    rows = ['{"resp": "\\ud800 \\\\boxed{5}", "gold": "5"}', {"resp": "<think>\\boxed{5}", "gold": "5"}]
    src = _write(tmp_path / "s.jsonl", rows)
    out = tmp_path / "s_out.jsonl"
    metrics = grade_file("aime", str(src), "resp", "gold", str(out))
    assert metrics["num_correct"] == 1 and metrics["num_truncated"] == 1
    graded = _read(out)
    assert graded[0]["resp"] == "\ud800 \\boxed{5}" and graded[0]["correct"] is True
    assert "truncated 1 (50.00%)" in capsys.readouterr().out


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    src = _write(tmp_path / "bad.jsonl", [{"resp": "\\boxed{1}", "gold": "1"}, "{oops"])
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", "--task", "aime", "--input", str(src), "--response_field", "resp"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.jsonl:2: line is not valid JSON" in err and "\n" not in err


def _toy_generations() -> list[dict]:
    """Responses in the toy world's own wordings (digits spelled one by one), boxed and unboxed, right and wrong."""
    from t3s.toy.styles import STUDENT_STYLE, TEACHER_STYLE
    from t3s.toy.task import Problem, spell_digits

    rows = []
    for i, problem in enumerate([Problem(48, 96), Problem(7, 5), Problem(355, 645), Problem(12, 30)]):
        for style in (STUDENT_STYLE, TEACHER_STYLE):
            think = f"<think> {style.reasoning(problem)} </think>"
            spelled = spell_digits(problem.total)
            wrong = spell_digits(problem.total + 1)
            for form, text in (("boxed", style.answer_text(problem)), ("plain", f"Result : {spelled}"),
                               ("sentence", f"the sum is {spelled} ."), ("wrong", f"Result : \\boxed{{ {wrong} }}")):
                rows.append({"id": f"{i}-{form}", "response": f"{think} {text}", "gold": str(problem.total)})
    return rows


@pytest.mark.parametrize("grader", ["aime", "math"])
def test_spaced_digit_answers_grade_the_same_under_aime_and_math(tmp_path, grader):
    """The toy's answers spell digits one by one; math-verify alone read "1 4 4" as 4 (0/64 in a real run)."""
    rows = _toy_generations()
    src = _write(tmp_path / "toy.jsonl", rows)
    metrics = grade_file(grader, str(src), "response", "gold", str(tmp_path / f"{grader}.jsonl"))
    verdicts = _read(tmp_path / f"{grader}.jsonl")
    assert [v["correct"] for v in verdicts] == [not r["id"].endswith("wrong") for r in rows]
    assert metrics["num_correct"] == 24 and metrics["num_graded"] == 32
    assert {v["extracted"] for v in verdicts if v["id"] == "0-boxed"} == {"144"}


def test_exact_grader_agrees_on_the_boxed_toy_answers(tmp_path):
    rows = [r for r in _toy_generations() if r["id"].endswith(("boxed", "wrong"))]
    src = _write(tmp_path / "toy.jsonl", rows)
    by_grader = {g: grade_file(g, str(src), "response", "gold", str(tmp_path / f"{g}.jsonl"))["num_correct"]
                 for g in ("exact", "aime", "math")}
    assert by_grader == {"exact": 8, "aime": 8, "math": 8}


def test_only_unambiguous_digit_runs_are_joined():
    from t3s.data.text import join_spaced_digits

    assert join_spaced_digits("so the sum is 1 4 4 8 3 .") == "so the sum is 14483 ."
    assert join_spaced_digits("\\boxed{ 1 0 }") == "\\boxed{ 10 }"
    for kept in ("12 34", "1  2", "1, 2", "3.1 4", "x_1 2", "2^3 4", "1 2/3", "1 2.5", "a1 2"):
        assert join_spaced_digits(kept) == kept, kept
