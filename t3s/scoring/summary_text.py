"""The anchor-token summary of a score cache as Markdown (standard library only: reports need no torch)."""

from __future__ import annotations

from typing import Any

__all__ = ["summary_markdown"]


def summary_markdown(summary: dict[str, Any], rows: int = 15) -> str:
    """The anchor / yet-to-learn token summary as a Markdown table (TensorBoard text panel, reports)."""
    lines = [
        f"anchor fraction {summary['anchor_fraction']:.3f}, mean Δc {summary['mean_delta']:+.3f} over "
        f"{summary['num_tokens']} tokens (θ_0 = `{summary.get('base')}`, θ_b = `{summary.get('bottleneck')}`)",
        "",
        f"| anchor token (Δc>{summary.get('anchor_threshold', 0.0):g}) | count | share | yet-to-learn token | count "
        "| share |",
        "|---|---|---|---|---|---|",
    ]
    for a, o in zip(summary["top_anchor_tokens"][:rows], summary["top_yet_to_learn_tokens"][:rows]):
        lines.append(f"| `{a['token']}` | {a['count']} | {a['share_of_occurrences']:.2f} | `{o['token']}` "
                     f"| {o['count']} | {o['share_of_occurrences']:.2f} |")
    return "\n".join(lines)
