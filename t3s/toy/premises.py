"""Measure the paper's premises on a toy world: teacher-forced confidence by token kind, in both wordings.

For every teacher problem the reply is rendered in the teacher's wording and in the student's own wording;
each reasoning token gets a kind from the trace's construction:

* ``skill``: the column steps of the third column and beyond (``Hundreds : 4 + 5 + 1 = 1 0 ;`` …), the part
  a θ_0 pretrained on 1–2-digit problems has never written (``toy-skill``): ``skill digit`` its digits (operands,
  carry, sum), ``skill`` its column name and symbols;
* ``core``: the column steps of the first two columns;
* ``answer``: the answer digits of the closing sentence;
* ``style``: every other word of the wording (opening, column comments, closing, answer prefix).

:func:`confidence_table` gives, per model and wording, the mean teacher-forced log-probability c of each kind;
:func:`delta_table` the share of each kind with Δc = c(θ_b) − c(θ_0) > 0 (T3S's anchors) in the teacher wording.
``python -m t3s.toy.premises --world DIR --model theta_0=PATH --model theta_b=PATH …`` prints both.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t3s.toy.styles import StyleSpec, column_steps
from t3s.toy.task import Problem, spell_digits

KINDS = ("core", "skill", "skill digit", "answer", "style")


def labelled_words(problem: Problem, style: StyleSpec, skill_from: int = 2) -> list[tuple[str, str]]:
    """The reasoning of ``problem`` in ``style`` as (word, kind) pairs; columns ``>= skill_from`` are ``skill``."""
    words: list[tuple[str, str]] = [(w, "style") for w in style.opening.split()]
    for index, step in enumerate(column_steps(problem)):
        kind = "skill" if index >= skill_from else "core"
        words += [(w, f"{kind} digit" if kind == "skill" and w.isdigit() else kind) for w in step.scaffold().split()]
        comment = style.carry if step.carry_out else style.no_carry
        words += [(w, "style") for w in comment.format(digit=step.digit, carry=step.carry_out).split()]
    answer = spell_digits(problem.total)
    for word in style.closing.replace("{answer}", "\0").split():
        words += [(w, "answer") for w in answer.split()] if word == "\0" else [(word, "style")]
    return words


def _find(sequence: list[int], part: list[int]) -> int:
    for start in range(len(sequence) - len(part) + 1):
        if sequence[start : start + len(part)] == part:
            return start
    raise ValueError("reasoning tokens not found in the rendered trace")


def token_confidences(model: Any, tokenizer: Any, problem: Problem, style: StyleSpec) -> list[tuple[str, float]]:
    """(kind, c) for every reasoning token of ``problem`` in ``style``, teacher-forced under ``model``."""
    import torch

    words = labelled_words(problem, style)
    reasoning, answer_text = style.render(problem)
    messages = [{"role": "user", "content": problem.prompt},
                {"role": "assistant", "content": answer_text, "reasoning_content": reasoning}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    part = list(tokenizer(reasoning, add_special_tokens=False)["input_ids"])
    if len(part) != len(words):
        raise ValueError(f"{len(part)} tokens for {len(words)} words: the toy tokenizer is one token per word")
    start = _find(ids, part)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [(kind, float(logp[start + i - 1, ids[start + i]])) for i, (_, kind) in enumerate(words)]


def measure(world_dir: str | Path, models: dict[str, str | Path], limit: int | None = None) -> dict[str, Any]:
    """Per model and wording: the per-token (kind, c) lists of the world's teacher problems."""
    from transformers import AutoModelForCausalLM, AutoTokenizer


    world_dir = Path(world_dir)
    config = json.loads((world_dir / "world.json").read_text())
    world = _world_from_config(config)
    problems = world.problems()["teacher"][:limit]
    tokenizer = AutoTokenizer.from_pretrained(str(world_dir / "tokenizer"))
    out: dict[str, Any] = {}
    for name, path in models.items():
        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        out[name] = {label: [token_confidences(model, tokenizer, p, style) for p in problems]
                     for label, style in (("teacher", world.teacher_style), ("student", world.student_style))}
    return out


def _world_from_config(config: dict[str, Any]) -> Any:
    from t3s.toy.world import ToyWorld

    styles = {k: StyleSpec(**config[k]) for k in ("teacher_style", "student_style")}
    tuples = {k: tuple(config[k]) for k in ("teacher_digits", "student_digits", "heldout_digits", "filler_length")
              if k in config}
    rest = {k: v for k, v in config.items() if k not in styles and k not in tuples}
    return ToyWorld(**rest, **tuples, **styles)


def confidence_table(measured: dict[str, Any]) -> list[str]:
    """Markdown: mean c per kind, per model and wording."""
    lines = ["| model | wording | " + " | ".join(f"c({k})" for k in KINDS) + " |", "|---|---|" + "---|" * len(KINDS)]
    for name, wordings in measured.items():
        for wording, traces in wordings.items():
            cells = []
            for kind in KINDS:
                values = [c for trace in traces for k, c in trace if k == kind]
                cells.append(f"{statistics.mean(values):+.3f}" if values else "—")
            lines.append(f"| {name} | {wording} | " + " | ".join(cells) + " |")
    return lines


def delta_table(measured: dict[str, Any], base: str, bottleneck: str, wording: str = "teacher") -> list[str]:
    """Markdown: per kind, mean Δc = c(bottleneck) − c(base) and the share of tokens with Δc > 0 (anchors)."""
    lines = ["| kind | tokens | mean Δc | share Δc > 0 (anchors) |", "|---|---|---|---|"]
    before, after = measured[base][wording], measured[bottleneck][wording]
    for kind in KINDS:
        deltas = [b - a for t0, tb in zip(before, after) for (k, a), (_, b) in zip(t0, tb) if k == kind]
        if deltas:
            share = sum(d > 0 for d in deltas) / len(deltas)
            lines.append(f"| {kind} | {len(deltas)} | {statistics.mean(deltas):+.3f} | {share:.3f} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m t3s.toy.premises``."""
    parser = argparse.ArgumentParser(prog="python -m t3s.toy.premises", description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="a written toy world folder (world.json, tokenizer/)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="an HF model folder; the first is θ_0, the second θ_b (Δc table)")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N teacher problems")
    args = parser.parse_args(argv)
    models = dict(item.split("=", 1) for item in args.model)
    measured = measure(args.world, models, args.limit)
    print("\n".join(confidence_table(measured)))
    names = list(models)
    if len(names) >= 2:
        print()
        print("\n".join(delta_table(measured, names[0], names[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
