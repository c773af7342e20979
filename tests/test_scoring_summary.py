"""The Δc summary counts anchors and yet-to-learn tokens with the strategy's own thresholds."""

from __future__ import annotations

import pytest
import torch

from t3s.data import TokenizedTrace, TraceRecord
from t3s.scoring import ScoreCache, summarize
from t3s.selection import T3S


class _Digits:
    """A tokenizer whose token i reads as the digit string of i (summaries decode token ids)."""

    def decode(self, ids: list[int]) -> str:
        return "".join(str(i) for i in ids)


def test_summary_uses_the_strategy_thresholds() -> None:
    record = TraceRecord(id="t", messages=[{"role": "user", "content": "q"}], reasoning=None, answer_text="a")
    trace = TokenizedTrace(index=0, record=record, input_ids=[1, 2, 3, 4, 5, 6], labels=[-100, 2, 3, 4, 5, 6])
    base = torch.tensor([float("nan"), -1.0, -1.0, -1.0, -1.0, -1.0])
    bottleneck = torch.tensor([float("nan"), -0.5, -0.9, -1.1, -1.3, -2.0])  # Δc = .5 .1 -.1 -.3 -1
    cache = ScoreCache(base, bottleneck, torch.tensor([0, 6]), {})
    default = summarize(cache, [trace], _Digits())
    assert (default["anchor_fraction"] == pytest.approx(0.4)
            and default["delta_below_-0.2_fraction"] == pytest.approx(0.4))
    strict = summarize(cache, [trace], _Digits(), selection=T3S(threshold=0.3, yet_to_learn_threshold=0.5))
    assert strict["anchor_threshold"] == 0.3 and strict["anchor_fraction"] == pytest.approx(0.2)
    assert strict["delta_below_-0.5_fraction"] == pytest.approx(0.2)
