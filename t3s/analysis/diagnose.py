"""``t3s diagnose RUN``: the paper's trajectory analyses on a finished phase, written into the phase itself.

For every ``hf/step_<N>`` of the phase that has a training-accuracy evaluation (all of them with
``--bottleneck_step``): the confidence of each token group over the whole data set, the anchor-only and
other-only gradients on a fixed probe batch (norms, ratio, cosine), a one-step intervention (one step of the
run's AdamW on anchors only / on the others only) and the 4×4 loss-transfer matrix. Outputs::

    <run>/diagnostics/diagnostics.json       everything, per step (README, "Diagnostics")
    <run>/diagnostics/*.png                  confidence bands, gradient interaction, transfer heatmap, tokens
    <run>/diagnostics/trajectories/          c_t of every token at every step (reused by a rerun)
    <run>/events.out.tfevents.*.t3s-diagnose diagnostics/... scalars at each checkpoint's step

``devices`` > 1 spawns that many worker processes joined by a gloo (CPU) or NCCL (GPU) process group, the
pattern of ``t3s evaluate``: each scores a share of the data and holds a share of the probe batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t3s.analysis.interaction import (
    OptimizerSettings,
    gradient_interaction,
    loss_transfer,
    mean_change,
    probe_batch,
)
from t3s.analysis.trajectories import (
    SIDES,
    Trajectories,
    answer_spans,
    data_offsets,
    group_confidence,
    score_step,
    token_groups,
)
from t3s.errors import T3SError
from t3s.evals.bottleneck import TRAIN_ACCURACY_TAG, BottleneckDetector
from t3s.evals.callback_settings import grouped
from t3s.evals.offline import benchmark_settings, run_checkpoints
from t3s.evals.scalars import read_scalars
from t3s.runtime.threads import right_size_threads
from t3s.runtime.workers import run_on_workers, worker_device
from t3s.selection.scores import write_json_atomic

OUTPUT_DIR = "diagnostics"
JSON_FILE = "diagnostics.json"


class DiagnosticsError(T3SError, ValueError):
    """The folder cannot be diagnosed (not a run, no checkpoints, no θ_b)."""


@dataclass
class DiagnosticsPlan:
    """What one ``t3s diagnose`` call does.

    Attributes:
        run_dir: the phase directory (``hf/step_<N>``, ``config.yaml``, TensorBoard events).
        output: where the JSON, figures and trajectories go.
        checkpoints: ``(step, HF folder)`` to diagnose, by step (θ_0 = step 0 and θ_b included).
        bottleneck_step: θ_b's step; ``bottleneck_source`` says where it came from (``curve`` or ``argument``).
        accuracy: the training accuracy per step (empty without a curve).
        data: the run's ``data`` config section.
        optimizer: the run's AdamW settings for the one-step intervention.
    """

    run_dir: Path
    output: Path
    checkpoints: list[tuple[int, Path]]
    bottleneck_step: int
    bottleneck_source: str
    accuracy: dict[int, float]
    data: dict[str, Any]
    optimizer: OptimizerSettings
    threshold: float = 0.0
    probe_traces: int = 32
    micro_batch_size: int | None = None
    chunk_size: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)


def plan_diagnostics(run_dir: str | Path, *, bottleneck_step: int | None = None, threshold: float = 0.0,
                     probe_traces: int = 32, lr: float | None = None, micro_batch_size: int | None = None,
                     output: str | Path | None = None) -> DiagnosticsPlan:
    """Check the run folder and work out the checkpoints, θ_b and settings (one-line errors for bad input)."""
    import yaml

    from t3s.runtime.env_refs import resolve_env_references

    run = Path(run_dir)
    if not run.is_dir():
        raise DiagnosticsError(f"{run}: no such directory (give a phase run directory, e.g. <run>/sft)")
    if not (run / "config.yaml").is_file():
        phases = [p.name for p in sorted(run.iterdir()) if (p / "hf").is_dir()]
        hint = f"; a recipe run: give one of its phases, e.g. {run / phases[0]}" if phases else ""
        raise DiagnosticsError(f"{run}: not a run directory written by `t3s fit` (no config.yaml){hint}")
    found = dict(run_checkpoints(run))
    if not found:
        raise DiagnosticsError(f"{run}: no hf/step_<N> checkpoints to diagnose")
    if 0 not in found:
        raise DiagnosticsError(f"{run}: no hf/step_0 (θ_0), which the token groups are measured against")
    try:
        config = resolve_env_references(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {})
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DiagnosticsError(f"{run / 'config.yaml'}: unreadable YAML ({type(err).__name__})") from None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise DiagnosticsError(f"{run / 'config.yaml'}: no data section (the traces the run trained on)")
    steps, values = read_scalars(run, TRAIN_ACCURACY_TAG)
    accuracy = dict(zip(steps, values))
    if bottleneck_step is not None:
        if bottleneck_step not in found or bottleneck_step == 0:
            raise DiagnosticsError(f"--bottleneck_step {bottleneck_step}: no such checkpoint other than θ_0 in "
                                   f"{run}/hf (steps {sorted(found)})")
        bottleneck, source = int(bottleneck_step), "argument"
    else:
        if not steps:
            raise DiagnosticsError(f"{run}: no training-accuracy curve ({TRAIN_ACCURACY_TAG}); run "
                                   f"`t3s evaluate {run}` first or give --bottleneck_step")
        curve = grouped(benchmark_settings(config))["curve"]
        detector = BottleneckDetector.from_curve(steps, values, margin=float(curve.get("bottleneck_margin", 0.05)),
                                                 patience=int(curve.get("bottleneck_patience", 2)))
        bottleneck, source = detector.final(), "curve"
        if not bottleneck or bottleneck not in found:
            raise DiagnosticsError(f"{run}: the training-accuracy curve gives no θ_b with a checkpoint (argmin step "
                                   f"{bottleneck}); give --bottleneck_step")
    wanted = sorted(s for s in found if s in accuracy) if accuracy else sorted(found)
    wanted = sorted(set(wanted) | {0, bottleneck})
    settings = OptimizerSettings.from_config(config)
    if lr is not None:
        settings.lr = float(lr)
    if probe_traces < 1:
        raise DiagnosticsError(f"--probe_traces must be >= 1, got {probe_traces}")
    return DiagnosticsPlan(run, Path(output) if output else run / OUTPUT_DIR, [(s, found[s]) for s in wanted],
                           bottleneck, source, accuracy, dict(config["data"]), settings, float(threshold),
                           probe_traces, micro_batch_size)


def run_diagnostics(plan: DiagnosticsPlan, devices: int = 1) -> dict[str, Any]:
    """Run every measurement of ``plan`` on ``devices`` worker processes; returns the JSON report."""
    if devices < 1:
        raise DiagnosticsError(f"--devices must be >= 1, got {devices}")
    run_on_workers(_diagnose, (plan,), devices)
    import json

    return json.loads((plan.output / JSON_FILE).read_text(encoding="utf-8"))


def _broadcast(obj: Any, world: int) -> Any:
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _diagnose(rank: int, world: int, plan: DiagnosticsPlan) -> None:
    from transformers import AutoModelForCausalLM

    from t3s.data.from_config import datamodule_from_config
    from t3s.progress import progress as tqdm

    started = time.perf_counter()
    device = worker_device(rank)
    datamodule = datamodule_from_config(plan.data, origin=f"{plan.run_dir / 'config.yaml'}")
    datamodule.setup("fit")
    offsets = data_offsets(datamodule.traces)
    cache = Trajectories(plan.output / "trajectories", datamodule.fingerprint(), offsets) if rank == 0 else None
    reuse = _broadcast({s for s, f in plan.checkpoints if cache.has(s, f)} if cache else set(), world)

    def confidences(step: int, folder: Path) -> torch.Tensor:
        if step in reuse:
            return cache.load(step) if rank == 0 else torch.empty(0)
        values = score_step(datamodule, folder, offsets, device=str(device), micro_batch_size=plan.micro_batch_size,
                            chunk_size=plan.chunk_size, rank=rank, world=world)
        if cache is not None:
            cache.save(step, folder, values)
        return values

    folders = dict(plan.checkpoints)
    base = _broadcast(confidences(0, folders[0]), world)
    bottleneck = _broadcast(confidences(plan.bottleneck_step, folders[plan.bottleneck_step]), world)
    answer = answer_spans(datamodule.traces, datamodule.tokenizer, offsets)
    groups = token_groups(base, bottleneck, answer, plan.threshold)
    probe = probe_batch(datamodule, groups.ids, offsets, traces=plan.probe_traces,
                        micro_batch_size=plan.micro_batch_size, rank=rank, world=world).to(device)
    counts = probe.counts().cpu()
    anchor, other = SIDES["anchor"], SIDES["yet_to_learn"]
    train_sets = [anchor, other, *[(g,) for g in range(4)]]  # the intervention's rows and the matrix's columns

    entries = []
    progress = tqdm(plan.checkpoints, desc="diagnose", unit="checkpoint", disable=rank != 0)
    for step, folder in progress:
        values = bottleneck if step == plan.bottleneck_step else base if step == 0 else confidences(step, folder)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
        right_size_threads(model, device)
        interaction = gradient_interaction(model, probe, anchor, other, plan.chunk_size)
        before, after = loss_transfer(model, probe, train_sets, plan.optimizer, plan.chunk_size)
        del model
        changes = mean_change(before, after, counts, train_sets)
        for i, members in enumerate(train_sets):  # a group absent from the probe trains nothing
            if not float(counts[list(members)].sum()):
                changes[i] = [float("nan")] * len(changes[i])
        entry = {"step": step, "train_accuracy": plan.accuracy.get(step), **interaction,
                 "intervention": {side: dict(zip(SIDES, changes[i][:2])) for i, side in enumerate(SIDES)},
                 "transfer_matrix": [row[2:] for row in changes[2:]]}
        if rank == 0:
            entry["confidence"] = group_confidence(values, base, groups)
            entries.append(entry)
            progress.set_postfix(step=step, ratio=f"{interaction['grad_norm_ratio']:.2f}",
                                 cos=f"{interaction['grad_cosine']:+.2f}")
    progress.close()
    if rank == 0:
        report = _report(plan, datamodule, groups, base, bottleneck, offsets, counts, entries, answer is not None)
        report["seconds"] = round(time.perf_counter() - started, 2)
        _write(plan, report)


def _report(plan: DiagnosticsPlan, datamodule: Any, groups: Any, base: torch.Tensor, bottleneck: torch.Tensor,
            offsets: torch.Tensor, counts: torch.Tensor, entries: list[dict[str, Any]], spans: bool) -> dict[str, Any]:
    from t3s.scoring.scorer import summarize
    from t3s.selection.scores import ScoreCache
    from t3s.selection.strategies import T3S

    summary = summarize(ScoreCache(base, bottleneck, offsets, {}), datamodule.traces, datamodule.tokenizer,
                        top_tokens=15, selection=T3S(threshold=plan.threshold))
    at_bottleneck = next(e for e in entries if e["step"] == plan.bottleneck_step)
    return {
        "run": str(plan.run_dir),
        "base_step": 0,
        "bottleneck_step": plan.bottleneck_step,
        "bottleneck_source": plan.bottleneck_source,
        "threshold": plan.threshold,
        "groups": list(groups.names),
        "group_design": "anchor / yet-to-learn × reasoning / answer span (</think>)" if spans
        else "anchor / yet-to-learn, each split at its median Δc",
        "probe": {"traces": min(plan.probe_traces, len(datamodule.traces)),
                  "tokens": dict(zip(groups.names, (int(c) for c in counts.tolist())))},
        "optimizer": {"lr": plan.optimizer.lr, "betas": list(plan.optimizer.betas),
                      "weight_decay": plan.optimizer.weight_decay, "eps": plan.optimizer.eps,
                      "max_grad_norm": plan.optimizer.max_grad_norm},
        "anchor_fraction": summary["anchor_fraction"],
        "num_tokens": summary["num_tokens"],
        "top_anchor_tokens": summary["top_anchor_tokens"],
        "top_yet_to_learn_tokens": summary["top_yet_to_learn_tokens"],
        "transfer_matrix": at_bottleneck["transfer_matrix"],
        "transfer_matrix_step": plan.bottleneck_step,
        "steps": entries,
    }


def _write(plan: DiagnosticsPlan, report: dict[str, Any]) -> None:
    """JSON (NaN → null), TensorBoard scalars at each step, and the figures."""
    from torch.utils.tensorboard import SummaryWriter

    from t3s.analysis.diagnostic_figures import save_figures

    plan.output.mkdir(parents=True, exist_ok=True)
    report["figures"] = save_figures(report, plan.output)
    write_json_atomic(plan.output / JSON_FILE, _finite(report))
    writer = SummaryWriter(log_dir=str(plan.run_dir), filename_suffix=".t3s-diagnose")
    for entry in report["steps"]:
        for tag, value in scalars(entry, report["groups"]).items():
            if value is not None and math.isfinite(value):
                writer.add_scalar(tag, value, global_step=entry["step"])
    writer.close()


def scalars(entry: dict[str, Any], names: list[str]) -> dict[str, float]:
    """The TensorBoard (or any logger's) ``diagnostics/...`` scalars of one step's entry."""
    out = {f"diagnostics/{k}": entry[k] for k in ("grad_norm_anchor", "grad_norm_other", "grad_norm_ratio",
                                                   "grad_cosine") if k in entry}
    for group, stats in entry.get("confidence", {}).items():
        out[f"diagnostics/confidence/{group}"] = stats["mean"]
        out[f"diagnostics/below_base/{group}"] = stats["below_base"]
    for trained, row in entry.get("intervention", {}).items():
        for measured, value in row.items():
            out[f"diagnostics/intervention/{trained}_to_{measured}"] = value
    for i, row in enumerate(entry.get("transfer_matrix", [])):
        for j, value in enumerate(row):
            out[f"diagnostics/transfer/{names[i]}_to_{names[j]}"] = value
    return out


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
