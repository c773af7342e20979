"""Matplotlib figures of the bottleneck-and-recovery curve (used in TensorBoard and in reports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

Curve = tuple[Sequence[int], Sequence[float]]


def _figure() -> Figure:
    # A bare Figure (no pyplot): no global backend to set, nothing kept alive in pyplot's registry.
    return Figure(figsize=(8, 4.5), dpi=100)


def curve_figure(
    loss: Sequence[tuple[int, float]] | Curve,
    accuracy: Mapping[str, Curve],
    *,
    bottleneck: int | None = None,
    title: str = "",
) -> Figure:
    """Training loss (left axis) and accuracy per task (right axis) against step, θ_b marked."""
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
    if bottleneck is not None:
        ax_acc.axvline(bottleneck, color="tab:red", ls="--", lw=1.2, label=f"θ_b (step {bottleneck})")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    labels = ax_loss.get_legend_handles_labels()[1] + ax_acc.get_legend_handles_labels()[1]
    if handles:
        ax_acc.legend(handles, labels, loc="lower right", fontsize=8)
    if title:
        ax_loss.set_title(title)
    fig.tight_layout()
    return fig


def comparison_figure(curves: Mapping[str, Curve], *, ylabel: str, title: str,
                      bottlenecks: Mapping[str, int | None] | None = None, baseline: float | None = None) -> Figure:
    """One line per run (e.g. SFT vs T3S accuracy), each run's θ_b marked (dashed, labelled) in its colour;
    ``baseline`` (θ_0's accuracy, shared by the runs) as a grey dotted line."""
    fig = _figure()
    ax = fig.subplots()
    if baseline is not None:
        ax.axhline(baseline, color="0.5", ls=":", lw=1.2, label=f"θ_0 ({baseline:.2f})")
    for i, (run, (s, v)) in enumerate(curves.items()):
        ax.plot(s, v, marker="o", ms=3, lw=1.6, color=f"C{i}", label=run)
        step = (bottlenecks or {}).get(run)
        if step is not None:
            ax.axvline(step, color=f"C{i}", ls="--", lw=1.0, alpha=0.7, label=f"θ_b of {run} (step {step})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
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
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig
