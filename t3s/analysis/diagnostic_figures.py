"""The figures of ``t3s diagnose``: confidence bands, gradient interaction, transfer heatmap, group tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def _figure(width: float = 8, height: float = 4.5) -> Figure:
    return Figure(figsize=(width, height), dpi=100)  # no pyplot: nothing global, nothing kept alive


def _mark_bottleneck(ax: Any, step: int) -> None:
    ax.axvline(step, color="tab:red", ls="--", lw=1.2, label=f"θ_b (step {step})")


def confidence_figure(report: dict[str, Any]) -> Figure:
    """Mean c per group over steps with its interquartile band (left: the two sides; middle: the four groups),
    and the share of each side's tokens below their θ_0 confidence (right); θ_b marked."""
    steps = [e["step"] for e in report["steps"]]
    fig = _figure(15, 4.5)
    axes = fig.subplots(1, 3)
    for ax, names, title in ((axes[0], ["anchor", "yet_to_learn"], "anchors vs yet-to-learn"),
                             (axes[1], report["groups"], "the four groups")):
        for i, name in enumerate(names):
            stats = [e["confidence"][name] for e in report["steps"]]
            ax.plot(steps, [s["mean"] for s in stats], marker="o", ms=3, lw=1.6, color=f"C{i}", label=name)
            ax.fill_between(steps, [s["p25"] for s in stats], [s["p75"] for s in stats], color=f"C{i}", alpha=0.15)
        ax.set_ylabel("c_t = log p (mean, 25–75% band)")
        ax.set_title(title)
    for i, name in enumerate(["anchor", "yet_to_learn"]):
        axes[2].plot(steps, [e["confidence"][name]["below_base"] for e in report["steps"]], marker="o", ms=3,
                     lw=1.6, color=f"C{i}", label=name)
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_ylabel("share of tokens below their c(θ_0)")
    axes[2].set_title("tokens still below θ_0")
    for ax in axes:
        _mark_bottleneck(ax, report["bottleneck_step"])
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def interaction_figure(report: dict[str, Any]) -> Figure:
    """Anchor / other gradient-norm ratio (left axis, log scale) and their cosine (right axis) over steps."""
    steps = [e["step"] for e in report["steps"]]
    fig = _figure()
    ax = fig.subplots()
    ratio = [e["grad_norm_ratio"] for e in report["steps"]]
    ax.plot(steps, ratio, marker="o", ms=3, lw=1.6, color="C0", label="‖g_anchor‖ / ‖g_other‖")
    ax.axhline(1.0, color="C0", ls=":", lw=1.0)
    if all(r is not None and r > 0 for r in ratio):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("gradient-norm ratio")
    twin = ax.twinx()
    twin.plot(steps, [e["grad_cosine"] for e in report["steps"]], marker="s", ms=3, lw=1.6, color="C1",
              label="cos(g_anchor, g_other)")
    twin.axhline(0.0, color="C1", ls=":", lw=1.0)
    twin.set_ylim(-1.05, 1.05)
    twin.set_ylabel("cosine")
    _mark_bottleneck(twin, report["bottleneck_step"])
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    twin.legend(handles, labels, fontsize=8, loc="best")
    ax.set_title("gradient interaction on the probe batch")
    fig.tight_layout()
    return fig


def transfer_figure(matrix: list[list[float | None]], names: list[str], step: int) -> Figure:
    """The 4×4 loss-transfer matrix: row = group trained one step, column = change of a group's loss."""
    import numpy as np

    values = np.array([[float("nan") if v is None else v for v in row] for row in matrix], dtype=float)
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:+.3f}", ha="center", va="center", fontsize=9)
    short = [n.replace("yet_to_learn", "ytl") for n in names]
    ax.set_xticks(range(len(names)), short, rotation=20, fontsize=8)
    ax.set_yticks(range(len(names)), short, fontsize=8)
    ax.set_xlabel("loss change on group (nats/token)")
    ax.set_ylabel("one step trained on group")
    ax.set_title(f"loss transfer at step {step}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def token_figure(report: dict[str, Any], rows: int = 12) -> Figure:
    """The most frequent anchor and yet-to-learn tokens at θ_b (bar length: occurrences in the group)."""
    fig = _figure(10, 4.5)
    axes = fig.subplots(1, 2)
    for ax, key, title, color in ((axes[0], "top_anchor_tokens", "anchor tokens", "C0"),
                                  (axes[1], "top_yet_to_learn_tokens", "yet-to-learn tokens", "C1")):
        top = report[key][:rows][::-1]
        ax.barh(range(len(top)), [t["count"] for t in top], color=color)
        ax.set_yticks(range(len(top)), [repr(t["token"]) for t in top], fontsize=8)
        ax.set_xlabel("occurrences")
        ax.set_title(f"most frequent {title} (θ_b = step {report['bottleneck_step']})")
    fig.tight_layout()
    return fig


def save_figures(report: dict[str, Any], output: Path) -> list[str]:
    """Write every figure of ``report`` as a PNG into ``output``; returns the file names."""
    figures = {
        "confidence.png": confidence_figure(report),
        "gradient_interaction.png": interaction_figure(report),
        "transfer_matrix.png": transfer_figure(report["transfer_matrix"], report["groups"],
                                               report["transfer_matrix_step"]),
        "tokens.png": token_figure(report),
    }
    for name, fig in figures.items():
        fig.savefig(output / name)
    return list(figures)
