"""Evaluation: benchmark tasks, answer graders, generation backends and metrics.

The names below are imported on first use, so ``t3s grade`` (graders, tasks) does not load torch and
Lightning through the callback and the generation backends.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BottleneckDetector": "t3s.evals.bottleneck",
    "BenchmarkCallback": "t3s.evals.callbacks",
    "Generation": "t3s.evals.generation",
    "Generator": "t3s.evals.generation",
    "HFGenerator": "t3s.evals.generation",
    "SamplingParams": "t3s.evals.generation",
    "VLLMGenerator": "t3s.evals.generation",
    "default_stop_token_ids": "t3s.evals.generation",
    "to_vllm_sampling_kwargs": "t3s.evals.generation",
    "grade_file": "t3s.evals.grade_cli",
    "GRADERS": "t3s.evals.graders",
    "MathVerifier": "t3s.evals.graders",
    "UngradableGold": "t3s.evals.graders",
    "Verdict": "t3s.evals.graders",
    "get_math_verifier": "t3s.evals.graders",
    "grade": "t3s.evals.graders",
    "grade_aime": "t3s.evals.graders",
    "grade_exact": "t3s.evals.graders",
    "grade_math": "t3s.evals.graders",
    "grade_mc": "t3s.evals.graders",
    "last_boxed": "t3s.evals.graders",
    "split_reasoning": "t3s.evals.graders",
    "validate_gold": "t3s.evals.graders",
    "BenchmarkMetrics": "t3s.evals.metrics",
    "EvalResult": "t3s.evals.runner",
    "DEFAULT_INSTRUCTION": "t3s.evals.tasks",
    "ChoiceOrder": "t3s.evals.tasks",
    "EvalItem": "t3s.evals.tasks",
    "EvalTask": "t3s.evals.tasks",
    "FieldMap": "t3s.evals.tasks",
    "TaskSpec": "t3s.evals.tasks",
    "load_task": "t3s.evals.tasks",
    "load_task_spec": "t3s.evals.tasks",
    "prompt_opens_think": "t3s.evals.tasks",
    "stable_seed": "t3s.evals.tasks",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 't3s.evals' has no attribute {name!r}")


__all__ = [
    "BenchmarkCallback",
    "BottleneckDetector",
    "DEFAULT_INSTRUCTION",
    "GRADERS",
    "BenchmarkMetrics",
    "ChoiceOrder",
    "EvalItem",
    "EvalResult",
    "EvalTask",
    "FieldMap",
    "Generation",
    "Generator",
    "HFGenerator",
    "MathVerifier",
    "SamplingParams",
    "TaskSpec",
    "UngradableGold",
    "VLLMGenerator",
    "Verdict",
    "avg_at_k",
    "default_stop_token_ids",
    "evaluate",
    "exclude_ungradable",
    "get_math_verifier",
    "grade",
    "grade_aime",
    "grade_exact",
    "grade_file",
    "grade_math",
    "grade_mc",
    "last_boxed",
    "load_task",
    "load_task_spec",
    "maj_at_k",
    "majority_vote",
    "pass_at_k",
    "prompt_opens_think",
    "split_reasoning",
    "stable_seed",
    "to_vllm_sampling_kwargs",
    "validate_gold",
]
