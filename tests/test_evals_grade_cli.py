"""grade_file: re-grading a JSONL of generations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t3s.evals.grade_cli import grade_file


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
        ("{not json", r"bad\.jsonl:2: invalid JSON"),
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
