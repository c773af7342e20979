"""The diffusion sampler: block decoding with low-confidence remasking, on tiny real models."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_config

from t3s.evals.backends.base import Generator
from t3s.evals.backends.diffusion import DiffusionGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.runner import evaluate
from t3s.evals.tasks import EvalTask
from t3s.students import DiffusionStudent
from t3s.students.diffusion_sampler import DecodeSettings, commit_schedule, diffusion_decode

EOS, MASK, V = 2, 5, 73


@pytest.fixture(scope="module")
def student(tiny_world) -> DiffusionStudent:
    tok = str(tiny_world / "tokenizer")
    s = DiffusionStudent(model_config=tiny_model_config(V), tokenizer=tok, init_seed=1)
    s.configure_model()
    return s


def positional_logits(favourite: dict[int, tuple[int, float]], prompt_length: int):
    """A logits function of the response offset only: offset -> (token, logit); other tokens get 0."""

    def logits_fn(canvas: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        offsets = select.nonzero()[:, 1] - prompt_length
        out = torch.zeros(len(offsets), V)
        for i, off in enumerate(offsets.tolist()):
            token, value = favourite[off]
            out[i, token] = value
        return out

    return logits_fn


def test_commit_schedule_is_linear_and_fills_the_block():
    sched = commit_schedule(torch.tensor([8, 10, 3]), 4)
    assert sched.tolist() == [[2, 2, 2, 2], [3, 3, 2, 2], [1, 1, 1, 0]]


def test_decode_fills_every_mask_block_by_block(student):
    prompt = torch.tensor([[1, 29, 41, 12, 2, 1, 30], [0, 0, 1, 29, 12, 1, 30]])
    gen, block, steps = 16, 4, 2
    canvas = torch.cat([prompt, torch.full((2, gen), MASK)], dim=1)
    attention = torch.tensor([[1] * 7 + [1] * gen, [0, 0] + [1] * 5 + [1] * gen])
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    g = DiffusionGenerator(student.model, student.tokenizer, MASK, EOS, gen_length=gen, block_length=block)
    history = []
    result = diffusion_decode(
        g._logits_fn(attention, positions), canvas, 7,
        DecodeSettings(block_length=block, steps_per_block=steps, mask_id=MASK, eos_id=EOS, stop_ids=()),
        step_callback=lambda c, b: history.append((c.clone(), b)),
    )
    assert result.forward_passes == (gen // block) * steps == len(history)
    assert not bool((result.canvas == MASK).any())
    assert torch.equal(result.canvas[:, :7], prompt)
    previous = canvas
    for c, b in history:
        filled = (c[:, 7:] != MASK).view(2, gen // block, block)
        assert bool(filled[:, :b].all())  # earlier blocks are full
        assert not bool(filled[:, b + 1 :].any())  # later blocks untouched
        committed = int(((previous != MASK) != (c != MASK)).sum())
        assert committed == 2 * block // steps  # the linear schedule, both rows
        previous = c
    assert [b for _, b in history] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_decode_stops_once_eos_is_committed_with_nothing_masked_before_it():
    # offsets 0-4: token 7; offset 5: EOS (most confident); later offsets: token 9
    favourite = {o: (7, 5.0) for o in range(5)} | {5: (EOS, 9.0)} | {o: (9, 1.0) for o in range(6, 16)}
    canvas = torch.cat([torch.tensor([[1, 30]]), torch.full((1, 16), MASK)], dim=1)
    result = diffusion_decode(
        positional_logits(favourite, 2), canvas, 2,
        DecodeSettings(block_length=4, steps_per_block=4, mask_id=MASK, eos_id=EOS, stop_ids=[EOS]),
    )
    assert result.canvas[0, 2:].tolist() == [7] * 5 + [EOS] * 11
    # block 0 takes 4 passes; in block 1 EOS (offset 5) goes first, then offset 4 completes the prefix
    assert result.forward_passes == 6


def test_threshold_commits_every_confident_prediction_and_at_least_one():
    favourite = {0: (7, 12.0), 1: (8, 12.0), 2: (9, 0.5), 3: (10, 0.4)}
    canvas = torch.cat([torch.tensor([[1]]), torch.full((1, 4), MASK)], dim=1)
    history = []
    result = diffusion_decode(
        positional_logits(favourite, 1), canvas, 1,
        DecodeSettings(block_length=4, steps_per_block=4, mask_id=MASK, eos_id=EOS, threshold=0.9),
        step_callback=lambda c, b: history.append(c[0, 1:].tolist()),
    )
    assert history == [[7, 8, MASK, MASK], [7, 8, 9, MASK], [7, 8, 9, 10]]
    assert result.forward_passes == 3


def test_generator_is_deterministic_at_temperature_zero_and_keeps_padding_out(student):
    g = DiffusionGenerator(student.model, student.tokenizer, MASK, EOS, gen_length=16, block_length=8,
                           steps=8, batch_size=4, show_progress=False)
    assert isinstance(g, Generator) and g.explicit_attention_mask is None
    prompts = [[1, 29, 41, 12, 11, 15, 2, 1, 30], [1, 29, 12, 2, 1, 30]]
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=16)
    first = g.generate(prompts, greedy)
    assert g.explicit_attention_mask is False  # probed at the first call: is_causal=False suffices
    again = g.generate(prompts, greedy)
    alone = g.generate(prompts[1:], greedy)  # no left padding in this batch
    assert [[x.token_ids for x in gens] for gens in first] == [[x.token_ids for x in gens] for gens in again]
    assert first[0][0].token_ids == first[0][1].token_ids
    assert first[1][0].token_ids == alone[0][0].token_ids
    for gens in first:
        for x in gens:
            assert MASK not in x.token_ids and x.num_tokens == len(x.token_ids) <= 16
            assert x.hit_limit == (x.num_tokens == 16 and EOS not in x.token_ids)

    hot = SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=4)
    a, b = g.generate(prompts, hot), g.generate(prompts, hot)
    c = g.generate(prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=5))
    ids = lambda out: [[x.token_ids for x in gens] for gens in out]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)

    short = g.generate(prompts[:1], SamplingParams(n=1, temperature=0.0, max_new_tokens=5))
    assert short[0][0].num_tokens <= 5


def test_settings_are_validated(student):
    model, tok = student.model, student.tokenizer
    with pytest.raises(ValueError, match="multiple of block_length"):
        DiffusionGenerator(model, tok, MASK, EOS, gen_length=30, block_length=8)
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        DiffusionGenerator(model, tok, MASK, EOS, gen_length=32, block_length=8, steps=6)
    with pytest.raises(ValueError, match="threshold"):
        DiffusionGenerator(model, tok, MASK, EOS, gen_length=32, block_length=8, threshold=1.5)
    assert DiffusionGenerator(model, tok, MASK, EOS, 64, 16).canvas_length(20) == 32


def test_the_student_generator_plugs_into_the_evaluation_runner(student):
    gen = DiffusionGenerator.for_student(student, gen_length=8, block_length=4, steps=4, show_progress=False)
    assert (gen.mask_id, gen.eos_id, gen.pad_id) == (MASK, EOS, 0)
    task = EvalTask.from_items(
        "train_acc", [{"prompt": "add 1 2 .", "gold": "3"}, {"prompt": "add 4 4 .", "gold": "8"}],
        grader="exact", instruction="", sampling=SamplingParams(n=2, temperature=0.0, max_new_tokens=8),
    )
    result = evaluate(task, gen, student.tokenizer)
    assert len(result.records) == result.metrics["num_samples"] == 4
    assert all(r["num_tokens"] <= 8 for r in result.records)
