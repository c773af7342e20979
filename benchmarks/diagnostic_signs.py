"""Which of the paper's mechanism signs hold in finished `t3s diagnose` runs: one Markdown row per run.

    python benchmarks/diagnostic_signs.py RUN/sft/diagnostics/diagnostics.json ... [--json OUT]

The five signs (Shen et al., 2026), read from each run's ``diagnostics.json``:

1. anchors' mean confidence rises at every diagnosed checkpoint;
2. yet-to-learn tokens dip below their θ_0 confidence by θ_b and recover after it (partly: above the θ_b
   value at the end; fully: back to θ_0); also the share of them still below their own θ_0 value at the end;
3. the anchor/other gradient-norm ratio is > 1 at θ_0 and smaller at θ_b;
4. the two gradients point against each other in the crash: the lowest cosine over checkpoints 0…θ_b is
   clearly negative (< −0.1; the paper reports −0.4…−0.5);
5. one optimizer step on anchors only raises the other tokens' loss (at θ_0 and at θ_b).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: A cosine below this counts as the two gradients pointing against each other (noise sits around ±0.05).
NEGATIVE_COSINE = -0.1


def signs(report: dict[str, Any]) -> dict[str, Any]:
    """The five signs of one diagnostics report, with the numbers behind each."""
    steps = sorted(report["steps"], key=lambda s: s["step"])
    at = {s["step"]: s for s in steps}
    first, last, bottleneck = steps[0], steps[-1], at[report["bottleneck_step"]]
    anchor = [s["confidence"]["anchor"]["mean"] for s in steps]
    other = [s["confidence"]["yet_to_learn"]["mean"] for s in steps]
    crash = [s["grad_cosine"] for s in steps if s["step"] <= report["bottleneck_step"] and s["grad_cosine"] is not None]
    b_other = bottleneck["confidence"]["yet_to_learn"]["mean"]
    return {
        "run": report["run"],
        "bottleneck_step": report["bottleneck_step"],
        "accuracy": [first["train_accuracy"], bottleneck["train_accuracy"], last["train_accuracy"]],
        "anchor_rises": all(b > a for a, b in zip(anchor, anchor[1:])),
        "anchor_confidence": [anchor[0], anchor[-1]],
        "other_confidence": [other[0], b_other, other[-1]],
        "other_dips": b_other < other[0],
        "other_recovers_partly": other[-1] > b_other,
        "other_recovers_fully": other[-1] >= other[0],
        "other_below_base_at_end": last["confidence"]["yet_to_learn"]["below_base"],
        "ratio": [first["grad_norm_ratio"], bottleneck["grad_norm_ratio"]],
        "ratio_shrinks": first["grad_norm_ratio"] > 1 and bottleneck["grad_norm_ratio"] < first["grad_norm_ratio"],
        "min_cosine_in_crash": min(crash) if crash else None,
        "negative_cosine": bool(crash) and min(crash) < NEGATIVE_COSINE,
        "anchor_step_raises_others": [first["intervention"]["anchor"]["yet_to_learn"],
                                      bottleneck["intervention"]["anchor"]["yet_to_learn"]],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per run; ✓/✗ per sign with its numbers."""
    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    lines = [
        "| run | θ_b | train acc θ_0 / θ_b / end | anchors rise | yet-to-learn θ_0 / θ_b / end (below θ_0 at end) "
        "| ‖g_a‖/‖g_o‖ θ_0 → θ_b | min cos, 0…θ_b | anchor step: Δ others' loss at θ_0 / θ_b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = " / ".join(f"{a:.2f}" for a in r["accuracy"])
        anc = f"{mark(r['anchor_rises'])} {r['anchor_confidence'][0]:.2f} → {r['anchor_confidence'][1]:.2f}"
        o = r["other_confidence"]
        dip = f"{mark(r['other_dips'] and r['other_recovers_partly'])} {o[0]:.3f} / {o[1]:.3f} / {o[2]:.3f} " \
              f"({r['other_below_base_at_end']:.0%})"
        ratio = f"{mark(r['ratio_shrinks'])} {r['ratio'][0]:.2f} → {r['ratio'][1]:.2f}"
        cos = r["min_cosine_in_crash"]
        cos_text = f"{mark(r['negative_cosine'])} {cos:+.3f}" if cos is not None else "—"
        step = r["anchor_step_raises_others"]
        raises = f"{mark(step[0] > 0)} {step[0]:+.3f} / {step[1]:+.3f}"
        lines.append(f"| {r['run']} | {r['bottleneck_step']} | {acc} | {anc} | {dip} | {ratio} | {cos_text} "
                     f"| {raises} |")
    return "\n".join(lines)


def step_table(report: dict[str, Any]) -> str:
    """Per diagnosed step of one run: accuracy, group confidences, gradient interaction, anchor-only step."""
    lines = [
        "| step | train acc | c anchor | c yet-to-learn | yet-to-learn below θ_0 | ‖g_a‖/‖g_o‖ | cos "
        "| anchor step: Δ anchor / Δ others |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(report["steps"], key=lambda s: s["step"]):
        conf, step = s["confidence"], s["intervention"]["anchor"]
        lines.append(
            f"| {s['step']} | {s['train_accuracy']:.3f} | {conf['anchor']['mean']:.3f} | "
            f"{conf['yet_to_learn']['mean']:.3f} | {conf['yet_to_learn']['below_base']:.2f} | "
            f"{s['grad_norm_ratio']:.2f} | {s['grad_cosine']:+.2f} | "
            f"{step['anchor']:+.3f} / {step['yet_to_learn']:+.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="diagnostics.json files")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("--steps", action="store_true", help="also print the first report's per-step table")
    args = parser.parse_args()
    reports = [json.loads(path.read_text()) for path in args.reports]
    rows = [signs(report) for report in reports]
    print(markdown(rows))
    if args.steps:
        print()
        print(step_table(reports[0]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
