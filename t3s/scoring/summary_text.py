"""The anchor-token summary of a score cache as Markdown (standard library only: reports need no torch)."""

from __future__ import annotations

from typing import Any

__all__ = ["summary_markdown", "token_cell"]


def token_cell(token: str) -> str:
    """A token as a code span that stays in its table cell: ``|`` escaped (``<|im_end|>`` would split the row),
    line breaks and tabs shown as ``\\n`` / ``\\t``, and a longer fence around a token holding a backtick."""
    text = token.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
        lines.append(f"| {token_cell(a['token'])} | {a['count']} | {a['share_of_occurrences']:.2f} "
                     f"| {token_cell(o['token'])} | {o['count']} | {o['share_of_occurrences']:.2f} |")
    return "\n".join(lines)
