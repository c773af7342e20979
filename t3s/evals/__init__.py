"""Evaluation: benchmark tasks, answer graders, generation backends and metrics."""

from __future__ import annotations

from t3s.evals.bottleneck import BottleneckDetector
from t3s.evals.callbacks import BenchmarkCallback
from t3s.evals.generation import (
    Generation,
    Generator,
    HFGenerator,
    SamplingParams,
    VLLMGenerator,
    default_stop_token_ids,
    to_vllm_sampling_kwargs,
)
from t3s.evals.grade_cli import grade_file
from t3s.evals.graders import GRADERS, grade, grade_aime, grade_exact, grade_math, grade_mc, validate_gold
from t3s.evals.mathverify import MathVerifier, get_math_verifier
from t3s.evals.metrics import BenchmarkMetrics, avg_at_k, maj_at_k, majority_vote, pass_at_k
from t3s.evals.runner import EvalResult, evaluate, exclude_ungradable
from t3s.evals.tasks import (
    DEFAULT_INSTRUCTION,
    ChoiceOrder,
    EvalItem,
    EvalTask,
    TaskError,
    TaskFields,
    TaskSpec,
    load_task,
    load_task_spec,
    prompt_opens_think,
)
from t3s.evals.verdict import UngradableGold, Verdict

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
    "Generation",
    "Generator",
    "HFGenerator",
    "MathVerifier",
    "SamplingParams",
    "TaskError",
    "TaskFields",
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
    "load_task",
    "load_task_spec",
    "maj_at_k",
    "majority_vote",
    "pass_at_k",
    "prompt_opens_think",
    "to_vllm_sampling_kwargs",
    "validate_gold",
]
