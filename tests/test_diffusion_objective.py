"""The masked-diffusion objective of DiffusionStudent on a tiny real Qwen3 (no Trainer)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model_config, tiny_trace_data
from diffusion_helpers import make_diffusion_student as make_student
from diffusion_helpers import position_delta_cache

from t3s.data import TeacherTraceDataModule
from t3s.data.packing import collate
from t3s.ops.hashing import hash_uniform
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask
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
    return tiny_trace_data(tiny_world, packing=False, micro_batch_size=4)


@pytest.fixture(scope="module")
def micro_batch(data) -> dict[str, torch.Tensor]:
    return data.step_batch(0)["micro_batches"][0]


@pytest.fixture(scope="module")
def delta_cache(data, tmp_path_factory) -> str:
    """Δc by position: anchors at t%4==0 (+0.5), yet-to-learn at t%4==1 (−0.5), −0.1 at 2, 0 at 3."""
    return position_delta_cache(data, tmp_path_factory.mktemp("scores"))


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
    assert bool((baseline & anchors).any())  # the random mask alone does hit anchors

    student.selection = T3S(scores=delta_cache, yet_to_learn_threshold=0.2)
    student.selection.setup(data.fingerprint())
    prepared = student.prepare(micro_batch, 7)
    corrupted = prepared.views[0].corrupted
    # default anchor_visibility 0: the anchors are taken out of the random mask, the yet-to-learn forced in
    assert torch.equal(corrupted, (baseline & ~anchors) | yet_to_learn)
    assert prepared.stats.selection_added == int((yet_to_learn & ~baseline).sum()) > 0
    assert prepared.stats.primary_corrupted == int(corrupted.sum())
    assert prepared.stats.kept_visible == int(anchors.sum())
    # the loss covers every corrupted position (llada2: one unit weight each)
    assert torch.equal(prepared.views[0].weights > 0, corrupted)
    # anchor_visibility 1: anchors are corrupted like any token (the plain union)
    student.hparams.anchor_visibility = 1.0
    assert torch.equal(student.prepare(micro_batch, 7).views[0].corrupted, baseline | yet_to_learn)
    student.hparams.anchor_visibility = 0.0

    student.selection = InverseT3S(scores=delta_cache)  # the mirror image: anchors forced, yet-to-learn kept
    student.selection.setup(data.fingerprint())
    assert torch.equal(student.prepare(micro_batch, 7).views[0].corrupted, (baseline & ~yet_to_learn) | anchors)

    student.selection = RandomMask(match=T3S(scores=delta_cache), seed=3)
    student.selection.setup(data.fingerprint())
    ctx = student.selection_context(micro_batch)
    must, keep = student.selection.must_corrupt(ctx), student.selection.keep_visible(ctx)
    assert int(must.sum()) == int(yet_to_learn.sum())
    assert int(keep.sum()) == int(anchors.sum()) and not bool((must & keep).any())
    assert not torch.equal(must, yet_to_learn) and bool((must <= response).all())
    assert torch.equal(student.prepare(micro_batch, 7).views[0].corrupted, (baseline & ~keep) | must)


def test_anchors_are_never_corrupted_at_the_default_and_thinned_otherwise(data, micro_batch, delta_cache):
    selection = T3S(scores=delta_cache)
    selection.setup(data.fingerprint())
    pos = micro_batch["position_ids"]
    response = micro_batch["labels"] != -100
    anchors, ordinary = response & (pos % 4 == 0), response & (pos % 4 >= 2)
    for objective in ("llada", "llada2"):
        student = make_student(data, objective=objective, complementary_masking=True, selection=selection)
        for step in range(40):
            first, second = student.prepare(micro_batch, step).views
            assert not bool((first.corrupted & anchors).any())
            assert torch.equal(second.corrupted & anchors, anchors)  # the complement sees them all
    # anchor_visibility a: an anchor is corrupted with probability a·p (so about a times as often)
    student = make_student(data, objective="llada2", selection=selection, anchor_visibility=0.5)
    hit_anchor, hit_ordinary = 0.0, 0.0
    steps = 200
    for step in range(steps):
        corrupted = student.prepare(micro_batch, step).views[0].corrupted
        hit_anchor += float((corrupted & anchors).sum()) / int(anchors.sum())
        hit_ordinary += float((corrupted & ordinary).sum()) / int(ordinary.sum())
    assert hit_anchor / hit_ordinary == pytest.approx(0.5, abs=0.06)
    with pytest.raises(DiffusionStudentError, match="anchor_visibility"):
        make_student(data, anchor_visibility=1.5)


def test_forced_tokens_weigh_one_under_llada_and_kept_ones_one_over_their_probability(data, micro_batch):
    layout = answer_layout(micro_batch["input_ids"], micro_batch["labels"], EOS)
    cols = torch.arange(layout.answer.shape[1])[None, :].expand_as(layout.answer)
    random_mask = layout.answer & (cols % 3 == 0)
    must = layout.response & (cols % 5 == 1)
    keep = layout.response & (cols % 5 == 2) & ~random_mask
    thinned_in = layout.response & (cols % 15 == 12)  # kept-visible tokens the thinning let through
    random_mask = random_mask & ~keep | thinned_in
    p = torch.tensor([0.5, 0.25, 0.8, 0.1], dtype=torch.float64)
    (view,) = corrupt(layout, random_mask, must, p, mask_id=MASK, objective="llada", keep=keep | thinned_in,
                      anchor_visibility=0.4)
    length = layout.answer.sum(1).double()
    for r in range(4):
        forced = view.corrupted[r] & must[r]
        rand = view.corrupted[r] & ~must[r] & ~(keep[r] | thinned_in[r])
        kept = view.corrupted[r] & thinned_in[r] & ~must[r]
        assert int(forced.sum()) > 0 and int(rand.sum()) > 0 and int(kept.sum()) > 0
        assert torch.allclose(view.weights[r][forced].double(), 1 / length[r])  # inclusion probability 1
        assert torch.allclose(view.weights[r][rand].double(), 1 / (p[r] * length[r]))
        assert torch.allclose(view.weights[r][kept].double(), 1 / (0.4 * p[r] * length[r]))
    # unbiased: over the random draws, E[Σ weight · 1] is the answer length / answer length = 1 per sequence
    gen = torch.Generator().manual_seed(0)
    totals = torch.zeros(4, dtype=torch.float64)
    draws = 4000
    keep_set = layout.response & (cols % 5 == 2)
    for _ in range(draws):
        u = torch.rand(layout.answer.shape, generator=gen, dtype=torch.float64)
        q = torch.where(keep_set, 0.4 * p[:, None], p[:, None].expand_as(u))
        rnd = (u < q) & layout.answer
        (v,) = corrupt(layout, rnd, must, p, mask_id=MASK, objective="llada", keep=keep_set,
                       anchor_visibility=0.4)
        totals += v.weights.double().sum(1)
    assert torch.allclose(totals / draws, torch.ones(4, dtype=torch.float64), atol=0.05)


def test_sequence_normalisation_is_the_mean_of_per_sequence_means(data, micro_batch):
    layout = answer_layout(micro_batch["input_ids"], micro_batch["labels"], EOS)
    cols = torch.arange(layout.answer.shape[1])[None, :]
    fixed = layout.answer & (cols % (torch.arange(4)[:, None] + 2) == 0)  # different counts per row
    p = torch.full((4,), 0.5, dtype=torch.float64)
    (view,) = corrupt(layout, fixed, torch.zeros_like(fixed), p, mask_id=MASK, objective="llada2",
                      normalization="sequence")
    nll = torch.rand(layout.answer.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = float(view_loss_sum(-nll[view.corrupted], view)) / view.normaliser
    expected = sum(float(nll[r][fixed[r]].mean()) for r in range(4)) / 4
    assert loss == pytest.approx(expected, rel=1e-6)
    (token_view,) = corrupt(layout, fixed, torch.zeros_like(fixed), p, mask_id=MASK, objective="llada2")
    token = float(view_loss_sum(-nll[token_view.corrupted], token_view)) / token_view.normaliser
    assert token == pytest.approx(float(nll[fixed].mean()), rel=1e-6) and abs(token - loss) > 1e-4
    with pytest.raises(DiffusionStudentError, match="applies to objective llada2"):
        make_student(data, objective="llada", loss_normalization="sequence")


def test_complementary_masking_covers_every_answer_token_exactly_once(data, micro_batch, delta_cache):
    selection = T3S(scores=delta_cache)
    selection.setup(data.fingerprint())
    for objective in ("llada", "llada2"):
        student = make_student(data, objective=objective, complementary_masking=True, selection=selection)
        first, second = student.prepare(micro_batch, 3).views
        layout = answer_layout(micro_batch["input_ids"], micro_batch["labels"], EOS)
        assert torch.equal(first.corrupted.long() + second.corrupted.long(), layout.answer.long())
        if objective == "llada":  # each token is weighted by 1 / its own inclusion probability in its view
            u = hash_uniform(0, 3, micro_batch["trace_index"].amax(1), 1, 1)[:, 0]
            p = mask_ratios(u, "llada", 1e-3, (0.3, 0.8))
            length = layout.answer.sum(1).double()
            pos = micro_batch["position_ids"]
            forced = layout.response & (pos % 4 == 1)  # yet-to-learn: always in the first view
            kept = layout.response & (pos % 4 == 0)  # anchors: always in the second view
            for r in range(len(p)):
                plain1 = first.corrupted[r] & ~forced[r]
                plain2 = second.corrupted[r] & ~kept[r]
                assert torch.allclose(first.weights[r][plain1].double(), 1 / (p[r] * length[r]))
                assert torch.allclose(first.weights[r][forced[r]].double(), 1 / length[r])
                assert torch.allclose(second.weights[r][plain2].double(), 1 / ((1 - p[r]) * length[r]))
                assert torch.allclose(second.weights[r][kept[r]].double(), 1 / length[r])
                assert bool(forced[r].any()) and bool(kept[r].any())
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
    from t3s.evals.backends.diffusion import DiffusionGenerator
    from t3s.evals.backends.sampling import SamplingParams

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
    with pytest.raises(DiffusionStudentError, match="data.batching.packing: false"):
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
