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
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerFast

from t3s.toy.styles import (
    PLAIN_TEACHER_STYLE,
    SKILL_TEACHER_STYLE,
    STUDENT_STYLE,
    TEACHER_STYLE,
    StyleSpec,
    boxed,
    column_steps,
    scaffold_words,
)
from t3s.toy.task import PROMPT_WORD, Problem, sample_problems, spell_digits
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
        student_filler: fraction of the student traces whose connectives (opening, every column comment,
            closing words and answer prefix) are replaced by random *filler*: 1 to ``filler_length[1]``
            words drawn from the student's and the teacher's style words. The column steps and the
            answer digits are unchanged. This makes θ_0's reasoning robust to unfamiliar wording around
            it (reasoning tokens ≈ 0 nats inside teacher traces) while its greedy style stays the
            student's own; 0 (the default) writes every student trace in ``student_style``.
        filler_length: inclusive (min, max) words per filler phrase.
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
    student_filler: float = 0.0
    filler_length: tuple[int, int] = (1, 8)

    def __post_init__(self) -> None:
        if not 0.0 <= self.student_filler <= 1.0:
            raise ValueError(f"student_filler must be in [0, 1], got {self.student_filler}")
        low, high = self.filler_length
        if not 1 <= low <= high:
            raise ValueError(f"filler_length must be (min, max) with 1 <= min <= max, got {self.filler_length}")

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

    def filler_words(self) -> list[str]:
        """The pool filler phrases draw from: the style words of both styles (no digits), first-seen order."""
        words = [*self.teacher_style.words(), *self.student_style.words()]
        return [w for w in dict.fromkeys(words) if not w.isdigit()]

    def student_records(self, problems: Sequence[Problem]) -> list[dict[str, str]]:
        """Student trace records: ``student_style``, with a ``student_filler`` share in filler wording."""
        records = self.trace_records(problems, self.student_style, "student")
        if not self.student_filler:
            return records
        rng = random.Random(f"{self.seed}/filler")
        pool = self.filler_words()
        low, high = self.filler_length

        def filler() -> str:
            return " ".join(rng.choice(pool) for _ in range(rng.randint(low, high)))

        for record, problem in zip(records, problems):
            if rng.random() >= self.student_filler:
                continue
            parts = [filler()]
            for step in column_steps(problem):
                parts += [step.scaffold(), filler()]
            parts.append(f"{filler()} {spell_digits(problem.total)} .")
            record["reasoning"] = " ".join(parts)
            record["answer_text"] = f"{filler()} {boxed(problem.answer)}"
        return records

    def records(self) -> dict[str, list[dict[str, str]]]:
        """All records, keyed like the files: ``teacher_traces``, ``student_traces``, ``train_problems``,
        ``heldout`` (useful to build a larger world in memory without writing it)."""
        splits = self.problems()
        return {
            "teacher_traces": self.trace_records(splits["teacher"], self.teacher_style, "teacher"),
            "student_traces": self.student_records(splits["student"]),
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
        config = json.loads(json.dumps(dataclasses.asdict(self)))
        if not self.student_filler:  # worlds without filler keep the world.json they had before it existed
            del config["student_filler"], config["filler_length"]
        return config

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


#: What the ``tiny`` and ``toy`` worlds share: 3–4-digit teacher problems, 1–4-digit student pretraining.
_ADDITION: dict[str, Any] = dict(seed=0, teacher_digits=(3, 4), student_digits=(1, 4), heldout_digits=(3, 4),
                                 n_teacher_traces=256, n_heldout=128)

#: The world of the toy science search (issue 4): a robust θ_0 (70% of its pretraining traces wrap the
#: column steps in random filler) whose own style is coherent, and a teacher whose connectives carry no
#: computed content (so every digit of a teacher trace is reasoning, shared with the student).
_TOY = ToyWorld(
    **_ADDITION, n_student_traces=2000, teacher_style=PLAIN_TEACHER_STYLE,
    student_filler=0.7, filler_length=(1, 8),
)

#: The ``toy`` world scaled down for configs/toy-small.yaml and the test suite (see PRESETS).
_SMALL = dataclasses.replace(
    _TOY,
    teacher_digits=(2, 2), student_digits=(1, 2), heldout_digits=(2, 2),
    n_teacher_traces=128, n_student_traces=1024, n_heldout=64,
    student_filler=0.5, filler_length=(1, 3),
)

#: The world of configs/toy-skill.yaml (issue 23, docs/results/toy_skill.md): the teacher knows more.
#: θ_0 is pretrained on 1–2-digit problems (the small world's student side), the teacher traces and both
#: evaluation sets have 1–3-digit operands, so most problems need a third column θ_0 has never written:
#: a skill with low c(θ_0) that SFT learns slowly, under a teacher style it learns fast. 1024 teacher traces,
#: so that what SFT learns generalises to held-out problems rather than being memorised.
_SKILL = dataclasses.replace(
    _SMALL,
    teacher_digits=(1, 3),
    heldout_digits=(1, 3),
    n_teacher_traces=1024,  # with 128 (as ``small``), SFT memorised them: held-out fell from θ_0's 0.50 to 0.27
    n_heldout=128,
    teacher_style=SKILL_TEACHER_STYLE,
)

#: Named configurations. ``tiny`` is committed under ``configs/data/tiny``; its student-trace count is
#: capped to keep the committed files under 300 KB (``dataclasses.replace(world, n_student_traces=...)``
#: with ``records()`` gives more in memory, same teacher / held-out splits). ``small`` is ``toy`` scaled
#: down for configs/toy-small.yaml and the test suite: 2-digit problems and short filler, so a 2-layer θ_0
#: learns it in 300 steps and plain SFT still shows the whole shock within 40 steps. ``skill`` is the
#: ``toy-skill`` world (``_SKILL``).
PRESETS: dict[str, ToyWorld] = {
    "tiny": ToyWorld(**_ADDITION, n_student_traces=384),
    "toy": _TOY,
    "small": _SMALL,
    "skill": _SKILL,
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
