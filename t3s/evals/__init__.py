"""Evaluation: benchmark tasks (``tasks/``), answer grading (``grading/``), generation backends (``backends/``),
the settings they share (:class:`EvalSuite`), metrics, the training callback and offline evaluation.

The names below are imported on first use, so ``t3s grade`` (graders, tasks) does not load Lightning
through the callback and the generation backends.
"""

from __future__ import annotations

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(
    __name__,
    {
        ".bottleneck": ("BottleneckDetector",),
        ".callbacks": ("BenchmarkCallback",),
        ".callback_settings": ("CurveSettings", "EvalSchedule"),
        ".suite": ("EvalSuite",),
        ".backends": ("BACKENDS", "get_backend"),
        ".backends.base": (
            "Backend", "Generation", "Generator", "default_stop_token_ids", "stopped_generation",
        ),
        ".backends.hf": ("HFGenerator",),
        ".backends.sampling": ("SamplingParams",),
        ".backends.vllm": ("to_vllm_sampling_kwargs",),
        ".grade_cli": ("grade_file",),
        ".grading.graders": (
            "GRADERS", "grade", "grade_aime", "grade_exact", "grade_math", "grade_mc", "validate_gold",
        ),
        ".grading.mathverify": ("MathVerifier", "get_math_verifier"),
        ".grading.verdict": ("UngradableGold", "Verdict"),
        ".metrics": ("BenchmarkMetrics", "avg_at_k", "maj_at_k", "majority_vote", "pass_at_k"),
        ".runner": ("EvalResult", "evaluate", "exclude_ungradable"),
        ".tasks": (
            "DEFAULT_INSTRUCTION", "ChoiceOrder", "EvalItem", "EvalTask", "TaskError", "TaskFields",
            "TaskSpec", "load_task", "load_task_spec", "prompt_opens_think",
        ),
        ".offline": ("evaluate_checkpoints", "plan_evaluation"),
    },
)
