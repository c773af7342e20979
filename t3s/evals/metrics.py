"""Benchmark metrics: avg@k, unbiased pass@k, maj@k, response length, truncation and extraction failures.

The pure functions work on one item's samples; :class:`BenchmarkMetrics` aggregates items through
torchmetrics sum states, so the result is correct when items are spread over several ranks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torchmetrics import Metric

__all__ = ["BenchmarkMetrics", "avg_at_k", "maj_at_k", "majority_vote", "pass_at_k"]


def avg_at_k(correct: Sequence[bool]) -> float:
    """Mean correctness over the k samples of one item (avg@k); 0.0 for no samples."""
    if len(correct) == 0:
        return 0.0
    return float(sum(bool(c) for c in correct)) / len(correct)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator of Chen et al. (2021): ``1 - C(n-c, k) / C(n, k)``.

    ``n`` samples of which ``c`` are correct. Computed as ``1 - prod_{i=n-c+1..n} (1 - k/i)``, which
    never forms the (huge) binomial coefficients.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def majority_vote(answers: Sequence[Hashable | None]) -> int | None:
    """Index of the first sample holding the most frequent non-None answer (ties: first seen wins)."""
    counts: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        counts[ans] = counts.get(ans, 0) + 1
        first.setdefault(ans, i)
    if not counts:
        return None
    best = max(counts, key=lambda a: (counts[a], -first[a]))
    return first[best]


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[bool], k: int | None = None) -> float:
    """maj@k for one item: 1.0 if the majority answer among the first ``k`` samples is correct.

    ``answers`` are the extracted (canonical) answers, None for samples without one (they do not
    vote); ``correct`` the per-sample correctness. Ties go to the answer seen first.
    """
    if len(answers) != len(correct):
        raise ValueError("answers and correct must have the same length")
    k = len(answers) if k is None else k
    winner = majority_vote(answers[:k])
    return 0.0 if winner is None else float(bool(correct[winner]))


class BenchmarkMetrics(Metric):
    """Aggregates per-item sample results into benchmark numbers (all states are sums over items).

    Each :meth:`update` call takes a batch of items; for every item a list of its ``n`` samples'
    correctness, and optionally token counts, truncation / extraction-failure flags and extracted
    answers (for maj@n). :meth:`compute` returns a dict of floats::

        avg@{n}, pass@{k} for k in pass_ks (k <= n) and maj@{n} (if answers were given) when n > 1 (with one
        sample both equal avg@1),
        mean_tokens, truncation_rate, extraction_failure_rate, timeout_rate, num_items, num_samples
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, n: int = 1, pass_ks: Sequence[int] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = int(n)
        ks = sorted({int(k) for k in (pass_ks if pass_ks is not None else (1, n))})
        if any(k < 1 or k > n for k in ks):
            raise ValueError(f"pass_ks must lie in 1..n={n}, got {list(ks)}")
        self.pass_ks = tuple(ks)
        f64 = {"dtype": torch.float64}
        self.add_state("num_items", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_samples", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("sum_avg", default=torch.tensor(0.0, **f64), dist_reduce_fx="sum")
        self.add_state("sum_pass", default=torch.zeros(len(self.pass_ks), **f64), dist_reduce_fx="sum")
        self.add_state("sum_maj", default=torch.tensor(0.0, **f64), dist_reduce_fx="sum")
        self.add_state("num_maj_items", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("sum_tokens", default=torch.tensor(0.0, **f64), dist_reduce_fx="sum")
        self.add_state("num_token_samples", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("num_truncated", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state(
            "num_extraction_failed", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state("num_timed_out", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        correct: Sequence[Sequence[bool]],
        num_tokens: Sequence[Sequence[int]] | None = None,
        truncated: Sequence[Sequence[bool]] | None = None,
        extraction_failed: Sequence[Sequence[bool]] | None = None,
        answers: Sequence[Sequence[Hashable | None]] | None = None,
        timed_out: Sequence[Sequence[bool]] | None = None,
    ) -> None:
        """Add a batch of items; every argument is a per-item list of per-sample values."""
        for name, seq in (
            ("num_tokens", num_tokens),
            ("truncated", truncated),
            ("extraction_failed", extraction_failed),
            ("answers", answers),
            ("timed_out", timed_out),
        ):
            if seq is not None and len(seq) != len(correct):
                raise ValueError(f"{name} has {len(seq)} items, correct has {len(correct)}")
        pass_sums = [0.0] * len(self.pass_ks)
        avg = maj = tokens = 0.0
        n_tok = n_trunc = n_fail = n_timeout = n_samples = 0
        for i, item in enumerate(correct):
            if len(item) != self.n:
                raise ValueError(f"item {i} has {len(item)} samples, this metric expects n={self.n}")
            n_samples += len(item)
            c = sum(bool(x) for x in item)
            avg += c / self.n
            for j, k in enumerate(self.pass_ks):
                pass_sums[j] += pass_at_k(self.n, c, k)
            if answers is not None:
                maj += maj_at_k(answers[i], item)
            if num_tokens is not None:
                tokens += float(sum(num_tokens[i]))
                n_tok += len(num_tokens[i])
            if truncated is not None:
                n_trunc += sum(bool(x) for x in truncated[i])
            if extraction_failed is not None:
                n_fail += sum(bool(x) for x in extraction_failed[i])
            if timed_out is not None:
                n_timeout += sum(bool(x) for x in timed_out[i])
        self.num_items += len(correct)
        self.num_samples += n_samples
        self.sum_avg += avg
        self.sum_pass += torch.tensor(pass_sums, dtype=torch.float64, device=self.sum_pass.device)
        if answers is not None:
            self.sum_maj += maj
            self.num_maj_items += len(correct)
        self.sum_tokens += tokens
        self.num_token_samples += n_tok
        self.num_truncated += n_trunc
        self.num_extraction_failed += n_fail
        self.num_timed_out += n_timeout

    def compute(self) -> dict[str, float]:
        """The aggregated metrics as a dict of Python floats (rates over samples, scores over items)."""
        items = int(self.num_items)
        samples = int(self.num_samples)

        def ratio(num: torch.Tensor, den: int) -> float:
            return float(num) / den if den else 0.0

        out: dict[str, float] = {f"avg@{self.n}": ratio(self.sum_avg, items)}
        for j, k in enumerate(self.pass_ks):
            if self.n > 1:  # with one sample, pass@1 is avg@1 again
                out[f"pass@{k}"] = ratio(self.sum_pass[j], items)
        if int(self.num_maj_items) and self.n > 1:  # and so is the majority of one answer
            out[f"maj@{self.n}"] = ratio(self.sum_maj, int(self.num_maj_items))
        out["mean_tokens"] = ratio(self.sum_tokens, int(self.num_token_samples))
        out["truncation_rate"] = ratio(self.num_truncated, samples)
        out["extraction_failure_rate"] = ratio(self.num_extraction_failed, samples)
        out["timeout_rate"] = ratio(self.num_timed_out, samples)
        out["num_items"] = float(items)
        out["num_samples"] = float(samples)
        return out
