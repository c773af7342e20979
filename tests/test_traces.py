"""``t3s traces generate | verify | select`` (issue 25): a tiny random teacher, resumable generation, grading,
selection into a file ``fit`` trains on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_WORLD, error_of, random_model_config, save_random_ar, tiny_trace_data

from t3s.cli import main

GENERATE = ["--n", "2", "--max_new_tokens", "24", "--chunk_size", "1", "--batch_size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def teacher_and_problems(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("traces")
    teacher = Path(save_random_ar(root / "teacher", tiny_trace_data(TINY_WORLD, True), seed=3))
    problems = root / "problems.jsonl"
    problems.write_text("".join((TINY_WORLD / "train_problems.jsonl").read_text().splitlines(keepends=True)[:10]))
    return teacher, problems


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def generate(teacher: Path, problems: Path, out: Path, *extra: str) -> list[dict]:
    main(["traces", "generate", "--teacher", str(teacher), "--problems", str(problems), "--out", str(out),
          *GENERATE, *extra])
    return rows(out)


def test_generate_verify_select_then_fit_trains_on_the_selection(teacher_and_problems, tmp_path):
    teacher, problems = teacher_and_problems
    out = tmp_path / "t.jsonl"
    traces = generate(teacher, problems, out)
    assert len(traces) == 20 and len({r["id"] for r in traces}) == 20
    first = traces[0]
    assert first["sampling"] == {"n": 2, "temperature": 0.6, "top_p": 0.95, "top_k": None, "max_new_tokens": 24,
                                 "seed": 0}
    assert len(first["chat_template_sha256"]) == 64 and first["teacher"] == str(teacher)
    assert first["prompt"] == "add 4 2 9 7 + 5 9 8 2 ." and first["answer"] == "10279"
    assert all(r["num_tokens"] <= 24 and (r["num_tokens"] == 24) >= r["hit_limit"] for r in traces)

    main(["traces", "verify", str(out), "--grader", "exact"])
    verified = rows(out)
    assert all({"correct", "extracted", "truncated"} <= set(r) for r in verified)
    assert all(r["truncated"] for r in verified if r["hit_limit"]) and not any(r["correct"] for r in verified)

    selected = tmp_path / "selected.jsonl"
    main(["traces", "select", str(out), "--n", "5", "--rule", "length", "--output", str(selected)])
    chosen = rows(selected)
    kept = sorted(r["num_tokens"] for r in verified if not r["truncated"])
    assert len(chosen) == 5 and sorted(r["num_tokens"] for r in chosen) == kept[:5]
    assert not any(r["truncated"] for r in chosen)

    config = random_model_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"].update(limit=None, global_batch_size=4)
    cfg["data"].setdefault("batching", {})["micro_batch_size"] = 4
    config.write_text(yaml.safe_dump(cfg))
    main(["fit", "--config", str(config), "--data.path", str(selected), "--trainer.max_steps", "2"])
    run = next((tmp_path / "runs" / "sft").glob("version_*"))
    assert (run / "hf" / "step_2" / "model.safetensors").is_file()


def test_a_killed_generation_resumes_to_the_same_rows_none_twice(teacher_and_problems, tmp_path):
    teacher, problems = teacher_and_problems
    straight = generate(teacher, problems, tmp_path / "straight.jsonl")

    # a real kill: SIGKILL once a few chunks are on disk, then the same command again
    killed = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "t3s", "traces", "generate", "--teacher", str(teacher), "--problems",
               str(problems), "--out", str(killed), *GENERATE, "--max_new_tokens", "24"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None and not (killed.exists() and killed.read_text().count("\n") >= 4):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert generate(teacher, problems, killed) == straight

    # a kill in the middle of a write: chunk 0 complete, chunk 1 half there, a partial line
    partial = tmp_path / "partial.jsonl"
    lines = (tmp_path / "straight.jsonl").read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:3]) + lines[3][:25])
    assert generate(teacher, problems, partial) == straight
    assert len({r["id"] for r in straight}) == 20


def test_resuming_with_other_settings_or_bad_input_fails_in_one_line(teacher_and_problems, tmp_path, capsys):
    teacher, problems = teacher_and_problems
    out = tmp_path / "t.jsonl"
    out.write_text(json.dumps({"id": "teacher-0000/0", "problem_id": "teacher-0000", "sample": 0, "chunk": 0,
                               "teacher": str(teacher), "sampling": {"temperature": 1.0}}) + "\n")
    line = error_of(capsys, "traces", "generate", "--teacher", str(teacher), "--problems", str(problems),
                    "--out", str(out), *GENERATE)
    assert "other settings" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "answer": "3"}\n')
    assert "no problem text" in error_of(capsys, "traces", "generate", "--teacher", str(teacher), "--problems",
                                         str(bad), "--out", str(tmp_path / "o.jsonl"), *GENERATE)
    assert "unknown action" in error_of(capsys, "traces", "sample")
    assert "not verified" in error_of(capsys, "traces", "select", str(bad), "--n", "2")


def test_verify_grades_and_select_keeps_verified_traces_spread_over_problems(tmp_path):
    path = tmp_path / "t.jsonl"
    made = [
        ("p1", 0, "so the answer is \\boxed{ 8 8 4 }", "884", False),
        ("p1", 1, "so the answer is \\boxed{ 8 8 4 }", "884", False),
        ("p1", 2, "so the answer is \\boxed{ 8 8 5 }", "884", False),
        ("p2", 0, "so the answer is \\boxed{ 1 2 }", "12", False),
        ("p2", 1, "so the answer is \\boxed{ 1 2", "12", True),
        ("p3", 0, "I do not know", "7", False),
    ]
    path.write_text("".join(json.dumps({"id": f"{p}/{k}", "problem_id": p, "sample": k, "prompt": "q",
                                        "response": text, "answer": gold, "hit_limit": cut}) + "\n"
                            for p, k, text, gold, cut in made))
    main(["traces", "verify", str(path), "--grader", "exact"])
    graded = rows(path)
    assert [r["correct"] for r in graded] == [True, True, False, True, False, False]
    assert [r["truncated"] for r in graded] == [False, False, False, False, True, False]
    main(["traces", "select", str(path), "--n", "2", "--rule", "verified", "--seed", "1"])
    picked = rows(tmp_path / "t.selected.jsonl")
    assert sorted(r["problem_id"] for r in picked) == ["p1", "p2"]  # one per problem before a second
    main(["traces", "select", str(path), "--n", "9", "--rule", "random", "--output", str(tmp_path / "r.jsonl")])
    assert len(rows(tmp_path / "r.jsonl")) == 5  # the truncated trace is left out


def test_difficulty_puts_the_problems_theta0_fails_first(tmp_path):
    teacher = tmp_path / "t.jsonl"
    teacher.write_text("".join(json.dumps({"id": f"{p}/0", "problem_id": p, "response": "r", "correct": True}) + "\n"
                               for p in ("easy", "hard", "medium")))
    student = tmp_path / "theta0.jsonl"
    student.write_text("".join(json.dumps({"problem_id": p, "correct": ok}) + "\n" for p, ok in (
        ("easy", True), ("easy", True), ("hard", False), ("hard", False), ("medium", False), ("medium", True))))
    main(["traces", "select", str(teacher), "--n", "2", "--rule", "difficulty", "--student", str(student),
          "--output", str(tmp_path / "d.jsonl")])
    assert [r["problem_id"] for r in rows(tmp_path / "d.jsonl")] == ["hard", "medium"]
