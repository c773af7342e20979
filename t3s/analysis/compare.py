"""The multi-seed comparison table and figures written by ``t3s compare``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from t3s.evals.bottleneck import TRAIN_ACCURACY_TAG
from t3s.evals.figures import method_seed_figure
from t3s.evals.scalars import has_scalars, read_scalars
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask

METHODS = tuple(s.name for s in (FullSFT, T3S, InverseT3S, RandomMask))
LABELS = {FullSFT.name: "SFT", **{s.name: s.label for s in (T3S, InverseT3S, RandomMask)}, "rrt": "RRT"}


def _version_dir(root: Path) -> Path | None:
    runs = sorted(root.glob("version_*")) if root.is_dir() else []
    return runs[-1] if runs else (root if root.is_dir() and has_scalars(root) else None)


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_comparison(output: Path, seeds: list[int], rrt: dict[int, dict[str, dict[str, float]]],
                     bottlenecks: dict[int, int]) -> Path:
    """``comparison.md`` + PNGs: start / min / final training (and benchmark) accuracy per method and seed.

    ``bottlenecks`` are the θ_b steps the runs were actually scored with (one per seed).
    """
    rows: dict[str, dict[str, list[float]]] = {m: {"start": [], "min": [], "final": [], "dip": []} for m in METHODS}
    curves: dict[tuple[str, int], tuple[list[int], list[float]]] = {}
    per_seed: list[str] = []
    for seed in seeds:
        for method in METHODS:
            run = _version_dir(output / f"seed_{seed}" / method)
            if run is None:
                continue
            steps, values = read_scalars(run, TRAIN_ACCURACY_TAG)
            if not values:
                continue
            lowest = min(values)
            rows[method]["start"].append(values[0])
            rows[method]["min"].append(lowest)
            rows[method]["final"].append(values[-1])
            rows[method]["dip"].append(values[0] - lowest)
            curves[(LABELS[method], seed)] = (steps, values)
            per_seed.append(f"| {seed} | {LABELS[method]} | {values[0]:.3f} | {lowest:.3f} "
                            f"({steps[values.index(lowest)]}) | {values[-1]:.3f} |")
        if seed in rrt and "train" in rrt[seed]:
            final = next(v for k, v in rrt[seed]["train"].items() if k.startswith("avg@"))
            rows.setdefault("rrt", {"start": [], "min": [], "final": [], "dip": []})["final"].append(final)
            per_seed.append(f"| {seed} | RRT | — | — | {final:.3f} |")
    lines = [
        "# t3s compare", "",
        f"Seeds: {', '.join(map(str, seeds))}. Training accuracy (`{TRAIN_ACCURACY_TAG}`), mean ± sd over seeds.",
        f"θ_b (SFT probe) per seed: {bottlenecks}.", "",
        "| method | start | minimum | final | dip (start − min) |", "|---|---|---|---|---|",
    ]
    for method, r in rows.items():
        lines.append(f"| {LABELS[method]} | {_stats(r['start'])} | {_stats(r['min'])} | {_stats(r['final'])} "
                     f"| {_stats(r['dip'])} |")
    lines += ["", "| seed | method | start | min (step) | final |", "|---|---|---|---|---|", *per_seed, ""]
    if curves:
        fig = method_seed_figure(curves, ylabel="training accuracy", title="training accuracy by method and seed")
        fig.savefig(output / "train_accuracy.png")
        lines += ["![training accuracy](train_accuracy.png)", ""]
    for seed in seeds:
        summary_file = output / f"seed_{seed}" / "scores" / "summary.json"
        if summary_file.is_file():
            s = json.loads(summary_file.read_text())
            anchors = ", ".join(f"`{t['token']}`" for t in s["top_anchor_tokens"][:12])
            others = ", ".join(f"`{t['token']}`" for t in s["top_yet_to_learn_tokens"][:12])
            lines += [f"Seed {seed}: anchor fraction {s['anchor_fraction']:.3f}, mean Δc {s['mean_delta']:+.3f}; "
                      f"top anchors {anchors}; top yet-to-learn {others}.", ""]
    report = output / "comparison.md"
    report.write_text("\n".join(lines) + "\n")
    (output / "comparison.json").write_text(json.dumps({"rows": rows, "rrt": rrt, "bottlenecks": bottlenecks},
                                                       indent=2, default=_jsonable))
    return report


def _jsonable(value: Any) -> Any:
    return str(value)
