"""``t3s report``: figures and a comparison table from finished runs' logged scalars (TensorBoard event files,
a ``CSVLogger``'s ``metrics.csv`` or the evaluation ledger: :mod:`t3s.evals.scalars`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from t3s.evals.bottleneck import BottleneckDetector, is_train_accuracy_tag, scored_bottleneck
from t3s.evals.figures import comparison_figure
from t3s.evals.scalars import has_scalars, read_scalars, scalar_tags
from t3s.scoring.summary_text import summary_markdown

#: How a recipe's phase folders are named in tables and legends (the paper's names: the plain-SFT phase is SFT).
PHASE_LABELS = {"probe": "SFT", "sft": "SFT", "t3s": "T3S", "inverse_t3s": "−T3S", "random": "random mask"}


def run_label(run_dir: Path) -> str:
    """A short readable name: ``sft/version_0`` for logger version folders; a recipe phase by the paper's name
    (``SFT`` for the plain-SFT phase, ``T3S`` …, :data:`PHASE_LABELS`)."""
    if run_dir.name.startswith("version_"):
        return "/".join(run_dir.parts[-2:])
    return PHASE_LABELS.get(run_dir.name, run_dir.name)


def is_plain_sft(row: dict[str, Any]) -> bool:
    """Whether a summarized run trained on every token (θ_b is read from its own curve, not from a score cache)."""
    return row.get("scored_bottleneck") is None


def accuracy_tags(run_dir: Path) -> list[str]:
    return [t for t in scalar_tags(run_dir) if t.startswith("bench/") and "/avg@" in t]


def run_scores_dir(run_dir: Path) -> str | None:
    """The score cache a run trained with, from the config it saved (``config.yaml``), else None."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        selection = config["model"]["init_args"]["selection"]["init_args"] or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    scores = selection.get("scores") or ((selection.get("match") or {}).get("init_args") or {}).get("scores")
    return str(scores) if scores else None


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
    # θ_b of a run trained on a score cache is the step the cache was scored at, not its own curve's minimum
    scored = scored_bottleneck(run_scores_dir(run_dir))
    row["scored_bottleneck"] = scored
    if scored is not None:
        row["bottleneck"] = scored
    elif any(is_train_accuracy_tag(b["tag"]) for b in row["benchmarks"].values()):
        row["bottleneck"] = BottleneckDetector.from_run(run_dir).final()
    row["loss"] = read_scalars(run_dir, "train/loss")
    row["loss_all_tokens"] = read_scalars(run_dir, "train/loss_all_tokens")
    return row


def find_runs(path: str | Path) -> list[Path]:
    """The run folders under ``path``: itself when it holds logged scalars (TensorBoard event files, a
    ``metrics.csv``), else its sub-folders that do (a recipe's ``<save_dir>/<name>/version_<k>`` holds one
    per phase: ``sft``, ``t3s``)."""
    path = Path(path)
    if has_scalars(path):
        return [path]
    phases = sorted(p for p in path.iterdir() if p.is_dir() and has_scalars(p)) if path.is_dir() else []
    if not phases:
        raise FileNotFoundError(f"{path} holds no logged scalars (TensorBoard event files or metrics.csv), nor do "
                                "its sub-folders (point at a run's version_<k> folder or a recipe's)")
    return phases


def write_report(run_dirs: list[str | Path], output: str | Path | None = None) -> Path:
    """Write ``report.md`` with PNG figures (accuracy per benchmark, loss) comparing ``run_dirs``."""
    output = Path(output) if output is not None else Path(run_dirs[0]) / "report"
    runs = [run for given in run_dirs for run in find_runs(given)]
    output.mkdir(parents=True, exist_ok=True)
    rows = [summarize_run(r) for r in runs]
    lines = ["# t3s report", "", "Runs: " + ", ".join(f"`{r}`" for r in runs), ""]
    lines += [*story(rows, toy=any(is_toy_run(r) for r in runs)), ""]
    lines += ["| run | benchmark | start | min (step) | final | best | θ_b step |", "|---|---|---|---|---|---|---|"]
    for task, (_, accuracy) in _theta0_rows(rows).items():
        lines.append(f"| θ_0 | {task} | {accuracy:.3f} | — | — | — | |")
    for row in rows:
        for task, b in row["benchmarks"].items():
            lines.append(
                f"| {row['run']} | {task} | {b['start']:.3f} | {b['min']:.3f} ({b['min_step']}) | {b['final']:.3f} "
                f"| {b['best']:.3f} | {row.get('bottleneck', '') if task == 'train' else ''} |"
            )
    lines.append("")
    for name, (alt, fig) in report_figures(rows).items():
        fig.savefig(output / name)
        lines += [f"![{alt}]({name})", ""]
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


def report_figures(rows: list[dict[str, Any]]) -> dict[str, tuple[str, Figure]]:
    """The report's figures by file name (with their alt text), as the paper draws them: accuracy per benchmark
    (θ_0's shared start as a baseline, θ_b marked on the plain-SFT curve it was read from, not on the masked
    runs trained from its scores) and the training loss over all response tokens when every run logs it (a T3S
    run's ``train/loss`` covers only its selected tokens)."""
    figures: dict[str, tuple[str, Figure]] = {}
    bottlenecks = {row["run"]: row.get("bottleneck") for row in rows if is_plain_sft(row)}
    if not bottlenecks:  # only masked runs: mark the θ_b their scores came from
        bottlenecks = {row["run"]: row.get("bottleneck") for row in rows}
    for task in sorted({t for row in rows for t in row["benchmarks"]}):
        curves = {row["run"]: (row["benchmarks"][task]["steps"], row["benchmarks"][task]["values"])
                  for row in rows if task in row["benchmarks"]}
        figures[f"accuracy_{task}.png"] = (f"{task} accuracy", comparison_figure(
            curves, ylabel=f"{task} accuracy", title=f"{task}: accuracy during training",
            bottlenecks=bottlenecks, baseline=_shared_start(curves)))
    logged = [row for row in rows if row["loss"][0]]
    if logged:
        all_tokens = all(row["loss_all_tokens"][0] for row in logged)
        key = "loss_all_tokens" if all_tokens else "loss"
        figures["loss.png"] = ("training loss", comparison_figure(
            {row["run"]: row[key] for row in logged}, title="training loss",
            ylabel="training loss (all response tokens)" if all_tokens else "training loss (selected tokens)"))
    return figures


def _theta0_rows(rows: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{task: (0, accuracy)}``: θ_0's accuracy per benchmark, when every run of that task starts from it."""
    out: dict[str, tuple[int, float]] = {}
    for task in dict.fromkeys(t for row in rows for t in row["benchmarks"]):
        curves = {row["run"]: (row["benchmarks"][task]["steps"], row["benchmarks"][task]["values"])
                  for row in rows if task in row["benchmarks"]}
        start = _shared_start(curves)
        if start is not None:
            out[task] = (0, start)
    return out


def is_toy_run(run_dir: Path) -> bool:
    """Whether a run trained on a toy world (its saved config's traces sit beside a ``world.json``)."""
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["data"]
        data = data.get("init_args", data)  # a class_path/init_args node or the flat section
        return (Path(data["path"]).parent / "world.json").is_file()
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return False


def recipe_story(run_dirs: list[Path]) -> str:
    """:func:`story` of a finished recipe's phases in one line, without Markdown (what the console prints)."""
    rows = [summarize_run(r) for r in run_dirs]
    return " ".join(line.replace("**", "") for line in story(rows, toy=any(is_toy_run(r) for r in run_dirs)) if line)


def story(rows: list[dict[str, Any]], toy: bool = False) -> list[str]:
    """What the run shows, in one line, and (``toy``) where the toy worlds stop agreeing with the paper, with
    where the README's tables are.

    Empty unless the rows hold a plain-SFT run and a T3S run with training accuracy.
    """
    by_label = {row["run"]: row["benchmarks"].get("train") for row in rows}
    sft, t3s = by_label.get("SFT"), by_label.get("T3S")
    if not sft or not t3s:
        return []
    ahead = ("ahead of" if t3s["final"] > sft["final"]
             else "not ahead of" if t3s["final"] < sft["final"] else "level with")
    line = (f"**What this run shows:** SFT's training accuracy dips {sft['start']:.2f} → {sft['min']:.2f} "
            f"(step {sft['min_step']}) and ends at {sft['final']:.2f}; T3S's minimum is {t3s['min']:.2f} and it "
            f"ends at {t3s['final']:.2f}, {ahead} SFT.")
    return [line, "", TOY_CAVEAT] if toy else [line]


#: Where the toy worlds stop agreeing with the paper (the README's results tables have the numbers).
TOY_CAVEAT = ("**Where the toys stop agreeing with the paper:** T3S is ahead of SFT only while SFT is still in the "
              "shock (toy-small at LR 3e-4 / 120 steps); given a longer budget SFT recovers past θ_0 and T3S does "
              "not, no method ends above θ_0 on held-out problems, and where the teacher carries a skill θ_0 lacks "
              "(toy-skill) T3S does not learn it. Tables: README.md, \"Results on the toy worlds\"; "
              "docs/results/toy_skill.md.")


def _scores_summary(run: Path) -> tuple[Path, dict[str, Any]] | None:
    for candidate in (run / "scores" / "summary.json", run.parent / "scores" / "summary.json"):
        if candidate.is_file():
            return candidate.resolve(), json.loads(candidate.read_text())
    return None


def _shared_start(curves: dict[str, tuple[list[int], list[float]]]) -> float | None:
    """θ_0's accuracy when every run starts from the same θ_0 (same value at step 0), else None."""
    starts = {round(v[0], 9) for s, v in curves.values() if s and s[0] == 0}
    return starts.pop() if len(starts) == 1 and all(s and s[0] == 0 for s, _ in curves.values()) else None
