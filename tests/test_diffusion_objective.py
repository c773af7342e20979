"""The masked-diffusion objective of DiffusionStudent on a tiny real Qwen3 (no Trainer)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model_config

from t3s.data import TeacherTraceDataModule
from t3s.data.packing import collate
from t3s.ops.hashing import hash_uniform
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask
from t3s.selection.scores import ScoreCache
from t3s.students import DiffusionStudent
from t3s.students.diffusion import (
    DiffusionStudentError,
    answer_layout,
    attends_bidirectionally,
    check_one_trace_per_row,
    corrupt,
    mask_ratios,
    resolve_special_ids,
    view_loss_sum,
)

EOS, MASK = 2, 5


@pytest.fixture(scope="module")
def data(tiny_world) -> TeacherTraceDataModule:
    dm = TeacherTraceDataModule(
        path=str(tiny_world / "teacher_traces.jsonl"), tokenizer=str(tiny_world / "tokenizer"), limit=8,
        global_batch_size=4, micro_batch_size=4, max_length=512, packing=False,
    )
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def micro_batch(data) -> dict[str, torch.Tensor]:
    return data.step_batch(0)["micro_batches"][0]


def make_student(data, **kw) -> DiffusionStudent:
    student = DiffusionStudent(
        model_config=tiny_model_config(len(data.tokenizer)), tokenizer=data.tokenizer.name_or_path, **kw
    )
    student.configure_model()
    return student


@pytest.fixture(scope="module")
def delta_cache(data, tmp_path_factory) -> str:
    """Δc by position: anchors at t%4==0 (+0.5), yet-to-learn at t%4==1 (−0.5), −0.1 at 2, 0 at 3."""
    lengths = torch.tensor([len(t.input_ids) for t in data.traces])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    pos = torch.cat([torch.arange(n) for n in lengths.tolist()])
    delta = torch.tensor([0.5, -0.5, -0.1, 0.0])[pos % 4]
    out = tmp_path_factory.mktemp("scores")
    ScoreCache(torch.zeros(len(pos)), delta, offsets, {"data": data.fingerprint()}).save(out)
    return str(out)


def first_labels(labels: torch.Tensor) -> list[int]:
    return [int((row != -100).nonzero()[0]) for row in labels]


def test_answer_is_the_reply_then_eos_padding_up_to_the_row_length(micro_batch):
    ids, labels = micro_batch["input_ids"], micro_batch["labels"]
    layout = answer_layout(ids, labels, EOS)
    width = ids.shape[1]
    for r, first in enumerate(first_labels(labels)):
        last = int((labels[r] != -100).nonzero()[-1])
        assert layout.answer[r].tolist() == [first <= t for t in range(width)]
        assert layout.response[r].tolist() == (labels[r] != -100).tolist()
        assert layout.targets[r, : last + 1].tolist() == ids[r, : last + 1].tolist()
        assert layout.targets[r, last + 1 :].tolist() == [EOS] * (width - last - 1)
    assert bool(layout.has_answer.all())
    # the rows have different lengths, so some answers are padded
    assert int((layout.answer & (micro_batch["trace_index"] < 0)).sum()) > 0


@pytest.mark.parametrize("objective", ["llada", "llada2"])
def test_loss_equals_a_hand_computation_on_a_fixed_mask(data, micro_batch, objective):
    student = make_student(data, objective=objective)
    layout = answer_layout(micro_batch["input_ids"], micro_batch["labels"], EOS)
    cols = torch.arange(layout.answer.shape[1])
    fixed = layout.answer & ((cols[None, :] % 3) == 0)
    p = torch.tensor([0.5, 0.25, 0.8, 0.1], dtype=torch.float64)
    (view,) = corrupt(layout, fixed, torch.zeros_like(fixed), p, mask_id=MASK, objective=objective)
    lp, _ = student.corrupted_logprobs(view)
    loss = float(view_loss_sum(lp.detach(), view)) / view.normaliser

    # by hand: full-vocabulary logits of the same model, CE at the corrupted positions, same position
    targets = micro_batch["input_ids"].clone()
    rows, width = targets.shape
    firsts = first_labels(micro_batch["labels"])
    for r in range(rows):
        last = int((micro_batch["labels"][r] != -100).nonzero()[-1])
        targets[r, last + 1 :] = EOS
    noisy = torch.where(fixed, torch.full_like(targets, MASK), targets)
    with torch.no_grad():
        logits = student.model(input_ids=noisy, use_cache=False).logits.double()
    ce = -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
    if objective == "llada":
        per_seq = [
            float(ce[r][fixed[r]].sum()) / (float(p[r]) * (width - firsts[r])) for r in range(rows)
        ]
        expected = sum(per_seq) / len(per_seq)
    else:
        expected = float(ce[fixed].sum()) / int(fixed.sum())
    assert loss == pytest.approx(expected, rel=1e-5)
    assert int(fixed.sum()) == int(view.corrupted.sum()) > 10


def test_prompt_tokens_are_never_corrupted(data, micro_batch, delta_cache):
    prompt = torch.zeros_like(micro_batch["labels"], dtype=torch.bool)
    for r, first in enumerate(first_labels(micro_batch["labels"])):
        prompt[r, :first] = True
    selection = InverseT3S(scores=delta_cache)  # forces tokens too
    selection.setup(data.fingerprint())
    student = make_student(data, objective="llada", complementary_masking=True, selection=selection)
    seen = torch.zeros_like(prompt)
    for step in range(30):
        for view in student.prepare(micro_batch, step).views:
            assert not bool((view.corrupted & prompt).any())
            assert torch.equal(view.noisy_ids[prompt], micro_batch["input_ids"][prompt])
            assert bool((view.noisy_ids[view.corrupted] == MASK).all())
            seen |= view.corrupted
    assert bool(seen[~prompt].all())  # every answer position is corrupted at some step


def test_union_semantics_and_the_controls(data, micro_batch, delta_cache):
    student = make_student(data, objective="llada2")
    baseline = student.prepare(micro_batch, 7).views[0].corrupted  # FullSFT: the random mask alone
    pos = micro_batch["position_ids"]
    response = micro_batch["labels"] != -100
    anchors, yet_to_learn = response & (pos % 4 == 0), response & (pos % 4 == 1)

    student.selection = T3S(scores=delta_cache, yet_to_learn_threshold=0.2)
    student.selection.setup(data.fingerprint())
    prepared = student.prepare(micro_batch, 7)
    corrupted = prepared.views[0].corrupted
    assert torch.equal(corrupted, baseline | yet_to_learn)
    assert torch.equal(corrupted & anchors, baseline & anchors)  # anchors stay visible unless random
    assert prepared.stats.selection_added == int((yet_to_learn & ~baseline).sum()) > 0
    assert prepared.stats.primary_corrupted == int(corrupted.sum())
    # the loss covers every corrupted position (llada2: one unit weight each)
    assert torch.equal(prepared.views[0].weights > 0, corrupted)

    student.selection = InverseT3S(scores=delta_cache)
    student.selection.setup(data.fingerprint())
    assert torch.equal(student.prepare(micro_batch, 7).views[0].corrupted, baseline | anchors)

    student.selection = RandomMask(match=T3S(scores=delta_cache), seed=3)
    student.selection.setup(data.fingerprint())
    must = student.selection.must_corrupt(student.selection_context(micro_batch))
    assert int(must.sum()) == int(yet_to_learn.sum())
    assert not torch.equal(must, yet_to_learn) and bool((must <= response).all())
    assert torch.equal(student.prepare(micro_batch, 7).views[0].corrupted, baseline | must)


def test_complementary_masking_covers_every_answer_token_exactly_once(data, micro_batch, delta_cache):
    selection = T3S(scores=delta_cache)
    selection.setup(data.fingerprint())
    for objective in ("llada", "llada2"):
        student = make_student(data, objective=objective, complementary_masking=True, selection=selection)
        first, second = student.prepare(micro_batch, 3).views
        layout = answer_layout(micro_batch["input_ids"], micro_batch["labels"], EOS)
        assert torch.equal(first.corrupted.long() + second.corrupted.long(), layout.answer.long())
        if objective == "llada":  # each view is weighted by its own masking probability
            u = hash_uniform(0, 3, micro_batch["trace_index"].amax(1), 1, 1)[:, 0]
            p = mask_ratios(u, "llada", 1e-3, (0.3, 0.8))
            length = layout.answer.sum(1).double()
            for r in range(len(p)):
                w1, w2 = first.weights[r][first.corrupted[r]], second.weights[r][second.corrupted[r]]
                assert torch.allclose(w1.double(), 1 / (p[r] * length[r]))
                assert torch.allclose(w2.double(), 1 / ((1 - p[r]).clamp(min=1e-3) * length[r]))
            assert first.normaliser == second.normaliser == 4
        else:
            assert first.normaliser + second.normaliser == int(layout.answer.sum())


def test_draws_depend_on_trace_and_step_only():
    traces = torch.tensor([3, 7, 3])
    u = hash_uniform(0, 5, traces, 200, 2)
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(hash_uniform(0, 5, traces[1:2], 50, 2)[0], u[1, :50])  # independent of row width
    assert not torch.equal(hash_uniform(0, 6, traces, 200, 2), u)
    assert not torch.equal(hash_uniform(1, 5, traces, 200, 2), u)
    many = hash_uniform(0, 0, torch.arange(64), 512, 2)
    assert float(many.min()) >= 0.0 and float(many.max()) < 1.0
    assert float(many.mean()) == pytest.approx(0.5, abs=0.01)
    assert float((many < 0.25).double().mean()) == pytest.approx(0.25, abs=0.01)
    p = mask_ratios(many[:, 0], "llada", 1e-3, (0.3, 0.8))
    assert float(p.min()) >= 1e-3 and float(p.max()) < 1.0
    p2 = mask_ratios(many[:, 0], "llada2", 1e-3, (0.3, 0.8))
    assert float(p2.min()) >= 0.3 and float(p2.max()) <= 0.8


def test_student_attends_bidirectionally_and_a_causal_copy_does_not(data):
    student = make_student(data)
    assert student.model.config.is_causal is False
    assert attends_bidirectionally(student.model)
    ids = torch.tensor([[1, 9, 10, 11, 12, 13]])
    changed = ids.clone()
    changed[0, -1] = 40
    with torch.no_grad():
        a, b = student.hidden_states(ids), student.hidden_states(changed)
    assert float((a[0, 0] - b[0, 0]).abs().max()) > 1e-4  # a later token changes an earlier position
    student.model.config.is_causal = True
    assert not attends_bidirectionally(student.model)
    # a model that ignores is_causal=False gets an explicit all-visible 4D mask instead
    student.check_bidirectional()
    assert student.explicit_attention_mask
    with torch.no_grad():
        assert torch.allclose(student.hidden_states(ids), a, atol=1e-5)
    from t3s.evals.diffusion_generation import DiffusionGenerator
    from t3s.evals.generation import SamplingParams

    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    prompts = [[1, 9, 10, 11, 2, 1, 30], [1, 12, 2, 1, 30]]
    kw = {"gen_length": 8, "block_length": 4, "steps": 4, "show_progress": False}
    explicit = DiffusionGenerator.for_student(student, **kw).generate(prompts, params)
    student.model.config.is_causal = False
    native = DiffusionGenerator.for_student(student, explicit_attention_mask=False, **kw).generate(prompts, params)
    assert [g[0].token_ids for g in explicit] == [g[0].token_ids for g in native]


def test_bad_inputs_are_refused(data, tmp_path):
    vocab = len(data.tokenizer)
    with pytest.raises(DiffusionStudentError, match="outside the model's vocabulary"):
        make_student(data, mask_token_id=vocab + 3)
    student = make_student(data, mask_token_id=8)  # a digit: a real token of the data
    with pytest.raises(DiffusionStudentError, match="occurs as a real token"):
        student.check_mask_token_unused(data.traces)
    make_student(data).check_mask_token_unused(data.traces)  # <|mask|> (id 5) is never used
    with pytest.raises(DiffusionStudentError, match="must differ"):
        resolve_special_ids(data.tokenizer, EOS, None, None)
    assert resolve_special_ids(data.tokenizer, None, None, None) == (MASK, EOS, 0)

    packed = collate(data.traces[:4], data.pad_id, pack=True, max_length=512)
    with pytest.raises(DiffusionStudentError, match="data.packing: false"):
        check_one_trace_per_row(packed["trace_index"])

    remote = tmp_path / "llada2"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({
        "model_type": "llada2_moe",
        "auto_map": {"AutoConfig": "configuration_llada2_moe.LLaDA2MoeConfig",
                     "AutoModelForCausalLM": "modeling_llada2_moe.LLaDA2MoeModelLM"},
    }))
    with pytest.raises(DiffusionStudentError, match="model.init_args.trust_remote_code: true"):
        DiffusionStudent(model=str(remote), tokenizer=data.tokenizer.name_or_path).configure_model()
    with pytest.raises(DiffusionStudentError, match="objective"):
        DiffusionStudent(model_config=tiny_model_config(vocab), objective="mdlm")


def test_a_tokenizer_without_mask_token_needs_an_explicit_id(shared_dir):
    from transformers import AutoTokenizer

    qwen = AutoTokenizer.from_pretrained(shared_dir / "tokenizers" / "qwen3")
    with pytest.raises(DiffusionStudentError, match="model.init_args.mask_token_id"):
        resolve_special_ids(qwen, None, None, None)
    assert resolve_special_ids(qwen, 151669, None, None)[0] == 151669


def test_rows_without_response_tokens_are_skipped(data, micro_batch):
    mb = {k: v.clone() for k, v in micro_batch.items()}
    mb["labels"][1] = -100
    student = make_student(data, objective="llada")
    prepared = student.prepare(mb, 0)
    rows, skipped = prepared.stats.rows, prepared.stats.skipped
    assert (rows, skipped) == (3, 1)
    (view,) = prepared.views
    assert not bool(view.corrupted[1].any()) and view.normaliser == 3
    assert FullSFT().must_corrupt(student.selection_context(mb)).sum() == 0
