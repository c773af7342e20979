"""Packing: first-fit-decreasing, the micro-batch layout, and packed log-probs equal unpacked ones."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen3

from t3s.data import TokenizedTrace, TraceRecord, collate, first_fit_decreasing
from t3s.data.packing import next_fit

PAD = 0


def make_traces(lengths: list[int], vocab: int = 50, seed: int = 0) -> list[TokenizedTrace]:
    gen = torch.Generator().manual_seed(seed)
    traces = []
    for index, n in enumerate(lengths):
        ids = torch.randint(1, vocab, (n,), generator=gen).tolist()
        prompt = n // 3
        labels = [-100] * prompt + ids[prompt:]
        rec = TraceRecord(id=str(index), messages=[], reasoning=None, answer_text="", source=f"mem:{index}")
        traces.append(TokenizedTrace(index=index, record=rec, input_ids=ids, labels=labels))
    return traces


def test_first_fit_decreasing() -> None:
    lengths = [7, 2, 5, 4, 3, 6, 1]
    bins = first_fit_decreasing(lengths, 10)
    assert bins == [[0, 4], [5, 3], [2, 1, 6]]  # longest first, each into the first row with room
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 3  # 28 tokens into rows of 10: optimal here
    assert next_fit(lengths, 10) == [[0, 1], [2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="longer than the row capacity 10"):
        first_fit_decreasing([11, 3], 10)


def test_collate_layout() -> None:
    traces = make_traces([5, 3, 4, 6])
    batch = collate(traces, PAD, pack=True, max_length=10)
    assert set(batch) == {"input_ids", "labels", "position_ids", "trace_index", "attention_mask"}
    assert batch["input_ids"].shape == (2, 10) and all(v.dtype == torch.long for v in batch.values())
    # FFD: [6, 4] and [5, 3] + 2 padding
    assert batch["trace_index"].tolist() == [[3] * 6 + [2] * 4, [0] * 5 + [1] * 3 + [-1] * 2]
    assert batch["position_ids"].tolist() == [
        list(range(6)) + list(range(4)),
        list(range(5)) + list(range(3)) + [0, 1],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 10, [1] * 8 + [0] * 2]
    assert batch["input_ids"][1, 8:].tolist() == [PAD, PAD] and batch["labels"][1, 8:].tolist() == [
        -100,
        -100,
    ]
    for row in range(2):
        for t in range(10):
            i = int(batch["trace_index"][row, t])
            if i >= 0:  # token t of a trace sits at position_ids == t
                pos = int(batch["position_ids"][row, t])
                assert batch["input_ids"][row, t] == traces[i].input_ids[pos]
                assert batch["labels"][row, t] == traces[i].labels[pos]
    unpacked = collate(traces, PAD, pack=False)
    assert unpacked["input_ids"].shape == (4, 6)
    assert unpacked["trace_index"][:, 0].tolist() == [3, 0, 2, 1]
    assert unpacked["position_ids"][1].tolist() == [0, 1, 2, 3, 4, 0]
    assert collate(traces, PAD)["input_ids"].shape == (1, 18)


def tiny_model(attn: str) -> torch.nn.Module:
    return tiny_qwen3(50, attn_implementation=attn).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_equal_unpacked(attn: str) -> None:
    model = tiny_model(attn)
    traces = make_traces([9, 4, 12, 7, 3, 10], seed=1)
    batch = collate(traces, PAD, pack=True, max_length=20)
    assert batch["input_ids"].shape[0] > 1 and (batch["attention_mask"] == 0).any()  # several rows, padding
    with torch.no_grad():
        logits = model(batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        packed_lp = torch.log_softmax(logits.float(), -1)
        for trace in traces:
            ids = torch.tensor([trace.input_ids])
            alone = torch.log_softmax(model(ids, use_cache=False).logits.float(), -1)[0]
            expected = alone[:-1].gather(-1, ids[0, 1:, None])[:, 0]  # log p(token t | tokens < t), t >= 1
            row, cols = (batch["trace_index"] == trace.index).nonzero(as_tuple=True)
            assert batch["position_ids"][row, cols].tolist() == list(range(len(trace)))
            got = packed_lp[row[0], cols[:-1]].gather(-1, batch["input_ids"][row[0], cols[1:], None])[:, 0]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
