"""A corpus of bad files a user (or an adversary) could hand us: every one is refused with one line naming it.

Trace files and score caches go through their loaders (which raise the error types the CLI turns into
``error: ...`` and exit 2); task YAMLs and ``t3s grade`` inputs go through the real CLI in-process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from t3s.cli import main
from t3s.data import FIELD_PRESETS, TraceDataError, load_records
from t3s.evals.tasks import TaskError, load_task
from t3s.evals.tasks.eval_task import EvalTask
from t3s.scoring import ScoreCache, ScoreCacheError

GOOD_TRACE = {"id": "a", "prompt": "What is 2+2?", "reasoning": "add", "answer_text": "4", "answer": "4"}

TRACE_FILES: dict[str, bytes] = {
    "big_number.jsonl": b'{"prompt": "q", "answer_text": "a", "answer": ' + b"7" * 5000 + b"}\n",
    "deep.jsonl": b'{"prompt": "q", "answer_text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "surrogate.jsonl": b'{"prompt": "q \\ud800", "answer_text": "a"}\n',
    "duplicate_ids.jsonl": (json.dumps(GOOD_TRACE) + "\n" + json.dumps(GOOD_TRACE) + "\n").encode(),
    "nan_answer.jsonl": b'{"prompt": "q", "answer_text": "a", "answer": NaN}\n',
    "infinite_answer.jsonl": b'{"prompt": "q", "answer_text": "a", "answer": Infinity}\n',
    "overflow_answer.jsonl": b'{"prompt": "q", "answer_text": "a", "answer": 1e999}\n',
    "latin1.jsonl": '{"prompt": "caf\u00e9", "answer_text": "a"}\n'.encode("latin-1"),
    "not_json.jsonl": b'{"prompt": "q", "answer_text": "a"}\n{prompt: q}\n',
    "array_row.jsonl": b"[1, 2, 3]\n",
    "no_prompt.jsonl": b'{"answer_text": "a"}\n',
    "prompt_number.jsonl": b'{"prompt": 5, "answer_text": "a"}\n',
    "bad_role.jsonl": b'{"messages": [{"role": "wizard", "content": "q"}], "answer_text": "a"}\n',
    "empty.jsonl": b"",
    "only_blank_replies.jsonl": b'{"prompt": "q", "answer_text": ""}\n',
    "truncated_list.json": b'[{"prompt": "q", "answer_text": "a"},\n{"prompt": ',
    "notes.txt": b"prompt,answer_text\n",
    "garbage.parquet": b"PAR1 this is not a parquet file",
    "id_list.jsonl": b'{"id": [1], "prompt": "q", "answer_text": "a"}\n',
    "answer_object.jsonl": b'{"prompt": "q", "answer_text": "a", "answer": {"x": 1}}\n',
    "csv_extra_field.csv": b"prompt,answer_text\nq,a,extra\n",
}

TASK_FILES: dict[str, str] = {
    "syntax.yaml": "name: t\ngrader: [aime\n",
    "empty.yaml": "",
    "list.yaml": "- a\n- b\n",
    "unknown_key.yaml": "name: t\ngrader: aime\ntemprature: 0.6\n",
    "unknown_grader.yaml": "name: t\ngrader: bleu\n",
    "limit_text.yaml": "name: t\ngrader: aime\nlimit: lots\n",
    "limit_negative.yaml": "name: t\ngrader: aime\nlimit: -1\n",
    "fields_number.yaml": "name: t\ngrader: aime\nfields: 5\n",
    "bad_temperature.yaml": "name: t\ngrader: aime\nsampling: {temperature: -1}\n",
    "n_text.yaml": "name: t\ngrader: aime\nsampling: {n: many}\n",
    "timeout_text.yaml": "name: t\ngrader: math\ngrader_kwargs: {timeout_s: soon}\n",
    "unknown_grader_kwarg.yaml": "name: t\ngrader: math\ngrader_kwargs: {strict: true}\n",
    "bad_tags.yaml": "name: t\ngrader: aime\ngrader_kwargs: {reasoning_tags: ['<r>']}\n",
    "template_field.yaml": "name: t\ngrader: aime\nprompt_template: '{question}'\n",
    "name_number.yaml": "name: 5\ngrader: aime\n",
    "deep.yaml": "name: t\nx: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "answer_type.yaml": "name: t\ngrader: mc\nfields: {choices: options, answer_type: roman}\n",
}

TASK_DATASETS: dict[str, tuple[str, str]] = {  # dataset file name -> (content, fields of the task)
    "missing_answer.jsonl": ('{"problem": "q"}\n', "{}"),
    "nan_gold.jsonl": ('{"problem": "q", "answer": NaN}\n', "{}"),
    "duplicate_item.jsonl": ('{"id": 1, "problem": "q", "answer": "1"}\n' * 2, "{id: id}"),
    "options_text.jsonl": ('{"problem": "q", "answer": "A", "options": "A or B"}\n', "{choices: options}"),
    "letter_out_of_range.jsonl": ('{"problem": "q", "answer": "E", "options": ["x", "y"]}\n', "{choices: options}"),
    "no_rows.jsonl": ("\n", "{}"),
}

GRADE_INPUTS: dict[str, bytes] = {
    "empty.jsonl": b"",
    "blank_lines.jsonl": b"\n\n\n",
    "not_json.jsonl": b'{"response": "x", "gold": "1"}\n{oops\n',
    "list_row.jsonl": b"[1]\n",
    "no_response.jsonl": b'{"gold": "1"}\n',
    "response_number.jsonl": b'{"response": 5, "gold": "5"}\n',
    "gold_list.jsonl": b'{"response": "x", "gold": [1]}\n',
    "gold_nan.jsonl": b'{"response": "x", "gold": NaN}\n',
    "gold_big.jsonl": b'{"response": "x", "gold": ' + b"1" * 5000 + b"}\n",
    "deep.jsonl": b'{"response": "x", "gold": "1", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "latin1.jsonl": '{"response": "caf\u00e9", "gold": "1"}\n'.encode("latin-1"),
}


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    start = time.process_time()  # CPU time: a loaded machine slows the wall clock, not the work
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert time.process_time() - start < 20, argv
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, (argv, err)
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name", sorted(TRACE_FILES))
def test_bad_trace_files_are_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(TRACE_FILES[name])
    start = time.process_time()
    with pytest.raises(TraceDataError) as info:
        load_records(path, FIELD_PRESETS["default"])
    assert time.process_time() - start < 10
    message = str(info.value)
    assert name in message and "\n" not in message, message


@pytest.mark.parametrize("name", sorted(TASK_FILES))
def test_bad_task_files_exit_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    task = tmp_path / name
    task.write_text(TASK_FILES[name], encoding="utf-8")
    generations = tmp_path / "g.jsonl"
    generations.write_text('{"response": "\\\\boxed{1}", "gold": "1"}\n', encoding="utf-8")
    err = _one_line_exit_2(capsys, ["grade", "--task", str(task), "--input", str(generations)])
    assert name in err


def test_a_non_utf8_task_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = tmp_path / "latin1.yaml"
    task.write_bytes("name: caf\u00e9\ngrader: aime\n".encode("latin-1"))
    generations = tmp_path / "g.jsonl"
    generations.write_text('{"response": "x", "gold": "1"}\n', encoding="utf-8")
    assert "latin1.yaml" in _one_line_exit_2(capsys, ["grade", "--task", str(task), "--input", str(generations)])


@pytest.mark.parametrize("name", sorted(TASK_DATASETS))
def test_bad_task_datasets_are_refused_in_one_line(tmp_path: Path, name: str) -> None:
    content, fields = TASK_DATASETS[name]
    (tmp_path / name).write_text(content, encoding="utf-8")
    grader = "mc" if "choices" in fields else "aime"
    task_file = tmp_path / "t.yaml"
    task_file.write_text(f"name: t\ndataset: {name}\ngrader: {grader}\nfields: {fields}\n", encoding="utf-8")
    task: EvalTask = load_task(task_file)
    with pytest.raises(TaskError) as info:
        task.items()
    assert "\n" not in str(info.value) and (name in str(info.value) or "'t'" in str(info.value)), info.value


@pytest.mark.parametrize("name", sorted(GRADE_INPUTS))
def test_bad_grade_inputs_exit_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / name
    path.write_bytes(GRADE_INPUTS[name])
    out = tmp_path / "verdicts.jsonl"
    err = _one_line_exit_2(capsys, ["grade", "--task", "aime", "--input", str(path), "--output", str(out)])
    assert name in err
    assert not out.exists()  # nothing is written for an input that cannot be graded


def test_grade_paths_that_cannot_be_used_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "g.jsonl"
    good.write_text('{"response": "x", "gold": "1", "cut": "yes"}\n', encoding="utf-8")
    (tmp_path / "folder.jsonl").mkdir()
    cases = [
        ["--input", str(tmp_path / "missing.jsonl")],
        ["--input", str(tmp_path / "folder.jsonl")],
        ["--input", str(good), "--output", str(tmp_path / "folder.jsonl")],
        ["--input", str(good), "--output", str(good)],
        ["--input", str(good), "--hit_limit_field", "cut"],
        ["--input", str(good), "--task", str(tmp_path / "nope.yaml")],
    ]
    for extra in cases:
        argv = ["grade", "--task", "aime", *extra]
        _one_line_exit_2(capsys, argv)
    assert good.read_text(encoding="utf-8").startswith('{"response"')  # the input was never overwritten


def _cache(tmp_path: Path, name: str, tensors: dict[str, torch.Tensor] | None, meta: object = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if tensors is not None:
        save_file(tensors, str(folder / "scores.safetensors"))
    meta = {"data": {}} if meta is None else meta
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _good_tensors() -> dict[str, torch.Tensor]:
    return {"base": -torch.rand(6), "bottleneck": -torch.rand(6), "offsets": torch.tensor([0, 2, 6])}


def test_damaged_score_caches_are_refused_in_one_line(tmp_path: Path) -> None:
    good = _cache(tmp_path, "good", _good_tensors())
    ScoreCache.load(good)  # the reference case loads
    raw = (good / "scores.safetensors").read_bytes()
    folders = []
    for name, data in (("truncated", raw[: len(raw) // 2]), ("garbage", b"\x00\xff" * 64), ("empty", b"")):
        folder = _cache(tmp_path, name, None)
        (folder / "scores.safetensors").write_bytes(data)
        folders.append(folder)
    for name, text in (("broken_meta", '{"data": '), ("list_meta", "[1, 2]"), ("data_not_object", '{"data": 3}')):
        folder = _cache(tmp_path, name, _good_tensors())
        (folder / "meta.json").write_text(text, encoding="utf-8")
        folders.append(folder)
    latin = _cache(tmp_path, "latin1_meta", _good_tensors())
    (latin / "meta.json").write_bytes('{"data": {"x": "caf\u00e9"}}'.encode("latin-1"))
    folders.append(latin)
    tensors = _good_tensors()
    folders += [
        _cache(tmp_path, "missing_tensor", {"base": tensors["base"], "offsets": tensors["offsets"]}),
        _cache(tmp_path, "bad_offsets", {**tensors, "offsets": torch.tensor([0, 4, 3])}),
        _cache(tmp_path, "short_offsets", {**tensors, "offsets": torch.tensor([0, 5])}),
        _cache(tmp_path, "all_nan", {**tensors, "base": torch.full((6,), float("nan"))}),
        _cache(tmp_path, "infinite", {**tensors, "bottleneck": torch.full((6,), float("-inf"))}),
        _cache(tmp_path, "int_scores", {**tensors, "base": torch.zeros(6, dtype=torch.int64)}),
        _cache(tmp_path, "matrix", {**tensors, "base": torch.zeros(2, 3), "bottleneck": torch.zeros(2, 3)}),
    ]
    for folder in folders:
        with pytest.raises(ScoreCacheError) as info:
            ScoreCache.load(folder)
        assert "\n" not in str(info.value), info.value


def test_the_corpus_is_large_enough() -> None:
    files = len(TRACE_FILES) + len(TASK_FILES) + 1 + len(TASK_DATASETS) + len(GRADE_INPUTS) + 6 + 15
    assert files >= 40
