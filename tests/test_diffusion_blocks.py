"""Block-diffusion SFT (LLaDA 2.0 / dFactory ``block_diffusion_mode``) on a tiny real Qwen3 (no Trainer)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_trace_data
from diffusion_helpers import make_diffusion_student
from transformers import DynamicCache

from t3s.data import TeacherTraceDataModule
from t3s.students import DiffusionStudent
from t3s.students.diffusion import DiffusionStudentError, answer_layout, corrupt, view_loss_sum
from t3s.students.diffusion_blocks import additive, block_causal_mask, block_diffusion_mask

EOS, MASK = 2, 5


@pytest.fixture(scope="module")
def data(tiny_world) -> TeacherTraceDataModule:
    return tiny_trace_data(tiny_world, packing=False, limit=4, micro_batch_size=4)


def make_student(data, **kw) -> DiffusionStudent:
    """A tiny DiffusionStudent in eval mode."""
    return make_diffusion_student(data, **kw).eval()


def hand_built(positions: list[int], docs: list[int], block: int) -> torch.Tensor:
    """The training mask written out entry by entry: rows/columns 0..L-1 are x_t, L..2L-1 are x_0."""
    n = len(positions)
    out = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    for i in range(2 * n):
        for j in range(2 * n):
            qi, kj = i % n, j % n
            if docs[qi] != docs[kj]:
                continue
            bq, bk = positions[qi] // block, positions[kj] // block
            q_noisy, k_noisy = i < n, j < n
            if q_noisy and k_noisy:
                out[i, j] = bq == bk
            elif q_noisy:
                out[i, j] = bk < bq
            elif not k_noisy:
                out[i, j] = bk <= bq
    return out


def test_training_mask_equals_a_hand_built_one():
    positions = list(range(7))
    mask = block_diffusion_mask(torch.tensor([positions]), 3)
    assert torch.equal(mask[0], hand_built(positions, [0] * 7, 3))
    # x_t position 4 (block 1): its own block in x_t (3, 4, 5) and block 0 of x_0 (7, 8, 9)
    assert mask[0, 4].nonzero().flatten().tolist() == [3, 4, 5, 7, 8, 9]
    # x_0 position 4: blocks 0 and 1 of x_0, nothing of x_t
    assert mask[0, 7 + 4].nonzero().flatten().tolist() == [7, 8, 9, 10, 11, 12]
    # packed: two documents, positions restart, no attention across them
    packed_pos, docs = [0, 1, 2, 3, 0, 1, 2], [0, 0, 0, 0, 1, 1, 1]
    packed = block_diffusion_mask(torch.tensor([packed_pos]), 2, torch.tensor([docs]))
    assert torch.equal(packed[0], hand_built(packed_pos, docs, 2))
    assert not bool(packed[0, 4, :4].any()) and not bool(packed[0, 4, 7:11].any())


def test_decoding_mask_is_block_causal_and_hides_padding():
    pos = torch.tensor([[0, 0, 1, 2, 3, 4]])
    valid = torch.tensor([[0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    mask = block_causal_mask(pos, pos, 2, valid)[0]
    assert mask[0].tolist() == [True, False, False, False, False, False]  # a padding query sees itself only
    assert mask[1].tolist() == [False, True, True, False, False, False]  # block 0 = positions 0, 1
    assert mask[3].tolist() == [False, True, True, True, True, False]  # block 1 = positions 2, 3
    assert mask[5].tolist() == [False, True, True, True, True, True]
    assert additive(mask[None], torch.float32).shape == (1, 1, 6, 6)


def fixed_view(data, objective="llada2", **kw):
    mb = data.step_batch(0)["micro_batches"][0]
    layout = answer_layout(mb["input_ids"], mb["labels"], EOS)
    cols = torch.arange(layout.answer.shape[1])
    fixed = layout.answer & ((cols[None, :] % 3) != 1)
    p = torch.tensor([0.5, 0.25, 0.8, 0.1], dtype=torch.float64)
    (view,) = corrupt(layout, fixed, torch.zeros_like(fixed), p, mask_id=MASK, objective=objective, **kw)
    return view


def loss_of(student, view) -> float:
    with torch.no_grad():
        lp, _ = student.corrupted_logprobs(view)
    return float(view_loss_sum(lp, view)) / view.normaliser


@pytest.mark.parametrize("objective", ["llada", "llada2"])
def test_one_block_covering_the_row_is_full_attention(data, objective):
    view = fixed_view(data, objective)
    full = make_student(data, objective=objective)
    state = full.model.state_dict()
    one_block = make_student(data, objective=objective, block_size=view.noisy_ids.shape[1])
    one_block.model.load_state_dict(state)
    huge = make_student(data, objective=objective, block_size=10_000)
    huge.model.load_state_dict(state)
    reference = loss_of(full, view)
    assert loss_of(one_block, view) == pytest.approx(reference, rel=1e-5)
    assert loss_of(huge, view) == pytest.approx(reference, rel=1e-5)
    smaller = make_student(data, objective=objective, block_size=8)
    smaller.model.load_state_dict(state)
    assert abs(loss_of(smaller, view) - reference) > 1e-3  # blocks do change what x_t sees


def test_two_block_loss_equals_a_hand_computation(data):
    """Block 0 of x_t sees only itself; block 1 sees itself and the clean block 0 (x_0), nothing else.

    By hand: block 0 is a plain forward pass of x_t[:B]; block 1 is a forward pass of x_t[B:] after the
    clean x_0[:B] was run into a KV cache (bidirectional model: the new block sees the whole cache).
    """
    student = make_student(data, objective="llada2", block_size=4)
    ids = torch.tensor([[1, 9, 10, 11, 12, 13, 14, 15]])
    noisy = ids.clone()
    noisy[0, [2, 5, 6]] = MASK
    corrupted = noisy == MASK
    view = type(fixed_view(data))(noisy, ids, corrupted, corrupted.float(), float(corrupted.sum()), 6)
    decoder, head = student.model.get_decoder(), student.model.get_output_embeddings()
    with torch.no_grad():
        first = decoder(input_ids=noisy[:, :4], position_ids=torch.arange(4)[None]).last_hidden_state
        cache = DynamicCache(config=student.model.config)
        decoder(input_ids=ids[:, :4], position_ids=torch.arange(4)[None], past_key_values=cache, use_cache=True)
        second = decoder(input_ids=noisy[:, 4:], position_ids=torch.arange(4, 8)[None], past_key_values=cache,
                         use_cache=True).last_hidden_state
        logits = head(torch.cat([first, second], dim=1)).double()
    ce = -torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    expected = float(ce[corrupted].mean())
    assert loss_of(student, view) == pytest.approx(expected, rel=1e-5)
    # and the clean half never leaks into its own block: changing x_0 inside block 1 changes nothing
    changed = type(view)(noisy, ids.clone(), corrupted, view.weights, view.normaliser, 6)
    changed.targets[0, 7] = 40
    hidden, hidden2 = student.hidden_states(noisy, ids), student.hidden_states(noisy, changed.targets)
    assert torch.allclose(hidden, hidden2, atol=0)


def test_block_size_is_validated(data):
    with pytest.raises(DiffusionStudentError, match="block_size"):
        make_student(data, block_size=0)


def test_flex_attention_gets_a_block_mask_with_the_same_loss(data):
    ids = torch.arange(8, 8 + 48).view(2, 24) % 60 + 6
    corrupted = (torch.arange(24)[None, :] % 3 == 1).expand(2, -1)
    noisy = torch.where(corrupted, torch.full_like(ids, MASK), ids)
    view = type(fixed_view(data))(noisy, ids, corrupted, corrupted.float(), float(corrupted.sum()), 48)
    dense = make_student(data, block_size=8)
    flex = make_student(data, block_size=8, attn_implementation="flex_attention")
    flex.model.load_state_dict(dense.model.state_dict())
    assert flex.model.config._attn_implementation == "flex_attention"
    assert loss_of(flex, view) == pytest.approx(loss_of(dense, view), rel=1e-5)
