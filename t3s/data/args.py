"""The grouped constructor arguments of ``TeacherTraceDataModule`` (``data.<group>.<key>``).

What is trained on and the size of a step stay flat (``path``, ``tokenizer``, ``sources``, ``val_path``,
``limit``, ``seed``, ``max_length``, ``global_batch_size``: the keys every config and command line sets); the
rest is in three groups::

    data:
      path: traces.jsonl
      tokenizer: Qwen/Qwen3-1.7B
      max_length: 4096
      global_batch_size: 64
      layout: {preset: openr1, split: train}
      batching: {micro_batch_size: 4, packing: true}
      template: {enable_thinking: true, chat_template: chatml}

The flat spellings of one release ago (``data.packing``) are read too (:data:`DATA_FLAT_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from t3s.data.fields import FIELD_PRESETS
from t3s.data.schema import TraceDataError


@dataclass
class LayoutArgs:
    """How the records of ``data.path`` are read (``data.layout``; a ``data.sources`` entry takes the same keys).

    Attributes:
        preset: field-mapping preset, one of ``FIELD_PRESETS``: default, messages, prompt_completion,
            sharegpt (= conversations), s1k-1.0, s1k-1.1 (= s1k), openthoughts, openr1, alpaca, r1_mc.
        fields: column-name overrides on top of the preset (``{"reasoning": "thinking"}``); overridden keys
            become required.
        split: split of a Hugging Face or ``save_to_disk`` dataset (in a folder: the files naming it, if any).
        subset: configuration (subset) of a Hugging Face dataset.
        revision: revision (branch, tag, commit) of a Hugging Face dataset.
    """

    preset: str = "default"
    fields: dict[str, str] | None = None
    split: str = "train"
    subset: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in FIELD_PRESETS:
            raise TraceDataError(f"unknown preset {self.preset!r} (data.layout.preset); known: "
                                 f"{', '.join(FIELD_PRESETS)}")


@dataclass
class BatchingArgs:
    """How traces become rows, micro-batches and loader items (``data.batching``).

    Attributes:
        micro_batch_size: rows per forward pass per device.
        packing: pack several traces per row (first-fit-decreasing); else one trace per row.
        overlong: ``"drop"`` traces longer than ``max_length`` (counted and logged) or ``"truncate"`` them.
        num_workers: DataLoader worker processes building step batches.
    """

    micro_batch_size: int = 1
    packing: bool = True
    overlong: Literal["drop", "truncate"] = "drop"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.micro_batch_size < 1:
            raise TraceDataError(f"data.batching.micro_batch_size must be positive, got {self.micro_batch_size}")
        if self.overlong not in ("drop", "truncate"):
            raise TraceDataError(f"data.batching.overlong must be 'drop' or 'truncate', got {self.overlong!r}")
        if self.num_workers < 0:
            raise TraceDataError(f"data.batching.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TemplateArgs:
    """How a record is rendered with the student's chat template (``data.template``).

    Attributes:
        system_prompt: system turn given to records that carry none.
        enable_thinking: the thinking switch: train the thinking form (``<think>reasoning</think>answer``);
            False trains the template's non-thinking form on the answer alone. Passed to the chat template as
            ``enable_thinking`` (Qwen3's switch; templates without one ignore it).
        chat_template: the template to render with instead of the tokenizer's own: a Jinja file, the name of
            one of the tokenizer's templates, ``chatml`` (built in, for base models), or Jinja text. The
            student's tokenizer gets it too, so evaluations and exported ``hf/`` folders use it.
        chat_template_kwargs: further variables for the template (e.g. ``{reasoning_effort: high}``).
    """

    system_prompt: str | None = None
    enable_thinking: bool = True
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.chat_template_kwargs = dict(self.chat_template_kwargs or {})


#: The flat keys of one release ago (``data.<key>``) and where they live now.
DATA_FLAT_KEYS: dict[str, str] = {
    **{k: f"layout.{k}" for k in ("preset", "fields", "split", "subset", "revision")},
    **{k: f"batching.{k}" for k in ("micro_batch_size", "packing", "overlong", "num_workers")},
    **{k: f"template.{k}" for k in ("system_prompt", "enable_thinking", "chat_template", "chat_template_kwargs")},
}
