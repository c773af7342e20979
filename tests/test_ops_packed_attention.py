"""Document masks from restarting position_ids: packed rows must score exactly like unpacked rows."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model_config
from transformers import AutoConfig, AutoModelForCausalLM

from t3s.ops.causal_lm import hidden_states, logprobs_at
from t3s.ops.packed_attention import (
    dense_document_mask,
    document_ids,
    flex_block_mask,
    packed_attention_kwargs,
    resolve_attn_implementation,
)

LENGTHS = (5, 9, 3)  # three traces packed into one row, then a padding run of 4
PAD = 4


def _packed_row():
    g = torch.Generator().manual_seed(0)
    traces = [torch.randint(1, 50, (n,), generator=g) for n in LENGTHS]
    ids = torch.cat([*traces, torch.zeros(PAD, dtype=torch.long)])[None]
    pos = torch.cat([torch.arange(n) for n in (*LENGTHS, PAD)])[None]
    return traces, ids, pos


def test_document_ids_restart_with_positions():
    _, _, pos = _packed_row()
    assert document_ids(pos)[0].tolist() == [0] * 5 + [1] * 9 + [2] * 3 + [3] * 4
    two_rows = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    assert document_ids(two_rows).tolist() == [[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]
    mask = dense_document_mask(two_rows)
    assert mask.shape == (2, 1, 5, 5)
    assert mask[0, 0, 4].tolist() == [False, False, False, True, True]  # sees only its own document


def _model(attn="sdpa"):
    config = AutoConfig.for_model(**{**tiny_model_config(50), "max_position_embeddings": 64})
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).double().eval()


@torch.no_grad()
def test_explicit_document_mask_scores_packed_row_like_separate_rows():
    traces, ids, pos = _packed_row()
    model = _model()
    decoder = model.get_decoder()
    packed = decoder(input_ids=ids, position_ids=pos, attention_mask=dense_document_mask(pos),
                     use_cache=False).last_hidden_state
    packed_lp = logprobs_at(model, packed, ids, (pos > 0) & (document_ids(pos) < len(LENGTHS)))
    separate = []
    for trace in traces:
        row = trace[None]
        h = hidden_states(model, row, torch.arange(len(trace))[None])
        keep = torch.ones_like(row, dtype=torch.bool)
        keep[:, 0] = False
        separate.append(logprobs_at(model, h, row, keep))
    assert torch.allclose(packed_lp, torch.cat(separate), atol=1e-10)
    # and it is what transformers builds from the restarts by itself (no mask passed)
    assert torch.allclose(hidden_states(model, ids, pos), packed, atol=1e-10)
    # a plain causal mask over the row (cross-sample attention) gives different numbers
    leaky = decoder(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None], use_cache=False).last_hidden_state
    assert not torch.allclose(leaky[:, 5:14], packed[:, 5:14], atol=1e-3)


def test_flex_block_mask_equals_sdpa_with_dense_mask():
    from torch.nn.attention.flex_attention import flex_attention

    pos = torch.cat([torch.arange(n) for n in (70, 100, 30, 56)]).reshape(1, -1).repeat(2, 1)
    pos[1] = torch.cat([torch.arange(n) for n in (128, 128)])
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 256, 16, generator=g) for _ in range(3))
    block_mask = flex_block_mask(pos, block_size=128)
    with warnings.catch_warnings():  # eager (uncompiled) flex_attention is the reference path on CPU
        warnings.simplefilter("ignore", UserWarning)
        got = flex_attention(q, k, v, block_mask=block_mask)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_document_mask(pos))
    assert torch.allclose(got, want, atol=1e-5)
    # row 1 is two 128-token documents aligned with the blocks: the cross-document blocks are skipped
    dense_blocks = block_mask.to_dense()  # [B, H, q_blocks, kv_blocks]
    assert dense_blocks[1, 0].tolist() == [[1, 0], [0, 1]]


def test_attention_kwargs_and_auto_resolution():
    _, _, pos = _packed_row()
    assert packed_attention_kwargs(_model("sdpa"), pos) == {}
    model = _model("sdpa")
    model.config._attn_implementation = "flex_attention"
    mask = packed_attention_kwargs(model, pos)["attention_mask"]
    assert tuple(mask.shape) == (1, 1, pos.shape[1], pos.shape[1])
    assert resolve_attn_implementation("auto", "cpu") == "sdpa"
    assert resolve_attn_implementation("eager", "cuda") == "eager"
    assert resolve_attn_implementation(None) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attn", ["flex_attention", "flash_attention_2"])
def test_packed_rows_on_cuda_match_separate_rows(attn):
    if attn == "flash_attention_2":
        pytest.importorskip("flash_attn")
    traces, ids, pos = _packed_row()
    model = _model(attn).to("cuda", torch.bfloat16)
    ids, pos = ids.cuda(), pos.cuda()
    with torch.no_grad():
        packed = hidden_states(model, ids, pos)
        start = 0
        for trace in traces:
            alone = hidden_states(model, trace[None].cuda(), torch.arange(len(trace), device="cuda")[None])
            assert torch.allclose(packed[:, start : start + len(trace)].float(), alone.float(), atol=3e-2)
            start += len(trace)
