"""A loaded benchmark task: its items, per-sample option orders, prompt rendering and grading."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from t3s.data.text import format_options, split_reasoning
from t3s.evals.grading.graders import MC_LETTERS, grade
from t3s.evals.grading.verdict import Verdict
from t3s.evals.tasks.rows import iter_task_rows, make_item
from t3s.evals.tasks.spec import ChoiceOrder, EvalItem, TaskError, TaskFields, TaskSpec
from t3s.runtime.seeds import stable_seed

__all__ = ["EvalTask", "prompt_opens_think"]


def prompt_opens_think(prompt_text: str) -> bool:
    """True when a rendered prompt ends inside an open reasoning block (the chat template opened it)."""
    return not split_reasoning(prompt_text).closed


class EvalTask:
    """A loaded task: items, per-sample option orders, prompt rendering and grading."""

    def __init__(self, spec: TaskSpec, items: Sequence[EvalItem] | None = None) -> None:
        self.spec = spec
        self._items: list[EvalItem] | None = list(items) if items is not None else None
        if self._items is not None:
            self._check_items(self._items)

    @property
    def name(self) -> str:
        """Task name."""
        return self.spec.name

    @property
    def multiple_choice(self) -> bool:
        """True when items carry options (graded by letter)."""
        if self.spec.fields.multiple_choice:
            return True
        return self._items is not None and any(it.choices for it in self._items)

    @classmethod
    def from_items(
        cls,
        name: str,
        items: Iterable[EvalItem | Mapping[str, Any]],
        grader: str = "math",
        **spec_kwargs: Any,
    ) -> EvalTask:
        """Build a task in code, e.g. "training accuracy" on the training problems themselves.

        ``items`` are :class:`EvalItem` or mappings with ``prompt`` (or ``problem``), ``gold`` (or
        ``answer``), optional ``id`` and ``choices`` (gold then a letter, an index or the option text).
        ``spec_kwargs`` are further :class:`TaskSpec` fields (sampling, instruction, ...).
        """
        spec = TaskSpec(name=name, grader=grader, **spec_kwargs)
        built: list[EvalItem] = []
        for i, it in enumerate(items):
            if isinstance(it, EvalItem):
                built.append(it)
                continue
            where = f"{name} item {i}"
            row = dict(it)
            fields = TaskFields(
                id="id" if row.get("id") is not None else None,
                problem="prompt" if "prompt" in row else "problem",
                answer="gold" if "gold" in row else "answer",
                choices="choices" if row.get("choices") is not None else None,
            )
            built.append(make_item(fields, row, where, default_id=f"{name}-{i}"))
        if spec.limit is not None:
            built = built[: spec.limit]
        return cls(spec, built)

    def items(self) -> list[EvalItem]:
        """The task's items (loaded once; ``limit`` applied)."""
        if self._items is None:
            self._items = self._load()
            self._check_items(self._items)
        return self._items

    def __len__(self) -> int:
        return len(self.items())

    def _load(self) -> list[EvalItem]:
        spec = self.spec
        items = []
        for i, (where, row) in enumerate(iter_task_rows(spec)):
            if spec.limit is not None and i >= spec.limit:
                break
            items.append(make_item(spec.fields, row, where, default_id=f"{spec.name}-{i}"))
        if not items:
            raise TaskError(f"task {spec.name!r}: dataset {spec.dataset!r} has no rows")
        return items

    def _check_items(self, items: Sequence[EvalItem]) -> None:
        seen: dict[str, str] = {}
        for it in items:
            if it.id in seen:
                raise TaskError(f"{it.source}: duplicate item id {it.id!r} (first at {seen[it.id]})")
            seen[it.id] = it.source

    # -- options ---------------------------------------------------------------------------------
    def choice_order(self, item: EvalItem, sample_index: int = 0) -> ChoiceOrder | None:
        """Option order for one (item, sample); None for open questions."""
        if not item.choices:
            return None
        assert item.gold_index is not None, f"{item.source}: multiple-choice item without gold_index"
        seed = stable_seed("t3s-choices", self.spec.seed, item.id, sample_index)
        order = list(range(len(item.choices)))
        if self.spec.shuffle_choices:
            random.Random(seed).shuffle(order)
        gold_letter = MC_LETTERS[order.index(item.gold_index)]
        return ChoiceOrder(seed=seed, order=tuple(order), gold_letter=gold_letter)

    # -- prompts ---------------------------------------------------------------------------------
    def user_message(self, item: EvalItem, sample_index: int = 0) -> tuple[str, str]:
        """The user turn for one (item, sample) and the gold answer for that sample."""
        order = self.choice_order(item, sample_index)
        if order is None:
            block, gold = "", item.gold
        else:
            assert item.choices is not None
            block = format_options([item.choices[o] for o in order.order])
            gold = order.gold_letter
        instruction = self.spec.instruction or ""
        if self.spec.prompt_template is not None:
            text = self.spec.prompt_template.format(
                problem=item.prompt, choices=block, instruction=instruction
            )
        else:
            text = "\n\n".join(part for part in (item.prompt, block, instruction) if part)
        return text, gold

    def messages(self, item: EvalItem, sample_index: int = 0) -> tuple[list[dict[str, str]], str]:
        """Chat messages (optional system turn + user turn) and the gold for this sample."""
        text, gold = self.user_message(item, sample_index)
        msgs = []
        if self.spec.system_prompt:
            msgs.append({"role": "system", "content": self.spec.system_prompt})
        msgs.append({"role": "user", "content": text})
        return msgs, gold

    def render_prompt_text(self, tokenizer: Any, item: EvalItem, sample_index: int = 0) -> tuple[str, str]:
        """The prompt string given to the model (chat template applied) and the gold for this sample."""
        msgs, gold = self.messages(item, sample_index)
        if not self.spec.use_chat_template:
            return "\n\n".join(m["content"] for m in msgs), gold
        if getattr(tokenizer, "chat_template", None) is None:
            raise TaskError(
                f"task {self.name!r}: the tokenizer has no chat template; set use_chat_template: false"
            )
        kwargs: dict[str, Any] = {}
        if self.spec.enable_thinking is not None:
            kwargs["enable_thinking"] = bool(self.spec.enable_thinking)
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
        return text, gold

    def render_prompt(self, tokenizer: Any, item: EvalItem, sample_index: int = 0) -> tuple[list[int], str]:
        """Token ids of the prompt for one (item, sample) and the gold answer for that sample."""
        text, gold = self.render_prompt_text(tokenizer, item, sample_index)
        return self.encode_prompt(tokenizer, text), gold

    def encode_prompt(self, tokenizer: Any, text: str) -> list[int]:
        """Tokenize a prompt from :meth:`render_prompt_text` (no extra special tokens after a chat
        template, which already holds them)."""
        return list(tokenizer(text, add_special_tokens=not self.spec.use_chat_template)["input_ids"])

    # -- grading ---------------------------------------------------------------------------------
    def grade(self, response: str, gold: str, **kw: Any) -> Verdict:
        """Grade one response against the gold of its sample with the task's grader (a grader failure on the
        response is graded wrong and logged, see :func:`t3s.evals.grading.graders.grade`)."""
        return grade(self.spec.grader, response, gold, **{**self.spec.grader_kwargs, **kw})
