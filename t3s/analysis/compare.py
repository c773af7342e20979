"""The multi-seed comparison table, the paper's claims checked on it, and the figures written by ``t3s compare``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from t3s.evals.figures import method_seed_figure
from t3s.evals.scalars import has_scalars, read_scalars, scalar_tags
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask

METHODS = tuple(s.name for s in (FullSFT, T3S, InverseT3S, RandomMask))
LABELS = {FullSFT.name: "SFT", **{s.name: s.label for s in (T3S, InverseT3S, RandomMask)}, "rrt": "RRT"}
THETA0 = "θ_0"
TRAIN = "train"
#: A claim "holds with margin" when its mean difference exceeds this many pooled seed standard deviations.
MARGIN_SDS = 1.0


def _version_dir(root: Path) -> Path | None:
    runs = sorted(root.glob("version_*")) if root.is_dir() else []
    return runs[-1] if runs else (root if root.is_dir() and has_scalars(root) else None)


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def task_tags(run: Path) -> dict[str, str]:
    """``{task: tag}`` of a run's accuracy curves (``bench/<task>/avg@<k>``), the training problems first."""
    tags = {t.split("/")[1]: t for t in scalar_tags(run) if t.startswith("bench/") and "/avg@" in t}
    return dict(sorted(tags.items(), key=lambda item: (item[0] != TRAIN, item[0])))


def _rrt_value(metrics: dict[str, float]) -> float:
    return next(v for k, v in metrics.items() if k.startswith("avg@"))


def collect(output: Path, seeds: list[int], rrt: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Per task, method and seed: start / minimum (and its step) / final accuracy and the whole curve.

    θ_0's row is every method's step-0 evaluation (they all start from the same weights); RRT has a final only.
    """
    table: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for seed in seeds:
        for method in METHODS:
            run = _version_dir(output / f"seed_{seed}" / method)
            if run is None:
                continue
            for task, tag in task_tags(run).items():
                steps, values = read_scalars(run, tag)
                if not values:
                    continue
                low = min(values)
                table.setdefault(task, {}).setdefault(method, {})[seed] = {
                    "start": values[0], "min": low, "min_step": steps[values.index(low)], "final": values[-1],
                    "steps": steps, "values": values}
                if steps[0] == 0:
                    table[task].setdefault(THETA0, {}).setdefault(seed, {"start": values[0], "final": values[0]})
        for task, metrics in rrt.get(seed, {}).items():
            table.setdefault(task, {}).setdefault("rrt", {})[seed] = {"final": _rrt_value(metrics)}
    return table


def _values(table: dict[str, Any], task: str, method: str, key: str) -> list[float]:
    return [r[key] for r in table.get(task, {}).get(method, {}).values() if key in r]


def _verdict(a: list[float], b: list[float], holds: bool) -> str:
    """``holds with margin`` / ``holds on the mean`` / ``does not hold`` for a claim comparing two samples."""
    if not a or not b:
        return "not measured"
    if not holds:
        return "**does not hold**"
    spread = [statistics.stdev(x) for x in (a, b) if len(x) > 1]
    sd = max(spread) if spread else 0.0
    gap = abs(statistics.mean(a) - statistics.mean(b))
    return "**holds with margin**" if gap > MARGIN_SDS * sd else "holds on the mean only"


def claims(table: dict[str, Any]) -> list[str]:
    """The paper's claims checked on the table (the rules of docs/results/toy_skill.md), as Markdown rows."""
    mean = statistics.mean
    held = next((t for t in table if t != TRAIN), TRAIN)
    rows = ["| claim | rule | verdict |", "|---|---|---|"]
    theta0 = _values(table, TRAIN, THETA0, "start")
    sft_min = _values(table, TRAIN, FullSFT.name, "min")
    if theta0 and sft_min:
        dips = [t - m for t, m in zip(theta0, sft_min)]
        rows.append(f"| Imitation Shock | SFT's training minimum ≥ 0.10 below θ_0 on every seed (dips "
                    f"{', '.join(f'{d:.2f}' for d in dips)}) | "
                    f"{'**holds**' if all(d >= 0.10 for d in dips) else '**does not hold**'} |")
    t3s_h, sft_h = _values(table, held, T3S.name, "final"), _values(table, held, FullSFT.name, "final")
    theta0_h = _values(table, held, THETA0, "start")
    if t3s_h and sft_h:
        rows.append(f"| T3S ≥ SFT ({held}, final) | mean {mean(t3s_h):.3f} vs {mean(sft_h):.3f} | "
                    f"{_verdict(t3s_h, sft_h, mean(t3s_h) >= mean(sft_h))} |")
    if t3s_h and theta0_h:
        rows.append(f"| T3S > θ_0 ({held}, final) | mean {mean(t3s_h):.3f} vs {mean(theta0_h):.3f} | "
                    f"{_verdict(t3s_h, theta0_h, mean(t3s_h) > mean(theta0_h))} |")
    sft_f, theta0_f = _values(table, TRAIN, FullSFT.name, "final"), theta0
    if sft_f and theta0_f:
        rows.append(f"| the budget is long (SFT recovered) | SFT's final training accuracy {mean(sft_f):.3f} > "
                    f"θ_0's {mean(theta0_f):.3f} | {'yes' if mean(sft_f) > mean(theta0_f) else 'no'} |")
    inv_min, inv_h = _values(table, TRAIN, InverseT3S.name, "min"), _values(table, held, InverseT3S.name, "final")
    if inv_min and sft_min and inv_h and t3s_h:
        collapsed = mean(inv_min) < mean(sft_min) and mean(inv_h) < mean(t3s_h)
        rows.append(f"| −T3S collapses | training minimum {mean(inv_min):.3f} < SFT's {mean(sft_min):.3f} and "
                    f"{held} final {mean(inv_h):.3f} < T3S's {mean(t3s_h):.3f} | "
                    f"{_verdict(inv_h, t3s_h, collapsed)} |")
    rrt_h = _values(table, held, "rrt", "final")
    if rrt_h and sft_h:
        rows.append(f"| RRT ≥ SFT ({held}) | mean {mean(rrt_h):.3f} vs SFT's final {mean(sft_h):.3f} | "
                    f"{_verdict(rrt_h, sft_h, mean(rrt_h) >= mean(sft_h))} |")
    return rows


def write_comparison(output: Path, seeds: list[int], rrt: dict[int, dict[str, dict[str, float]]],
                     bottlenecks: dict[int, int]) -> Path:
    """``comparison.md`` + PNGs: start / min / final training and held-out accuracy per method and seed, θ_0's
    row, and the paper's claims checked on them.

    ``bottlenecks`` are the θ_b steps the runs were actually scored with (one per seed).
    """
    table = collect(output, seeds, rrt)
    tasks = list(table)
    lines = [
        "# t3s compare", "",
        f"Seeds: {', '.join(map(str, seeds))}. Greedy exact-match accuracy, mean ± sd over seeds, on "
        f"{' and '.join(f'`{t}`' for t in tasks)} (`train`: the training problems; any other task: problems "
        "never trained on). Every method starts from θ_0; RRT = θ_0 + (θ_SFT,final − θ_b) is evaluated once.",
        f"θ_b (on the SFT run) per seed: {bottlenecks}.", "",
    ]
    header = "| method | " + " | ".join(f"{t} {k}" for t in tasks for k in ("start", "minimum", "final")) + " |"
    lines += [header, "|---|" + "---|" * (3 * len(tasks))]
    for method in (THETA0, *METHODS, "rrt"):
        if not any(method in table[t] for t in tasks):
            continue
        cells = [_stats(_values(table, t, method, k)) for t in tasks for k in ("start", "min", "final")]
        label = f"{THETA0} (every method's start)" if method == THETA0 else LABELS[method]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## The paper's claims on this table", "", *claims(table), ""]
    lines += ["## Per seed", "", "| seed | method | " + " | ".join(f"{t} start / min (step) / final" for t in tasks)
              + " |", "|---|---|" + "---|" * len(tasks)]
    for seed in seeds:
        for method in (*METHODS, "rrt"):
            cells = []
            for task in tasks:
                r = table[task].get(method, {}).get(seed)
                if r is None:
                    cells.append("—")
                elif "min" in r:
                    cells.append(f"{r['start']:.3f} / {r['min']:.3f} ({r['min_step']}) / {r['final']:.3f}")
                else:
                    cells.append(f"— / — / {r['final']:.3f}")
            if any(c != "—" for c in cells):
                lines.append(f"| {seed} | {LABELS[method]} | " + " | ".join(cells) + " |")
    lines.append("")
    for task in tasks:
        curves = {(LABELS[m], s): (r["steps"], r["values"]) for m, by_seed in table[task].items()
                  if m in METHODS for s, r in by_seed.items()}
        if curves:
            name = "train_accuracy.png" if task == TRAIN else f"{task}_accuracy.png"
            fig = method_seed_figure(curves, ylabel=f"{task} accuracy", title=f"{task} accuracy by method and seed")
            fig.savefig(output / name)
            lines += [f"![{task} accuracy]({name})", ""]
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
    slim = {task: {m: {s: {k: v for k, v in r.items() if k not in ("steps", "values")} for s, r in by_seed.items()}
                   for m, by_seed in methods.items()} for task, methods in table.items()}
    (output / "comparison.json").write_text(json.dumps({"table": slim, "rrt": rrt, "bottlenecks": bottlenecks},
                                                       indent=2, default=str))
    return report
