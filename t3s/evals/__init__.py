"""Evaluation: benchmark tasks (``tasks/``), answer grading (``grading/``), generation backends (``backends/``),
the settings they share (:class:`EvalSuite`), metrics, the training callback and offline evaluation.

The names below are imported on first use, so ``t3s grade`` (graders, tasks) does not load Lightning
through the callback and the generation backends.
"""

from __future__ import annotations

from t3s.lazy import lazy_exports

_EXPORTS = {
    "BottleneckDetector": "t3s.evals.bottleneck",
    "BenchmarkCallback": "t3s.evals.callbacks",
    "CurveSettings": "t3s.evals.callback_settings",
    "EvalSchedule": "t3s.evals.callback_settings",
    "EvalSuite": "t3s.evals.suite",
    "BACKENDS": "t3s.evals.backends",
    "get_backend": "t3s.evals.backends",
    "Backend": "t3s.evals.backends.base",
    "Generation": "t3s.evals.backends.base",
    "Generator": "t3s.evals.backends.base",
    "default_stop_token_ids": "t3s.evals.backends.base",
    "stopped_generation": "t3s.evals.backends.base",
    "HFGenerator": "t3s.evals.backends.hf",
    "SamplingParams": "t3s.evals.backends.sampling",
    "to_vllm_sampling_kwargs": "t3s.evals.backends.vllm",
    "grade_file": "t3s.evals.grade_cli",
    "GRADERS": "t3s.evals.grading.graders",
    "grade": "t3s.evals.grading.graders",
    "grade_aime": "t3s.evals.grading.graders",
    "grade_exact": "t3s.evals.grading.graders",
    "grade_math": "t3s.evals.grading.graders",
    "grade_mc": "t3s.evals.grading.graders",
    "validate_gold": "t3s.evals.grading.graders",
    "MathVerifier": "t3s.evals.grading.mathverify",
    "get_math_verifier": "t3s.evals.grading.mathverify",
    "UngradableGold": "t3s.evals.grading.verdict",
    "Verdict": "t3s.evals.grading.verdict",
    "BenchmarkMetrics": "t3s.evals.metrics",
    "avg_at_k": "t3s.evals.metrics",
    "maj_at_k": "t3s.evals.metrics",
    "majority_vote": "t3s.evals.metrics",
    "pass_at_k": "t3s.evals.metrics",
    "EvalResult": "t3s.evals.runner",
    "evaluate": "t3s.evals.runner",
    "exclude_ungradable": "t3s.evals.runner",
    "DEFAULT_INSTRUCTION": "t3s.evals.tasks",
    "ChoiceOrder": "t3s.evals.tasks",
    "EvalItem": "t3s.evals.tasks",
    "EvalTask": "t3s.evals.tasks",
    "TaskError": "t3s.evals.tasks",
    "TaskFields": "t3s.evals.tasks",
    "TaskSpec": "t3s.evals.tasks",
    "load_task": "t3s.evals.tasks",
    "load_task_spec": "t3s.evals.tasks",
    "prompt_opens_think": "t3s.evals.tasks",
    "evaluate_checkpoints": "t3s.evals.offline",
    "plan_evaluation": "t3s.evals.offline",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
