"""``t3s evaluate``: checkpoints evaluated outside training (:mod:`t3s.evals.offline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The parameter that may be given bare (``t3s evaluate TARGET …``).
POSITIONAL = "targets"


def run(
    targets: list[str],
    tasks: list[str] | None = None,
    devices: int = 1,
    steps: list[int] | None = None,
    train_accuracy: bool | None = None,
    n: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    output: str | None = None,
    backend: str | None = None,
    python: str | None = None,
    vllm: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Evaluate checkpoints outside training: every hf/step_N of a run that has no result yet, or HF folders.

    Args:
        targets: phase run directories (holding ``hf/step_N`` and ``config.yaml``), HF model folders or
            LoRA/DoRA adapter folders (merged into their base, written to ``<folder>/merged``).
        tasks: benchmark tasks (names, YAML paths) instead of the run's own; required for a plain HF folder.
        devices: worker processes, one per device (a GPU each when there are GPUs), data-parallel over items.
        steps: evaluate only these steps.
        train_accuracy: override the run's training-accuracy setting.
        n: samples per prompt (overrides the tasks' sampling).
        temperature: sampling temperature (0: greedy).
        top_p: nucleus sampling.
        max_new_tokens: generation budget per sample.
        batch_size: prompts per generation batch.
        output: where outputs go (default: the run directory / HF folder itself); with several targets, each
            goes to ``output/<its folder name>``.
        backend: a name in t3s.evals.backends.BACKENDS: hf (the family's own sampler) or vllm (default: the run's
            BenchmarkCallback backend, else hf).
        python: interpreter of the vLLM environment (default: this one; never taken from the run's config.yaml);
            README, "Evaluating with vLLM".
        vllm: vllm.LLM options, e.g. --vllm.tensor_parallel_size 2 --vllm.gpu_memory_utilization 0.9
            (also max_model_len, dtype, enable_prefix_caching, …); on top of the run's callback `vllm:` mapping.
        trust_remote_code: run the checkpoints' own model code (never taken from the run's config.yaml).
    """
    from t3s.evals.offline import EvaluationError, evaluate_checkpoints, plan_evaluation
    from t3s.students.adapter_weights import as_model_folder  # an adapter folder: base + adapter, merged

    sampling = {k: v for k, v in (("n", n), ("temperature", temperature), ("top_p", top_p),
                                  ("max_new_tokens", max_new_tokens)) if v is not None}
    outputs: list[str | Path | None] = [output] * len(targets)
    if output and len(targets) > 1:  # one ledger per target: a shared one would mark the second as done
        names = [Path(t).resolve().name for t in targets]
        if len(set(names)) < len(names):
            raise EvaluationError(f"--output with several targets writes each to {output}/<folder name>, and "
                                  f"these share a name: {sorted({n for n in names if names.count(n) > 1})}")
        outputs = [Path(output) / name for name in names]
    for target, out in zip(targets, outputs):
        plan = plan_evaluation(as_model_folder(target), tasks=tasks, sampling=sampling, steps=steps,
                               train_accuracy=train_accuracy, batch_size=batch_size, output=out, backend=backend,
                               python=python, vllm=vllm, trust_remote_code=trust_remote_code)
        rows = evaluate_checkpoints(plan, devices=devices)
        for row in rows:
            accuracy = next((v for k, v in row["metrics"].items() if k.startswith("avg@")), float("nan"))
            print(f"step {row['step']:>6}  {row['task']:<20} accuracy {accuracy:.4f}")
        print(f"{target}: {len(rows)} new result(s) in {plan.output / 'eval' / 'results.jsonl'}")
