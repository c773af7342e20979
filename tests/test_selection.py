"""Each strategy's mask on hand-made cases, backed by a real score cache on disk."""

from __future__ import annotations

import math

import pytest
import torch

import t3s.selection as sel
from t3s.selection.scores import ScoreCache, ScoreCacheError

NAN = float("nan")
FINGERPRINT = {"tokenizer": "tok", "vocab_size": 10, "max_length": 8, "num_traces": 2, "sha256": "abc"}


@pytest.fixture()
def cache_dir(tmp_path):
    # trace 0: 5 tokens (2 prompt), trace 1: 4 tokens (1 prompt)
    base = torch.tensor([NAN, NAN, -1.0, -2.0, -0.5, NAN, -3.0, -0.1, -1.0])
    bott = torch.tensor([NAN, NAN, -0.5, -2.5, -0.5, NAN, -2.0, -0.4, -1.1])
    # Δc:                        +0.5  -0.5  0.0        +1.0  -0.3  -0.1
    cache = ScoreCache(base, bott, torch.tensor([0, 5, 9]), {"data": FINGERPRINT})
    cache.save(tmp_path / "scores")
    return tmp_path / "scores"


def context() -> sel.SelectionContext:
    # one packed row: trace 0 (positions 0..4) then trace 1 (0..3), then one pad token
    trace_index = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, -1]])
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0]])
    response = torch.tensor([[0, 0, 1, 1, 1, 0, 1, 1, 1, 0]], dtype=torch.bool)
    return sel.SelectionContext(response, trace_index, position_ids)


def mask_of(bits: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in bits]])


def test_full_sft_keeps_every_response_token():
    ctx = context()
    assert torch.equal(sel.FullSFT().loss_mask(ctx), ctx.response_mask)
    assert not sel.FullSFT().must_corrupt(ctx).any()


def test_t3s_excludes_anchors_and_inverse_keeps_only_them(cache_dir):
    t3s = sel.T3S(scores=str(cache_dir))
    t3s.setup(FINGERPRINT)
    ctx = context()
    # anchors: Δc > 0 -> trace0 pos2 (+0.5), trace1 pos1 (+1.0); Δc == 0 is not an anchor
    assert torch.equal(t3s.loss_mask(ctx), mask_of("0001100110"))
    inverse = sel.InverseT3S(scores=str(cache_dir))
    inverse.setup(FINGERPRINT)
    assert torch.equal(inverse.loss_mask(ctx), mask_of("0010001000"))
    # diffusion side: Δc < -0.2 -> trace0 pos3 (-0.5), trace1 pos2 (-0.3); -0.1 is not below
    assert torch.equal(t3s.must_corrupt(ctx), mask_of("0001000100"))
    assert torch.equal(inverse.must_corrupt(ctx), mask_of("0010001000"))
    # and keeps the other side visible: T3S the anchors, −T3S the yet-to-learn tokens
    assert torch.equal(t3s.keep_visible(ctx), mask_of("0010001000"))
    assert torch.equal(inverse.keep_visible(ctx), mask_of("0001000100"))
    assert not sel.FullSFT().keep_visible(ctx).any()


def test_t3s_threshold_moves_the_partition(cache_dir):
    t3s = sel.T3S(scores=str(cache_dir), threshold=0.7, yet_to_learn_threshold=0.25)
    t3s.setup(FINGERPRINT)
    ctx = context()
    assert torch.equal(t3s.loss_mask(ctx), mask_of("0011100110"))
    assert torch.equal(t3s.must_corrupt(ctx), mask_of("0001000100"))


def test_confidence_mask_uses_base_logprob_quantile(cache_dir):
    high = sel.ConfidenceMask(scores=str(cache_dir), side="high", fraction=1 / 3)
    high.setup(FINGERPRINT)
    # base over response tokens: -1, -2, -0.5, -3, -0.1, -1 ; the top third (-0.1, -0.5) is excluded
    assert torch.equal(high.loss_mask(context()), mask_of("0011001010"))
    low = sel.ConfidenceMask(scores=str(cache_dir), side="low", fraction=1 / 3)
    low.setup(FINGERPRINT)
    assert torch.equal(low.loss_mask(context()), mask_of("0010100110"))


def test_random_mask_matches_budget_and_is_deterministic(cache_dir):
    t3s = sel.T3S(scores=str(cache_dir))
    rnd = sel.RandomMask(match=t3s, seed=3)
    rnd.setup(FINGERPRINT)
    ctx = context()
    m = rnd.loss_mask(ctx)
    assert int(m.sum()) == int(t3s.loss_mask(ctx).sum()) == 4
    assert not (m & ~ctx.response_mask).any()
    assert torch.equal(m, rnd.loss_mask(context()))
    assert int(rnd.must_corrupt(ctx).sum()) == int(t3s.must_corrupt(ctx).sum()) == 2
    assert int(rnd.keep_visible(ctx).sum()) == int(t3s.keep_visible(ctx).sum()) == 2
    assert not (rnd.keep_visible(ctx) & rnd.must_corrupt(ctx)).any()
    other_seeds = {tuple(sel.RandomMask(match=t3s, seed=s).loss_mask(ctx).flatten().tolist()) for s in range(8)}
    assert len(other_seeds) > 1
    assert int(sel.RandomMask(fraction=0.5).loss_mask(ctx).sum()) == 3


def test_online_strategies_pick_top_fraction():
    ctx = context()
    ctx.entropy = torch.tensor([[NAN, NAN, 0.1, 2.0, 0.3, NAN, 5.0, 0.2, 0.05, NAN]])
    ent = sel.StudentEntropy(fraction=0.5)
    assert ent.needs_forward_signals and ent.budget(ctx) == 3
    assert torch.equal(ent.loss_mask(ctx), mask_of("0001101000"))
    ctx.student_logprob = torch.tensor([[NAN, NAN, -1.0, -1.0, -1.0, NAN, -1.0, -1.0, -1.0, NAN]])
    ctx.reference_logprob = torch.tensor([[NAN, NAN, -0.1, -3.0, -0.5, NAN, -2.0, -0.9, -5.0, NAN]])
    # excess loss = CE_student - CE_ref = ref_lp - student_lp: 0.9, -2, 0.5, -1, 0.1, -4
    assert torch.equal(sel.ExcessLoss(fraction=1 / 3).loss_mask(ctx), mask_of("0010100000"))


def test_missing_or_mismatched_cache_is_refused(cache_dir, tmp_path):
    with pytest.raises(sel.SelectionError, match="selection.init_args.scores"):
        sel.T3S().setup(FINGERPRINT)
    with pytest.raises(ScoreCacheError, match="no score cache"):
        sel.T3S(scores=str(tmp_path / "nowhere")).setup(FINGERPRINT)
    with pytest.raises(ScoreCacheError, match="max_length"):
        sel.T3S(scores=str(cache_dir)).setup({**FINGERPRINT, "max_length": 16})
    with pytest.raises(sel.SelectionError, match="exactly one"):
        sel.RandomMask()
    assert math.isnan(float(ScoreCache.load(cache_dir).lookup("delta", torch.tensor([-1]), torch.tensor([0]))[0]))
