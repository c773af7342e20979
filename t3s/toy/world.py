"""The toy world: tokenizer, teacher / student traces and evaluation items, written to one folder.

``python -m t3s.toy.world --preset tiny --output configs/data/tiny`` regenerates the committed tiny
world. Files written by :meth:`ToyWorld.write`:

* ``tokenizer/``: the word-level tokenizer (``AutoTokenizer.from_pretrained`` loads it);
* ``teacher_traces.jsonl``: distillation traces in the teacher's style (fields id, prompt, reasoning,
  answer_text, answer: the default trace JSONL preset);
* ``student_traces.jsonl``: traces in the student's own style, for pretraining θ_0 (same fields);
* ``train_problems.jsonl``: the teacher traces' problems as evaluation items (id, prompt, answer);
* ``heldout.jsonl``: held-out evaluation items (id, prompt, answer);
* ``world.json``: the generating configuration.

Teacher, held-out and student problems are mutually disjoint, also up to swapping the operands.
Output is byte-identical for equal configurations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerFast

from t3s.toy.styles import STUDENT_STYLE, TEACHER_STYLE, StyleSpec, scaffold_words
from t3s.toy.task import PROMPT_WORD, Problem, sample_problems
from t3s.toy.tokenizer import build_tokenizer

TOKENIZER_DIR = "tokenizer"
TEACHER_TRACES = "teacher_traces.jsonl"
STUDENT_TRACES = "student_traces.jsonl"
TRAIN_PROBLEMS = "train_problems.jsonl"
HELDOUT = "heldout.jsonl"
WORLD_JSON = "world.json"


def _with_swapped(problems: Iterable[Problem]) -> set[Problem]:
    """``problems`` together with their operand-swapped twins."""
    out: set[Problem] = set()
    for p in problems:
        out.add(p)
        out.add(Problem(p.b, p.a))
    return out


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    lines = [json.dumps(record, ensure_ascii=False, separators=(",", ":")) for record in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@dataclass(frozen=True)
class ToyWorld:
    """Configuration of a toy world; :meth:`write` materialises it.

    Attributes:
        seed: master seed; each split draws from its own stream derived from it.
        teacher_digits: inclusive (min, max) operand digit counts of the teacher-trace problems (these
            are also the train evaluation items).
        student_digits: operand digit counts of the student-style pretraining problems.
        heldout_digits: operand digit counts of the held-out evaluation problems.
        n_teacher_traces: number of teacher traces (= train evaluation items).
        n_student_traces: number of student-style traces.
        n_heldout: number of held-out evaluation items.
        teacher_style: wording of the teacher traces.
        student_style: wording of the student traces.
    """

    seed: int = 0
    teacher_digits: tuple[int, int] = (3, 4)
    student_digits: tuple[int, int] = (1, 4)
    heldout_digits: tuple[int, int] = (3, 4)
    n_teacher_traces: int = 256
    n_student_traces: int = 1024
    n_heldout: int = 128
    teacher_style: StyleSpec = field(default=TEACHER_STYLE)
    student_style: StyleSpec = field(default=STUDENT_STYLE)

    @classmethod
    def from_preset(cls, name: str) -> ToyWorld:
        """The named preset from :data:`PRESETS`."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown toy world preset {name!r}; known: {sorted(PRESETS)}") from None

    # ----------------------------------------------------------------------------------- problems
    def problems(self) -> dict[str, list[Problem]]:
        """The problems of each split: ``{"teacher": ..., "heldout": ..., "student": ...}``.

        Drawn in that order, each split excluding the earlier ones (and their operand swaps).
        """
        teacher = sample_problems(self.n_teacher_traces, self.teacher_digits, seed=f"{self.seed}/teacher")
        heldout = sample_problems(
            self.n_heldout, self.heldout_digits, seed=f"{self.seed}/heldout", exclude=_with_swapped(teacher)
        )
        student = sample_problems(
            self.n_student_traces,
            self.student_digits,
            seed=f"{self.seed}/student",
            exclude=_with_swapped([*teacher, *heldout]),
        )
        return {"teacher": teacher, "heldout": heldout, "student": student}

    # ------------------------------------------------------------------------------------ records
    @staticmethod
    def trace_records(problems: Sequence[Problem], style: StyleSpec, prefix: str) -> list[dict[str, str]]:
        """Trace JSONL records (id, prompt, reasoning, answer_text, answer) of ``problems`` in ``style``."""
        records = []
        for index, problem in enumerate(problems):
            reasoning, answer_text = style.render(problem)
            records.append(
                {
                    "id": f"{prefix}-{index:04d}",
                    "prompt": problem.prompt,
                    "reasoning": reasoning,
                    "answer_text": answer_text,
                    "answer": problem.answer,
                }
            )
        return records

    @staticmethod
    def eval_records(problems: Sequence[Problem], prefix: str) -> list[dict[str, str]]:
        """Evaluation item records (id, prompt, answer) of ``problems``."""
        return [
            {"id": f"{prefix}-{index:04d}", "prompt": problem.prompt, "answer": problem.answer}
            for index, problem in enumerate(problems)
        ]

    def records(self) -> dict[str, list[dict[str, str]]]:
        """All records, keyed like the files: ``teacher_traces``, ``student_traces``, ``train_problems``,
        ``heldout`` (useful to build a larger world in memory without writing it)."""
        splits = self.problems()
        return {
            "teacher_traces": self.trace_records(splits["teacher"], self.teacher_style, "teacher"),
            "student_traces": self.trace_records(splits["student"], self.student_style, "student"),
            "train_problems": self.eval_records(splits["teacher"], "teacher"),
            "heldout": self.eval_records(splits["heldout"], "heldout"),
        }

    def vocabulary_words(self) -> list[str]:
        """Non-base vocabulary words, in id order: column names, the prompt word, student then teacher words."""
        words = [*scaffold_words(), PROMPT_WORD, *self.student_style.words(), *self.teacher_style.words()]
        return list(dict.fromkeys(words))

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The world's word-level tokenizer (see :func:`t3s.toy.tokenizer.build_tokenizer`)."""
        return build_tokenizer(self.vocabulary_words())

    def config(self) -> dict[str, Any]:
        """The configuration as JSON-ready data (what ``world.json`` holds)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    # -------------------------------------------------------------------------------------- write
    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the world into ``out_dir`` (created if needed; existing files are overwritten).

        Returns:
            Paths keyed ``tokenizer``, ``teacher_traces``, ``student_traces``, ``train_problems``,
            ``heldout`` and ``world``.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "tokenizer": out / TOKENIZER_DIR,
            "teacher_traces": out / TEACHER_TRACES,
            "student_traces": out / STUDENT_TRACES,
            "train_problems": out / TRAIN_PROBLEMS,
            "heldout": out / HELDOUT,
            "world": out / WORLD_JSON,
        }
        self.tokenizer().save_pretrained(str(paths["tokenizer"]))
        for name, records in self.records().items():
            _write_jsonl(paths[name], records)
        paths["world"].write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        return paths


#: Named configurations. ``tiny`` is committed under ``configs/data/tiny``; its student-trace count is
#: capped to keep the committed files under 300 KB (``dataclasses.replace(world, n_student_traces=...)``
#: with ``records()`` gives more in memory, same teacher / held-out splits).
PRESETS: dict[str, ToyWorld] = {
    "tiny": ToyWorld(
        seed=0,
        teacher_digits=(3, 4),
        student_digits=(1, 4),
        heldout_digits=(3, 4),
        n_teacher_traces=256,
        n_student_traces=384,
        n_heldout=128,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m t3s.toy.world``."""
    parser = argparse.ArgumentParser(prog="python -m t3s.toy.world", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="world configuration")
    parser.add_argument("--output", required=True, type=Path, help="folder to write the world into")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    args = parser.parse_args(argv)
    world = ToyWorld.from_preset(args.preset)
    if args.seed is not None:
        world = dataclasses.replace(world, seed=args.seed)
    paths = world.write(args.output)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
