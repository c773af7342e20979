"""avg@k, unbiased pass@k, maj@k and the torchmetrics aggregator."""

from __future__ import annotations

from math import comb

import pytest

from t3s.evals.metrics import BenchmarkMetrics, avg_at_k, maj_at_k, majority_vote, pass_at_k


def test_pass_at_k_matches_closed_form():
    for k in range(1, 6):
        expected = 1 - comb(3, k) / comb(5, k)  # n=5, c=2
        assert pass_at_k(5, 2, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 4) == 1.0  # fewer than k wrong samples: always passes
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    # large n stays finite and exact enough (binomials would be astronomically large)
    assert pass_at_k(1000, 10, 100) == pytest.approx(1 - comb(990, 100) / comb(1000, 100), rel=1e-9)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 6)


def test_avg_and_majority():
    assert avg_at_k([True, False, True, True]) == 0.75
    assert majority_vote(["3", None, "5", "5", "3"]) == 0  # tie 2-2: first seen ("3") wins
    assert majority_vote([None, None]) is None
    assert maj_at_k(["3", "5", "5"], [True, False, False]) == 0.0
    assert maj_at_k(["5", "3", "3"], [False, True, True]) == 1.0
    assert maj_at_k(["5", "3", "3"], [False, True, True], k=1) == 0.0
    assert maj_at_k([None, "3", None], [False, True, False]) == 1.0  # abstentions do not vote
    assert maj_at_k([None, None], [False, False]) == 0.0


def test_benchmark_metrics_over_two_updates():
    m = BenchmarkMetrics(n=4, pass_ks=(1, 2, 4))
    m.update(
        [[True, False, False, False], [True, True, True, True]],
        num_tokens=[[10, 20, 30, 40], [5, 5, 5, 5]],
        truncated=[[False, True, False, False], [False] * 4],
        extraction_failed=[[False, False, True, False], [False] * 4],
        answers=[["1", "2", None, "2"], ["7", "7", "7", "7"]],
    )
    m.update(
        [[False, False, False, False]],
        num_tokens=[[100, 100, 100, 100]],
        truncated=[[True] * 4],
        extraction_failed=[[False] * 4],
        answers=[[None, None, None, None]],
    )
    out = m.compute()
    assert out["avg@4"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert out["pass@1"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert out["pass@2"] == pytest.approx((1 - comb(3, 2) / comb(4, 2) + 1.0) / 3)
    assert out["pass@4"] == pytest.approx(2 / 3)
    assert out["maj@4"] == pytest.approx(1 / 3)  # item 1 votes "2" (wrong), item 2 votes "7" (right)
    assert out["mean_tokens"] == pytest.approx((100 + 20 + 400) / 12)
    assert out["truncation_rate"] == pytest.approx(5 / 12)
    assert out["extraction_failure_rate"] == pytest.approx(1 / 12)
    assert out["num_items"] == 3 and out["num_samples"] == 12
    assert all(isinstance(v, float) for v in out.values())
    # sum states: merging two metrics equals one metric over everything (what DDP's sum reduction does)
    a, b = BenchmarkMetrics(n=2), BenchmarkMetrics(n=2)
    a.update([[True, False]])
    b.update([[True, True], [False, False]])
    a.merge_state(b)
    assert a.compute()["avg@2"] == pytest.approx(0.5)
    assert a.compute()["pass@2"] == pytest.approx(2 / 3)


def test_benchmark_metrics_checks_sample_count():
    m = BenchmarkMetrics(n=2)
    with pytest.raises(ValueError):
        m.update([[True]])
    with pytest.raises(ValueError):
        BenchmarkMetrics(n=2, pass_ks=(3,))
