"""Matplotlib figures of the bottleneck-and-recovery curve (used in TensorBoard and in reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

Curve = tuple[Sequence[int], Sequence[float]]


def _figure() -> Figure:
    # A bare Figure (no pyplot): no global backend to set, nothing kept alive in pyplot's registry. The
    # constrained layout makes room for a legend placed outside the axes, where it cannot cover a curve.
    return Figure(figsize=(8, 4.5), dpi=100, layout="constrained")


#: θ_b's colour in every figure: a colour no run or task line uses (they take C0, C1, … in order).
BOTTLENECK_COLOR = "tab:red"


def curve_figure(
    loss: Sequence[tuple[int, float]] | Curve,
    accuracy: Mapping[str, Curve],
    *,
    bottleneck: int | None = None,
    lowest: int | None = None,
    title: str = "",
) -> Figure:
    """Training loss (left axis) and accuracy per task (right axis) against step; legend outside the axes.

    ``bottleneck``: θ_b once it is known (confirmed by recovery, or the step the run's score cache was
    computed with), a red dashed line "θ_b (step N)". ``lowest``: before that, the lowest training accuracy
    so far, a grey dotted line "min so far (step N)". Neither is drawn at step 0 (θ_0 is no bottleneck).
    """
    steps, values = _as_curve(loss)
    fig = _figure()
    ax_loss = fig.subplots()
    if steps:
        ax_loss.plot(steps, values, color="tab:gray", lw=1.2, label="train loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("training loss (selected tokens)")
    ax_acc = ax_loss.twinx()
    for i, (task, (s, v)) in enumerate(accuracy.items()):
        ax_acc.plot(s, v, marker="o", ms=3, lw=1.6, color=f"C{i}", label=f"{task} accuracy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    if bottleneck:
        ax_acc.axvline(bottleneck, color=BOTTLENECK_COLOR, ls="--", lw=1.2, label=f"θ_b (step {bottleneck})")
    elif lowest:
        ax_acc.axvline(lowest, color="0.4", ls=":", lw=1.2, label=f"min so far (step {lowest})")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    labels = ax_loss.get_legend_handles_labels()[1] + ax_acc.get_legend_handles_labels()[1]
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    if title:
        ax_loss.set_title(title)
    return fig


def comparison_figure(curves: Mapping[str, Curve], *, ylabel: str, title: str,
                      bottlenecks: Mapping[str, int | None] | None = None, baseline: float | None = None) -> Figure:
    """One line per run (e.g. SFT vs T3S accuracy); ``baseline`` (θ_0's accuracy, shared by the runs) as a grey
    dotted line; θ_b as a red dashed line, labelled, with a marker on each curve at that step (one line per
    distinct θ_b: the runs of one recipe share the SFT phase's). Legend outside the axes."""
    fig = _figure()
    ax = fig.subplots()
    if baseline is not None:
        ax.axhline(baseline, color="0.5", ls=":", lw=1.2, label=f"θ_0 ({baseline:.2f})")
    for i, (run, (s, v)) in enumerate(curves.items()):
        ax.plot(s, v, marker="o", ms=3, lw=1.6, color=f"C{i}", label=run)
    by_step: dict[int, list[str]] = {}
    for run, step in (bottlenecks or {}).items():
        if step is not None and run in curves:
            by_step.setdefault(step, []).append(run)
    styles = ["--", "-.", (0, (5, 1, 1, 1))]
    for j, (step, runs) in enumerate(sorted(by_step.items())):
        whose = "" if len(by_step) == 1 else f" of {', '.join(runs)}"
        ax.axvline(step, color=BOTTLENECK_COLOR, ls=styles[j % len(styles)], lw=1.1,
                   label=f"θ_b{whose} (step {step})")
        for run in runs:  # the point on the curve θ_b was read from (not on runs trained from its scores)
            s, v = curves[run]
            if step in s:
                ax.plot([step], [v[list(s).index(step)]], marker="v", ms=7, ls="none", color=BOTTLENECK_COLOR,
                        zorder=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        fig.legend(loc="outside right upper", fontsize=8)
    return fig


def _as_curve(points: Sequence[tuple[int, float]] | Curve) -> Curve:
    if len(points) == 2 and not isinstance(points[0], tuple):
        return points  # already (steps, values)
    return [p[0] for p in points], [p[1] for p in points]


def method_seed_figure(curves: Mapping[tuple[str, int], Curve], *, ylabel: str, title: str) -> Figure:
    """One colour per method, one line style per seed (the multi-seed comparison)."""
    fig = _figure()
    ax = fig.subplots()
    methods = list(dict.fromkeys(m for m, _ in curves))
    seeds = list(dict.fromkeys(s for _, s in curves))
    styles = ["-", "--", ":", "-."]
    for (method, seed), (s, v) in curves.items():
        i, j = methods.index(method), seeds.index(seed)
        ax.plot(s, v, color=f"C{i}", ls=styles[j % len(styles)], marker="o", ms=2.5, lw=1.4,
                label=method if j == 0 else None)
    for j, seed in enumerate(seeds):
        ax.plot([], [], color="gray", ls=styles[j % len(styles)], label=f"seed {seed}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig
