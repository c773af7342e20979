"""Tests of the toy world: tokenizer, chat template, task, styles, generated files."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from t3s.toy.styles import (
    COLUMN_NAMES,
    STUDENT_STYLE,
    TEACHER_STYLE,
    StyleSpec,
    column_steps,
    student_trace,
    teacher_trace,
)
from t3s.toy.task import Problem, count_problems, sample_problems, split_problems
from t3s.toy.tokenizer import SPECIAL_TOKENS, build_tokenizer
from t3s.toy.world import PRESETS, ToyWorld

REPO = Path(__file__).resolve().parents[1]
TINY_DIR = REPO / "configs" / "data" / "tiny"


@pytest.fixture(scope="module")
def tokenizer():
    return PRESETS["tiny"].tokenizer()


@pytest.fixture(scope="module")
def generated_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    PRESETS["tiny"].write(out)
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _boxed_answer(text: str) -> str | None:
    """Exact-match grader view: content of the last \\boxed{...}, spaces removed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    end = text.find("}", start)
    return None if end < 0 else text[start + len("\\boxed{") : end].replace(" ", "")


def _conversation(problem: Problem, style: StyleSpec = TEACHER_STYLE) -> tuple[list[dict], list[dict]]:
    reasoning, answer_text = style.render(problem)
    prompt = [{"role": "user", "content": problem.prompt}]
    full = [*prompt, {"role": "assistant", "content": answer_text, "reasoning_content": reasoning}]
    return prompt, full


def _ids(tok, messages: list[dict], **kwargs) -> list[int]:
    return list(tok.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs))


# ------------------------------------------------------------------------------------------ tokenizer
def test_vocabulary_layout(tokenizer) -> None:
    assert len(tokenizer) == 73
    assert tokenizer.convert_ids_to_tokens(list(range(7))) == list(SPECIAL_TOKENS)
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.mask_token) == (
        "<|endoftext|>",
        "<|im_end|>",
        "<unk>",
        "<|mask|>",
    )
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 2 and tokenizer.mask_token_id == 5
    assert tokenizer.convert_tokens_to_ids([str(d) for d in range(10)]) == list(range(7, 17))
    assert tokenizer.convert_tokens_to_ids("\\boxed{") != tokenizer.unk_token_id
    # <think> markers stay in skip_special_tokens decoding, as in Qwen3.
    ids = tokenizer("<think> 1 </think> 2")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think> 1 </think> 2"


def test_build_tokenizer_words() -> None:
    tok = build_tokenizer(["alpha", "7", "beta", "alpha"])
    assert len(tok) == 7 + 10 + 11 + 3 + 2
    assert tok.convert_tokens_to_ids(["alpha", "beta"]) == [31, 32]
    assert tok.decode(tok("alpha 7 , beta .")["input_ids"]) == "alpha 7 , beta ."
    with pytest.raises(ValueError, match="whitespace"):
        build_tokenizer(["two words"])


def test_round_trip_of_world_texts(tokenizer) -> None:
    records = PRESETS["tiny"].records()
    texts = []
    for name in ("teacher_traces", "student_traces"):
        for record in records[name][:40]:
            texts += [record["prompt"], record["reasoning"], record["answer_text"]]
    problem = Problem(4827, 9656)
    texts.append(tokenizer.apply_chat_template(_conversation(problem)[1], tokenize=False))
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids) == text
    # Special tokens split out even without surrounding spaces.
    assert (
        tokenizer("<|im_start|>user<|im_end|>")["input_ids"]
        == tokenizer("<|im_start|> user <|im_end|>")["input_ids"]
    )
    assert tokenizer("add zebra")["input_ids"][-1] == tokenizer.unk_token_id


def test_chat_template_renders_qwen3_shape(tokenizer) -> None:
    problem = Problem(12, 3)
    messages = [
        {"role": "system", "content": "add"},
        {"role": "user", "content": problem.prompt},
        {
            "role": "assistant",
            "content": "So the answer is \\boxed{ 1 5 }",
            "reasoning_content": "Units : 2 + 3 + 0 = 5 ;",
        },
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert full == (
        "<|im_start|> system add <|im_end|> <|im_start|> user add 1 2 + 3 . <|im_end|> "
        "<|im_start|> assistant <think> Units : 2 + 3 + 0 = 5 ; </think> So the answer is \\boxed{ 1 5 } <|im_end|>"
    )
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert (
        prompt
        == "<|im_start|> system add <|im_end|> <|im_start|> user add 1 2 + 3 . <|im_end|> <|im_start|> assistant"
    )
    no_think = tokenizer.apply_chat_template(
        messages[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think == prompt + " <think> </think>"
    # Reasoning written inside content is split out like Qwen3 does.
    inline = [
        *messages[:2],
        {
            "role": "assistant",
            "content": "<think> Units : 2 + 3 + 0 = 5 ; </think> So the answer is \\boxed{ 1 5 }",
        },
    ]
    assert tokenizer.apply_chat_template(inline, tokenize=False) == full
    # Assistant turns before the last user turn keep only their content.
    multi = [*messages[1:], {"role": "user", "content": "add 1 + 1 ."}]
    rendered = tokenizer.apply_chat_template(multi, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|> user add 1 2 + 3 . <|im_end|> <|im_start|> assistant So the answer is \\boxed{ 1 5 } "
        "<|im_end|> <|im_start|> user add 1 + 1 . <|im_end|> <|im_start|> assistant"
    )
    with pytest.raises(Exception, match="unsupported role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "1"}], tokenize=False)


def test_generation_prompt_is_token_prefix(tokenizer) -> None:
    for problem in [Problem(999, 1), *sample_problems(20, (1, 4), seed=7)]:
        for style in (TEACHER_STYLE, STUDENT_STYLE):
            prompt, full = _conversation(problem, style)
            prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
            full_ids = _ids(tokenizer, full)
            assert full_ids[: len(prompt_ids)] == prompt_ids
            assert len(full_ids) > len(prompt_ids) + 10
            assert full_ids[-1] == tokenizer.eos_token_id
            assert tokenizer.unk_token_id not in full_ids
            # Same ids as tokenising the rendered string.
            assert tokenizer(tokenizer.apply_chat_template(full, tokenize=False))["input_ids"] == full_ids
        # enable_thinking=False: empty think block in the prompt, still a prefix of an empty-reasoning reply.
        no_think = [*prompt, {"role": "assistant", "content": full[1]["content"], "reasoning_content": ""}]
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True, enable_thinking=False)
        assert _ids(tokenizer, no_think)[: len(prompt_ids)] == prompt_ids


def test_saved_tokenizer_reloads_and_renders_identically(tokenizer, generated_tiny: Path) -> None:
    reloaded = AutoTokenizer.from_pretrained(str(generated_tiny / "tokenizer"))
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.chat_template == tokenizer.chat_template
    assert (reloaded.pad_token_id, reloaded.eos_token_id, reloaded.mask_token_id) == (0, 2, 5)
    prompt, full = _conversation(Problem(4827, 9656))
    for messages, kwargs in ((prompt, {"add_generation_prompt": True}), (full, {})):
        assert reloaded.apply_chat_template(
            messages, tokenize=False, **kwargs
        ) == tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
        assert _ids(reloaded, messages, **kwargs) == _ids(tokenizer, messages, **kwargs)
    text = full[1]["reasoning_content"]
    assert reloaded.decode(reloaded(text)["input_ids"]) == text


# ----------------------------------------------------------------------------------------------- task
def test_problem_prompt_and_answer() -> None:
    problem = Problem(4827, 9656)
    assert problem.prompt == "add 4 8 2 7 + 9 6 5 6 ."
    assert problem.answer == "14483"
    with pytest.raises(ValueError):
        Problem(-1, 2)


def test_sample_problems_distinct_in_range_and_seeded() -> None:
    problems = sample_problems(300, (3, 4), seed=3)
    assert len(set(problems)) == 300
    assert all(100 <= x <= 9999 for p in problems for x in (p.a, p.b))
    assert {len(str(p.a)) for p in problems} == {3, 4}
    assert problems == sample_problems(300, (3, 4), seed=3)
    assert problems != sample_problems(300, (3, 4), seed=4)
    # Exclusion and exhaustion of a small space (1-digit operands: 100 ordered problems).
    assert count_problems((1, 1)) == 100
    first = sample_problems(60, (1, 1), seed=0)
    rest = sample_problems(40, (1, 1), seed=0, exclude=first)
    assert set(first) | set(rest) == {Problem(a, b) for a in range(10) for b in range(10)}
    with pytest.raises(ValueError, match="remain"):
        sample_problems(1, (1, 1), seed=0, exclude=[*first, *rest])
    train, heldout = split_problems([50, 20], (2, 3), seed=1)
    assert len(train) == 50 and len(heldout) == 20 and not set(train) & set(heldout)


# --------------------------------------------------------------------------------------------- styles
def test_style_strings_for_fixed_problem() -> None:
    problem = Problem(4827, 9656)
    assert student_trace(problem) == (
        "We sum each column from the right . Units : 7 + 6 + 0 = 1 3 ; overflow , bring a ten along . "
        "Tens : 2 + 5 + 1 = 8 ; no overflow . Hundreds : 8 + 6 + 0 = 1 4 ; overflow , bring a ten along . "
        "Thousands : 4 + 9 + 1 = 1 4 ; overflow , bring a ten along . TenThousands : 0 + 0 + 1 = 1 ; "
        "no overflow . Collecting the digits gives 1 4 4 8 3 .",
        "Result : \\boxed{ 1 4 4 8 3 }",
    )
    assert teacher_trace(problem) == (
        "Let's add the numbers column by column . Units : 7 + 6 + 0 = 1 3 ; so we write 3 and carry 1 . "
        "Tens : 2 + 5 + 1 = 8 ; so we write 8 and carry 0 . Hundreds : 8 + 6 + 0 = 1 4 ; so we write 4 "
        "and carry 1 . Thousands : 4 + 9 + 1 = 1 4 ; so we write 4 and carry 1 . TenThousands : 0 + 0 + 1 "
        "= 1 ; so we write 1 and carry 0 . Putting the written digits together , the sum is 1 4 4 8 3 .",
        "So the answer is \\boxed{ 1 4 4 8 3 }",
    )


def test_carry_ripples_through_999_plus_1() -> None:
    problem = Problem(999, 1)
    reasoning, answer_text = teacher_trace(problem)
    assert reasoning == (
        "Let's add the numbers column by column . Units : 9 + 1 + 0 = 1 0 ; so we write 0 and carry 1 . "
        "Tens : 9 + 0 + 1 = 1 0 ; so we write 0 and carry 1 . Hundreds : 9 + 0 + 1 = 1 0 ; so we write 0 "
        "and carry 1 . Thousands : 0 + 0 + 1 = 1 ; so we write 1 and carry 0 . Putting the written digits "
        "together , the sum is 1 0 0 0 ."
    )
    assert answer_text == "So the answer is \\boxed{ 1 0 0 0 }"
    student_reasoning, student_answer = student_trace(problem)
    assert student_reasoning.count("overflow , bring a ten along .") == 3
    assert student_reasoning.endswith(
        "Thousands : 0 + 0 + 1 = 1 ; no overflow . Collecting the digits gives 1 0 0 0 ."
    )
    assert _boxed_answer(student_answer) == _boxed_answer(answer_text) == "1000"
    assert [s.carry_out for s in column_steps(problem)] == [1, 1, 1, 0]
    assert len(column_steps(Problem(5, 4))) == 1 and len(column_steps(Problem(5, 5))) == 2


_STEP = re.compile(r"(\w+) : (\d) \+ (\d) \+ (\d) = (\d(?: \d)?) ; so we write (\d) and carry (\d) \.")


def test_teacher_reasoning_has_correct_column_sums() -> None:
    rng = random.Random(11)
    problems = [
        Problem(rng.randint(0, 10 ** rng.randint(1, 6)), rng.randint(0, 10 ** rng.randint(1, 6)))
        for _ in range(200)
    ]
    for problem in problems:
        reasoning, answer_text = teacher_trace(problem)
        steps = _STEP.findall(reasoning)
        width = max(len(str(problem.a)), len(str(problem.b)))
        top, bottom = str(problem.a).zfill(width)[::-1], str(problem.b).zfill(width)[::-1]
        carry, written = 0, []
        for index, (name, x, y, c, total, digit, carry_out) in enumerate(steps):
            assert name == COLUMN_NAMES[index]
            expected_x = int(top[index]) if index < width else 0
            expected_y = int(bottom[index]) if index < width else 0
            assert (int(x), int(y), int(c)) == (expected_x, expected_y, carry)
            column_sum = int(total.replace(" ", ""))
            assert column_sum == expected_x + expected_y + carry
            assert (int(digit), int(carry_out)) == (column_sum % 10, column_sum // 10)
            carry = int(carry_out)
            written.append(digit)
        assert carry == 0 and len(steps) in (width, width + 1)
        assert "".join(reversed(written)) == problem.answer
        assert reasoning.endswith(f"the sum is {' '.join(problem.answer)} .")
        assert _boxed_answer(answer_text) == problem.answer


def test_style_spec_is_parameterisable() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        StyleSpec("bad", "", "{answer}", "", "", "")
    terse = StyleSpec("terse", "", "carry {carry} .", "", "done .", "")
    assert terse.render(Problem(15, 7)) == (
        "Units : 5 + 7 + 0 = 1 2 ; carry 1 . Tens : 1 + 0 + 1 = 2 ; done .",
        "\\boxed{ 2 2 }",
    )
    assert terse.words() == ["carry", ".", "done"]
    # Scaffolding is shared: removing the style phrases leaves identical text.
    problem = Problem(4827, 9656)
    scaffold = [s.scaffold() for s in column_steps(problem)]
    for style in (STUDENT_STYLE, TEACHER_STYLE):
        reasoning = style.reasoning(problem)
        positions = [reasoning.index(step) for step in scaffold]
        assert positions == sorted(positions)


# ---------------------------------------------------------------------------------------------- world
def test_world_files_and_splits(generated_tiny: Path, tokenizer) -> None:
    teacher = _read_jsonl(generated_tiny / "teacher_traces.jsonl")
    student = _read_jsonl(generated_tiny / "student_traces.jsonl")
    train = _read_jsonl(generated_tiny / "train_problems.jsonl")
    heldout = _read_jsonl(generated_tiny / "heldout.jsonl")
    assert (len(teacher), len(student), len(train), len(heldout)) == (256, 384, 256, 128)
    assert list(teacher[0]) == ["id", "prompt", "reasoning", "answer_text", "answer"]
    assert list(heldout[0]) == ["id", "prompt", "answer"]
    assert [r["prompt"] for r in train] == [r["prompt"] for r in teacher]
    assert all(_boxed_answer(r["answer_text"]) == r["answer"] for r in teacher + student)

    def operands(prompt: str) -> frozenset[int]:
        left, right = prompt.removeprefix("add ").removesuffix(" .").split(" + ")
        return frozenset((int(left.replace(" ", "")), int(right.replace(" ", ""))))

    train_keys = {operands(r["prompt"]) for r in train}
    heldout_keys = {operands(r["prompt"]) for r in heldout}
    student_keys = {operands(r["prompt"]) for r in student}
    assert not train_keys & heldout_keys and not student_keys & (train_keys | heldout_keys)
    assert len({r["id"] for r in teacher + student + heldout}) == 256 + 384 + 128
    config = json.loads((generated_tiny / "world.json").read_text())
    assert config["n_teacher_traces"] == 256 and config["teacher_style"]["name"] == "teacher"
    assert all(tokenizer.unk_token_id not in tokenizer(r["reasoning"])["input_ids"] for r in teacher[:32])


def test_world_is_deterministic(generated_tiny: Path, tmp_path: Path) -> None:
    small = ToyWorld(n_teacher_traces=16, n_student_traces=16, n_heldout=8)
    first, second = small.write(tmp_path / "a"), small.write(tmp_path / "b")
    for name, path in first.items():
        if path.is_file():
            assert path.read_bytes() == second[name].read_bytes(), name
    assert small.records()["teacher_traces"] == ToyWorld.from_preset("tiny").records()["teacher_traces"][:16]
    other = ToyWorld(seed=1, n_teacher_traces=16, n_student_traces=16, n_heldout=8).records()
    assert other["teacher_traces"] != small.records()["teacher_traces"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_tiny_world_matches_generator(generated_tiny: Path) -> None:
    committed, generated = _tree(TINY_DIR), _tree(generated_tiny)
    assert sorted(committed) == sorted(generated), (
        "regenerate: python -m t3s.toy.world --preset tiny --output configs/data/tiny"
    )
    for name, data in generated.items():
        assert committed[name] == data, f"{name} is stale; regenerate the tiny world"
    assert sum(len(data) for data in committed.values()) < 300_000


def test_student_filler_keeps_reasoning_and_answer() -> None:
    world = ToyWorld(n_teacher_traces=8, n_student_traces=64, n_heldout=4, student_filler=0.5)
    plain = ToyWorld(n_teacher_traces=8, n_student_traces=64, n_heldout=4).records()["student_traces"]
    noisy = world.records()["student_traces"]
    assert [r["prompt"] for r in noisy] == [r["prompt"] for r in plain]
    changed = [(p, n) for p, n in zip(plain, noisy) if p != n]
    assert 0 < len(changed) < len(plain)
    pool = set(world.filler_words())
    for p, n in changed:
        assert _boxed_answer(n["answer_text"]) == n["answer"] == p["answer"]
        # every column step survives verbatim, in order; everything else is filler from the pool
        steps = re.findall(r"\S+ : \d \+ \d \+ \d = [\d ]+? ;", p["reasoning"])
        assert re.findall(r"\S+ : \d \+ \d \+ \d = [\d ]+? ;", n["reasoning"]) == steps
        rest = n["reasoning"]
        for step in steps:
            rest = rest.replace(step, " ")
        words = rest.split()
        assert words[-1] == "." and "".join(words[-1 - len(n["answer"]) : -1]) == n["answer"]
        assert set(words[: -1 - len(n["answer"])]) <= pool
    assert world.records() == world.records()  # deterministic
    tok = world.tokenizer()
    for r in noisy:
        assert tok.unk_token_id not in tok(r["reasoning"] + " " + r["answer_text"])["input_ids"]


def test_student_filler_is_validated_and_absent_from_plain_world_json() -> None:
    with pytest.raises(ValueError):
        ToyWorld(student_filler=1.5)
    with pytest.raises(ValueError):
        ToyWorld(filler_length=(0, 3))
    assert "student_filler" not in PRESETS["tiny"].config()
    assert PRESETS["toy"].config()["student_filler"] == 0.7


def test_small_preset_traces_fit_its_rows(tmp_path: Path) -> None:
    """configs/toy-small.yaml packs rows of 128 tokens: no teacher or student trace may be dropped for length."""
    from t3s.data import TeacherTraceDataModule

    world = ToyWorld.from_preset("small")
    world.write(tmp_path)
    for name, count in (("teacher_traces", world.n_teacher_traces), ("student_traces", world.n_student_traces)):
        data = TeacherTraceDataModule(path=str(tmp_path / f"{name}.jsonl"), tokenizer=str(tmp_path / "tokenizer"),
                                      global_batch_size=32, micro_batch_size=32, max_length=128)
        data.setup("fit")
        assert len(data.traces) == count
        assert max(len(t) for t in data.traces) <= 128
