"""Task specs, loading from local files, MC shuffling and prompt rendering."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from t3s.evals.grading.graders import MC_LETTERS
from t3s.evals.tasks import (
    DEFAULT_INSTRUCTION,
    EvalItem,
    EvalTask,
    find_task_file,
    load_task,
    load_task_spec,
    prompt_opens_think,
    stable_seed,
)


def _write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def qwen3_tokenizer(shared_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shared_dir / "tokenizers" / "qwen3"))


def test_shipped_task_definitions():
    expected = {
        "aime24": ("aime", "HuggingFaceH4/aime_2024"),
        "aime25": ("aime", "math-ai/aime25"),
        "gpqa_diamond": ("mc", "Idavidrein/gpqa"),
        "math500": ("math", "HuggingFaceH4/MATH-500"),
        "mmlu_pro": ("mc", "TIGER-Lab/MMLU-Pro"),
    }
    for name, (grader, dataset) in expected.items():
        spec = load_task_spec(name)
        assert (spec.name, spec.grader, spec.dataset) == (name, grader, dataset)
        assert spec.sampling.temperature == 0.6 and spec.sampling.top_p == 0.95
    gpqa = load_task_spec("gpqa_diamond")
    assert gpqa.subset == "gpqa_diamond"
    assert gpqa.fields.choice_columns == [
        "Correct Answer",
        "Incorrect Answer 1",
        "Incorrect Answer 2",
        "Incorrect Answer 3",
    ]
    assert gpqa.fields.answer == "Correct Answer" and gpqa.fields.answer_type == "text"
    assert load_task_spec("mmlu_pro").fields.choices == "options"
    assert load_task_spec("aime24", limit=3, sampling={"n": 2}).sampling.n == 2


def test_task_lookup_and_spec_errors(tmp_path):
    _write_yaml(tmp_path / "mine.yaml", "dataset: data.jsonl\ngrader: exact\n")
    assert find_task_file("mine", tasks_dir=tmp_path) == tmp_path / "mine.yaml"
    assert load_task_spec("mine", tasks_dir=tmp_path).name == "mine"  # name defaults to the file stem
    with pytest.raises(FileNotFoundError, match="available"):
        find_task_file("does_not_exist", tasks_dir=tmp_path)
    _write_yaml(tmp_path / "typo.yaml", "name: typo\ndataset: x.jsonl\ngrader: exact\ntemprature: 0.1\n")
    with pytest.raises(ValueError, match="temprature"):
        load_task_spec(tmp_path / "typo.yaml")
    _write_yaml(tmp_path / "badgrader.yaml", "name: b\ndataset: x.jsonl\ngrader: fuzzy\n")
    with pytest.raises(ValueError, match="unknown grader"):
        load_task_spec(tmp_path / "badgrader.yaml")


def test_local_aime_and_math_tasks(tmp_path, shared_dir):
    data = shared_dir / "data"
    _write_yaml(
        tmp_path / "aime24_local.yaml",
        f"name: aime24_local\ndataset: {data / 'aime24.jsonl'}\nfields: {{problem: prompt, answer: answer}}\n"
        "grader: aime\ninstruction: ''\n",
    )
    task = load_task(tmp_path / "aime24_local.yaml")
    items = task.items()
    assert len(items) == 30 and items[0].id == "aime24_local-0"
    assert items[0].source.endswith("aime24.jsonl:1")
    assert all(it.gold.isdigit() for it in items)
    text, gold = task.user_message(items[0])
    assert text == items[0].prompt and gold == items[0].gold  # instruction already in the prompt
    assert task.grade(f"</think>\\boxed{{{gold}}}", gold).correct

    _write_yaml(
        tmp_path / "m.yaml",
        f"name: m\ndataset: {data / 'math500.jsonl'}\nfields: {{id: unique_id}}\ngrader: math\nlimit: 4\n",
    )
    m = load_task("m", tasks_dir=tmp_path)
    assert [it.id for it in m.items()][0] == "test/precalculus/807.json" and len(m) == 4
    text, gold = m.user_message(m.items()[0])
    assert text.endswith("\n\n" + DEFAULT_INSTRUCTION) and gold == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_missing_fields_and_bad_rows_report_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"problem": "1+1?", "answer": 2}\n\n{"problem": "2+2?"}\n', encoding="utf-8")
    task = EvalTask(
        load_task_spec(_write_yaml(tmp_path / "t.yaml", "name: t\ndataset: d.jsonl\ngrader: exact\n"))
    )
    with pytest.raises(ValueError, match=r"d\.jsonl:3: missing field 'answer'"):
        task.items()
    path.write_text('{"problem": "1+1?", "answer": 2}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"d\.jsonl:2: line is not valid JSON"):
        EvalTask(task.spec).items()
    path.write_text('{"id": 1, "problem": "a", "answer": 2}\n{"id": 1, "problem": "b", "answer": 3}\n')
    _write_yaml(tmp_path / "t2.yaml", "name: t2\ndataset: d.jsonl\nfields: {id: id}\ngrader: exact\n")
    with pytest.raises(ValueError, match="duplicate item id"):
        load_task(tmp_path / "t2.yaml").items()
    with pytest.raises(FileNotFoundError):
        load_task(_write_yaml(tmp_path / "t3.yaml", "name: t3\ndataset: nope.jsonl\n")).items()


def _mmlu_task(tmp_path: Path, shared_dir: Path, seed: int = 0) -> EvalTask:
    _write_yaml(
        tmp_path / f"mmlu_local_{seed}.yaml",
        f"name: mmlu_local\ndataset: {shared_dir / 'data' / 'r1_traces_mmlupro_200.jsonl'}\n"
        "fields: {id: id, problem: question, choices: options, answer: answer_letter, answer_type: letter}\n"
        f"grader: mc\nseed: {seed}\n",
    )
    return load_task(tmp_path / f"mmlu_local_{seed}.yaml")


def test_mc_shuffle_uniform_reproducible_and_consistent(tmp_path, shared_dir):
    task = _mmlu_task(tmp_path, shared_dir)
    items = task.items()
    assert len(items) == 200 and max(len(it.choices) for it in items) == 10
    counts: Counter[str] = Counter()
    for it in items:
        orders = set()
        for s in range(5):
            order = task.choice_order(it, s)
            assert sorted(order.order) == list(range(len(it.choices)))
            # the recorded gold letter shows the original correct option
            assert it.choices[order.order[MC_LETTERS.index(order.gold_letter)]] == it.choices[it.gold_index]
            assert order.original_index(order.gold_letter) == it.gold_index
            text, gold = task.user_message(it, s)
            assert gold == order.gold_letter
            assert f"({gold}) {it.choices[it.gold_index]}" in text
            if len(it.choices) == 10:  # the uniformity check below is over ten letters
                counts[gold] += 1
            orders.add(order.order)
        assert len(orders) > 1  # shuffled per sample, not only per item
    total = sum(counts.values())
    expected = total / 10
    chi2 = sum((counts[letter] - expected) ** 2 / expected for letter in MC_LETTERS[:10])
    assert set(counts) == set(MC_LETTERS[:10])
    assert chi2 < 40, counts  # 9 degrees of freedom: 40 is far in the tail (p ~ 1e-5)
    # the same seed gives the same orders (in a fresh task object); another seed other orders
    again = _mmlu_task(tmp_path, shared_dir)
    assert [again.choice_order(it, 3).order for it in again.items()] == [
        task.choice_order(it, 3).order for it in items
    ]
    other = _mmlu_task(tmp_path, shared_dir, seed=1)
    assert [other.choice_order(it, 3).order for it in other.items()] != [
        task.choice_order(it, 3).order for it in items
    ]
    assert stable_seed("a", 1) == stable_seed("a", 1) != stable_seed("a", 2)


def test_gpqa_style_choice_columns_from_csv(tmp_path):
    path = tmp_path / "gpqa_like.csv"
    cols = [
        "Record ID",
        "Question",
        "Correct Answer",
        "Incorrect Answer 1",
        "Incorrect Answer 2",
        "Incorrect Answer 3",
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for i in range(100):
            writer.writerow(
                [f"rec{i}", f"Question {i}?", f" right {i} ", f"wrong a{i}", f"wrong b{i}", f"wrong c{i}"]
            )
    spec_yaml = (
        "name: gpqa_like\ndataset: gpqa_like.csv\ngrader: mc\n"
        "fields:\n  id: Record ID\n  problem: Question\n  answer: Correct Answer\n  answer_type: text\n"
        "  choice_columns: [Correct Answer, Incorrect Answer 1, Incorrect Answer 2, Incorrect Answer 3]\n"
    )
    task = load_task(_write_yaml(tmp_path / "gpqa_like.yaml", spec_yaml))
    items = task.items()
    assert items[0].choices == ["right 0", "wrong a0", "wrong b0", "wrong c0"] and items[0].gold_index == 0
    assert items[5].source.endswith("gpqa_like.csv:7")
    counts = Counter(task.user_message(it, s)[1] for it in items for s in range(4))
    assert set(counts) == set("ABCD") and all(60 <= c <= 140 for c in counts.values()), counts
    text, gold = task.user_message(items[0], 2)
    assert f"({gold}) right 0" in text and "(E)" not in text
    assert task.grade(f"<think>hm</think>The answer is ({gold}).", gold).correct


def test_render_prompt_with_qwen3_chat_template(tmp_path, shared_dir, qwen3_tokenizer):
    tok = qwen3_tokenizer
    items = [{"id": "q1", "prompt": "What is 2+3?", "gold": "5"}]
    think = EvalTask.from_items("toy", items, grader="aime", system_prompt="You are careful.")
    item = think.items()[0]
    text, gold = think.render_prompt_text(tok, item)
    assert gold == "5"
    assert text.startswith("<|im_start|>system\nYou are careful.<|im_end|>\n<|im_start|>user\nWhat is 2+3?")
    assert text.endswith("<|im_start|>assistant\n") and not prompt_opens_think(text)
    ids, gold = think.render_prompt(tok, item)
    assert tok.decode(ids) == text and gold == "5"

    no_think = EvalTask.from_items("toy", items, grader="aime", enable_thinking=False)
    text, _ = no_think.render_prompt_text(tok, no_think.items()[0])
    assert text.endswith("<think>\n\n</think>\n\n") and "system" not in text
    assert prompt_opens_think("<|im_start|>assistant\n<think>\n")

    mc = _mmlu_task(tmp_path, shared_dir)
    it = mc.items()[0]
    ids0, gold0 = mc.render_prompt(tok, it, 0)
    ids1, gold1 = mc.render_prompt(tok, it, 1)
    assert ids0 != ids1  # options reshuffled for the second sample
    assert gold0 == mc.choice_order(it, 0).gold_letter and gold1 == mc.choice_order(it, 1).gold_letter


def test_from_items_training_accuracy():
    problems = [
        {"prompt": "1+1?", "answer": "2"},
        EvalItem(id="x", prompt="2+2?", gold="4"),
        {"id": "c", "problem": "Pick the vowel.", "choices": ["b", "a", "c"], "gold": "a"},
    ]
    task = EvalTask.from_items("train_acc", problems, grader="exact")
    items = task.items()
    assert [it.id for it in items] == ["train_acc-0", "x", "c"]
    assert items[2].gold == "B" and items[2].gold_index == 1
    assert task.multiple_choice
    assert task.grade("\\boxed{2}", items[0].gold).correct
    with pytest.raises(ValueError, match="train_acc item 0: missing field"):
        EvalTask.from_items("train_acc", [{"prompt": "no answer"}])


def test_json_and_parquet_loading(tmp_path):
    rows = [{"q": f"q{i}", "a": i} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for suffix in ("json", "parquet"):
        spec = f"name: t{suffix}\ndataset: d.{suffix}\nfields: {{problem: q, answer: a}}\ngrader: aime\n"
        task = load_task(_write_yaml(tmp_path / f"t{suffix}.yaml", spec))
        assert [(it.prompt, it.gold) for it in task.items()] == [("q0", "0"), ("q1", "1"), ("q2", "2")]
