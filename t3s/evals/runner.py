"""Run one task end to end: render prompts, generate, grade, aggregate."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from t3s.evals.backends.base import Generation, Generator
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.grading.graders import validate_gold
from t3s.evals.grading.verdict import UngradableGold
from t3s.evals.metrics import BenchmarkMetrics
from t3s.evals.tasks.eval_task import EvalTask, prompt_opens_think
from t3s.evals.tasks.spec import EvalItem

__all__ = ["EvalResult", "evaluate", "exclude_ungradable", "generate_safely"]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`: aggregated ``metrics``, one ``record`` per (item, sample) --
    the JSONL rows :func:`t3s.evals.grade_cli.grade_file` re-grades -- and the ids of ``excluded``
    items (gold answer the grader cannot parse)."""

    task: str
    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def exclude_ungradable(task: EvalTask, items: Sequence[EvalItem]) -> tuple[list[EvalItem], list[str]]:
    """Split ``items`` into gradable ones and the ids of those whose gold the grader cannot parse
    (reported once, as a single warning)."""
    keep: list[EvalItem] = []
    bad: list[str] = []
    for item in items:
        if item.choices:  # multiple-choice golds are letters resolved at load time
            keep.append(item)
            continue
        try:
            validate_gold(task.spec.grader, item.gold, **task.spec.grader_kwargs)
        except UngradableGold:
            bad.append(item.id)
        else:
            keep.append(item)
    if bad:
        warnings.warn(
            f"task {task.name!r}: excluded {len(bad)} item(s) whose gold answer the "
            f"{task.spec.grader!r} grader cannot parse: {bad[:20]}{' ...' if len(bad) > 20 else ''}",
            stacklevel=2,
        )
    return keep, bad


def generate_safely(generator: Generator, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
    """``generator.generate``; if the batch raises, retry prompt by prompt and give failing prompts empty
    generations (graded wrong and logged), so one bad item never stops an evaluation — or, under
    data parallelism, leaves the other ranks waiting in the metric sync."""
    try:
        return generator.generate(prompts, params)
    except Exception as err:  # noqa: BLE001 - any backend error
        log.error("generation of a batch of %d prompts failed (%s); retrying one by one", len(prompts), err)
    out: list[list[Generation]] = []
    failed = 0
    for prompt in prompts:
        try:
            out.extend(generator.generate([prompt], params))
        except Exception as err:  # noqa: BLE001
            failed += 1
            log.error("generation failed for one prompt: %s", err)
            out.append([Generation(text="", token_ids=[], num_tokens=0, hit_limit=False)] * params.n)
    if failed:
        log.error("%d of %d prompts failed to generate; they are graded wrong", failed, len(prompts))
    return out


def evaluate(
    task: EvalTask,
    generator: Generator,
    tokenizer: Any,
    sampling: SamplingParams | None = None,
    *,
    items: Sequence[EvalItem] | None = None,
    metric: BenchmarkMetrics | None = None,
    pass_ks: Sequence[int] | None = None,
    device: Any = None,
) -> EvalResult:
    """Generate ``sampling.n`` responses per item (default: the task's sampling), grade and aggregate.

    ``items`` restricts the run (e.g. this rank's shard); ``metric`` is updated instead of a fresh
    :class:`BenchmarkMetrics` (its ``compute()`` then syncs across ranks). Multiple-choice items get
    one prompt per sample (options are shuffled per sample); majority votes compare original options.
    """
    params = sampling or task.spec.sampling
    n = params.n
    items, excluded = exclude_ungradable(task, list(items if items is not None else task.items()))
    per_sample_prompts = task.multiple_choice and task.spec.shuffle_choices
    prompts: list[list[int]] = []
    golds: list[list[str]] = []
    think: list[bool] = []
    for item in items:
        item_golds = []
        for s in range(n if per_sample_prompts else 1):
            text, gold = task.render_prompt_text(tokenizer, item, s)
            if s == 0:
                think.append(prompt_opens_think(text))
            prompts.append(task.encode_prompt(tokenizer, text))
            item_golds.append(gold)
        golds.append(item_golds * (1 if per_sample_prompts else n))
    if per_sample_prompts:
        flat = generate_safely(generator, prompts, SamplingParams(**{**params.to_dict(), "n": 1}))
        gens = [[g[0] for g in flat[i * n : (i + 1) * n]] for i in range(len(items))]
    else:
        gens = generate_safely(generator, prompts, params)
    metric = metric if metric is not None else BenchmarkMetrics(n=n, pass_ks=pass_ks)
    if device is not None:
        metric = metric.to(device)  # NCCL gathers only device tensors
    records: list[dict[str, Any]] = []
    batch: dict[str, list[list[Any]]] = {
        k: [] for k in ("correct", "num_tokens", "truncated", "extraction_failed", "answers", "timed_out")
    }
    grader_errors = 0
    for i, item in enumerate(items):
        row: dict[str, list[Any]] = {k: [] for k in batch}
        for s, gen in enumerate(gens[i]):
            gold = golds[i][s]
            verdict = task.grade(gen.text, gold, hit_token_limit=gen.hit_limit, think_in_prompt=think[i])
            answer: Hashable | None = verdict.extracted
            record = {
                "task": task.name,
                "id": item.id,
                "sample": s,
                "gold": gold,
                "response": gen.text,
                "num_tokens": gen.num_tokens,
                "hit_limit": gen.hit_limit,
                "extracted": verdict.extracted,
                "correct": verdict.correct,
                "truncated": verdict.truncated,
                "extraction_failed": verdict.extraction_failed,
                "timed_out": verdict.timed_out,
                "grader_error": verdict.grader_error,
            }
            order = task.choice_order(item, s)
            if order is not None:
                answer = order.original_index(verdict.extracted)
                record["choice_seed"] = order.seed
                record["choice_order"] = list(order.order)
            records.append(record)
            grader_errors += verdict.grader_error
            for key, value in (
                ("correct", verdict.correct),
                ("num_tokens", gen.num_tokens),
                ("truncated", verdict.truncated),
                ("extraction_failed", verdict.extraction_failed),
                ("answers", answer),
                ("timed_out", verdict.timed_out),
            ):
                row[key].append(value)
        for key in batch:
            batch[key].append(row[key])
    if grader_errors:
        log.error("task %r: the grader failed on %d response(s); they are graded wrong", task.name, grader_errors)
    if items:
        metric.update(**batch)
    return EvalResult(task=task.name, metrics=metric.compute(), records=records, excluded=excluded)
