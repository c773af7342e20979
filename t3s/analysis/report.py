"""``t3s report``: figures and a comparison table from finished runs' TensorBoard logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from t3s.evals.bottleneck import BottleneckDetector, is_train_accuracy_tag, read_scalars
from t3s.evals.figures import comparison_figure
from t3s.scoring.scorer import summary_markdown


def run_label(run_dir: Path) -> str:
    """A short readable name: ``sft/version_0`` for logger version folders, ``probe`` for recipe phases."""
    return "/".join(run_dir.parts[-2:]) if run_dir.name.startswith("version_") else run_dir.name


def accuracy_tags(run_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return sorted(t for t in acc.Tags().get("scalars", []) if t.startswith("bench/") and "/avg@" in t)


def summarize_run(run_dir: Path) -> dict[str, Any]:
    """Start / minimum / final / best accuracy per benchmark and the bottleneck step of one run."""
    row: dict[str, Any] = {"run": run_label(run_dir), "benchmarks": {}}
    for tag in accuracy_tags(run_dir):
        steps, values = read_scalars(run_dir, tag)
        task = tag.split("/")[1]
        i_min = values.index(min(values))
        row["benchmarks"][task] = {
            "tag": tag, "steps": steps, "values": values, "start": values[0], "min": values[i_min],
            "min_step": steps[i_min], "final": values[-1], "best": max(values),
        }
    if any(is_train_accuracy_tag(b["tag"]) for b in row["benchmarks"].values()):
        row["bottleneck"] = BottleneckDetector.from_run(run_dir).final()
    row["loss"] = read_scalars(run_dir, "train/loss")
    row["loss_all_tokens"] = read_scalars(run_dir, "train/loss_all_tokens")
    return row


def find_runs(path: str | Path) -> list[Path]:
    """The run folders under ``path``: itself when it holds TensorBoard event files, else its sub-folders that
    do (a recipe's ``<save_dir>/<name>/version_<k>`` holds one per phase: ``probe``, ``t3s``)."""
    path = Path(path)
    if any(path.glob("events.out.tfevents.*")):
        return [path]
    phases = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*"))) \
        if path.is_dir() else []
    if not phases:
        raise FileNotFoundError(f"{path} holds no TensorBoard event files, nor do its sub-folders (point at a "
                                "run's version_<k> folder or a recipe's)")
    return phases


def write_report(run_dirs: list[str | Path], output: str | Path | None = None) -> Path:
    """Write ``report.md`` with PNG figures (accuracy per benchmark, loss) comparing ``run_dirs``."""
    output = Path(output) if output is not None else Path(run_dirs[0]) / "report"
    runs = [run for given in run_dirs for run in find_runs(given)]
    output.mkdir(parents=True, exist_ok=True)
    rows = [summarize_run(r) for r in runs]
    tasks = sorted({t for row in rows for t in row["benchmarks"]})
    lines = ["# t3s report", "", "Runs: " + ", ".join(f"`{r}`" for r in runs), ""]
    lines += ["| run | benchmark | start | min (step) | final | best | θ_b step |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        for task, b in row["benchmarks"].items():
            lines.append(
                f"| {row['run']} | {task} | {b['start']:.3f} | {b['min']:.3f} ({b['min_step']}) | {b['final']:.3f} "
                f"| {b['best']:.3f} | {row.get('bottleneck', '') if task == 'train' else ''} |"
            )
    lines.append("")
    bottlenecks = {row["run"]: row.get("bottleneck") for row in rows}
    for task in tasks:
        curves = {row["run"]: (row["benchmarks"][task]["steps"], row["benchmarks"][task]["values"])
                  for row in rows if task in row["benchmarks"]}
        fig = comparison_figure(curves, ylabel=f"{task} accuracy", title=f"{task}: accuracy during training",
                                bottlenecks=bottlenecks, baseline=_shared_start(curves))
        fig.savefig(output / f"accuracy_{task}.png")
        lines += [f"![{task} accuracy](accuracy_{task}.png)", ""]
    loss_curves = {row["run"]: row["loss"] for row in rows if row["loss"][0]}
    if loss_curves:
        # all-token loss when every run logs it: a T3S run's train/loss covers only its selected tokens
        all_tokens = all(row["loss_all_tokens"][0] for row in rows if row["loss"][0])
        if all_tokens:
            loss_curves = {row["run"]: row["loss_all_tokens"] for row in rows if row["loss"][0]}
        fig = comparison_figure(loss_curves, title="training loss",
                                ylabel="training loss (all response tokens)" if all_tokens
                                else "training loss (selected tokens)")
        fig.savefig(output / "loss.png")
        lines += ["![training loss](loss.png)", ""]
    shown: set[Path] = set()
    for run in runs:
        found = _scores_summary(run)
        if found and found[0] not in shown:  # a recipe's phases share one score cache: show it once
            shown.add(found[0])
            lines += [f"## Anchor tokens of `{run_label(run)}`", "", summary_markdown(found[1]), ""]
    (output / "report.md").write_text("\n".join(lines) + "\n")
    (output / "summary.json").write_text(json.dumps(
        [{k: v for k, v in row.items() if k not in ("loss", "loss_all_tokens")} for row in rows], indent=2))
    return output / "report.md"


def _scores_summary(run: Path) -> tuple[Path, dict[str, Any]] | None:
    for candidate in (run / "scores" / "summary.json", run.parent / "scores" / "summary.json"):
        if candidate.is_file():
            return candidate.resolve(), json.loads(candidate.read_text())
    return None


def _shared_start(curves: dict[str, tuple[list[int], list[float]]]) -> float | None:
    """θ_0's accuracy when every run starts from the same θ_0 (same value at step 0), else None."""
    starts = {round(v[0], 9) for s, v in curves.values() if s and s[0] == 0}
    return starts.pop() if len(starts) == 1 and all(s and s[0] == 0 for s, _ in curves.values()) else None
