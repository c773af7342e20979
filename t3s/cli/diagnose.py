"""``t3s diagnose``: trajectory diagnostics of a finished phase (:mod:`t3s.analysis.diagnose`).
"""

from __future__ import annotations

#: The parameter that may be given bare (``t3s diagnose RUN``).
POSITIONAL = "run"


def run(
    run: str,
    bottleneck_step: int | None = None,
    threshold: float = 0.0,
    probe_traces: int = 32,
    lr: float | None = None,
    devices: int = 1,
    micro_batch_size: int | None = None,
    output: str | None = None,
) -> None:
    """Trajectory diagnostics of a finished phase: group confidences, gradient interaction, loss transfer.

    Args:
        run: a phase run directory (``hf/step_N``, ``config.yaml``; e.g. ``<recipe run>/sft``).
        bottleneck_step: θ_b's step (default: read from the phase's training-accuracy curve, as the recipe does).
        threshold: anchors are tokens with Δc = c(θ_b) − c(θ_0) above this (T3S: 0).
        probe_traces: traces in the fixed probe batch of the gradient and transfer measurements.
        lr: learning rate of the one-step intervention (default: the run's peak ``lr``).
        devices: worker processes (one per GPU when there are GPUs; gloo on CPU).
        micro_batch_size: rows per forward pass (default: the run's data config).
        output: where the JSON and figures go (default: ``<run>/diagnostics``).
    """
    from t3s.analysis.diagnose import JSON_FILE, plan_diagnostics, run_diagnostics

    plan = plan_diagnostics(run, bottleneck_step=bottleneck_step, threshold=threshold, probe_traces=probe_traces,
                            lr=lr, micro_batch_size=micro_batch_size, output=output)
    report = run_diagnostics(plan, devices=devices)
    for entry in report["steps"]:
        acc = entry["train_accuracy"]
        conf = entry["confidence"]
        print(f"step {entry['step']:>6}  acc {'  -  ' if acc is None else f'{acc:.3f}'}  "
              f"c(anchor) {conf['anchor']['mean']:+.3f}  c(ytl) {conf['yet_to_learn']['mean']:+.3f}  "
              f"ytl below θ0 {conf['yet_to_learn']['below_base']:.2f}  |g_a|/|g_o| {entry['grad_norm_ratio']:.2f}  "
              f"cos {entry['grad_cosine']:+.2f}")
    print(f"θ_b = step {report['bottleneck_step']} ({report['bottleneck_source']}); wrote {plan.output / JSON_FILE} "
          f"and {len(report['figures'])} figures in {report['seconds']:.0f} s")
