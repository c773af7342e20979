"""``TeacherTraceDataModule``: teacher traces in, step batches out."""

from __future__ import annotations

import copy
import hashlib
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from t3s.arg_groups import as_group, group_dict, nest_flat_keys, note_flat_keys
from t3s.data.args import DATA_FLAT_KEYS, BatchingArgs, LayoutArgs, TemplateArgs
from t3s.data.fields import FIELD_PRESETS
from t3s.data.packing import collate_rows, next_fit
from t3s.data.records import load_records
from t3s.data.render import show_trace, tokenize_trace, use_chat_template
from t3s.data.schema import LoadStats, TokenizedTrace, TraceDataError, TraceRecord
from t3s.data.sources import TraceSource, parse_sources
from t3s.data.steps import StepDataLoader, StepDataset, StepSampler, TraceSchedule, _identity

__all__ = ["ScoringBatches", "TeacherTraceDataModule"]

log = logging.getLogger(__name__)


class ScoringBatches:
    """Micro-batches covering every trace exactly once, in index order (rows filled in order, not sorted)."""

    def __init__(
        self,
        traces: list[TokenizedTrace],
        *,
        micro_batch_size: int,
        max_length: int,
        packing: bool,
        pad_id: int,
    ) -> None:
        self.traces, self.pad_id = traces, pad_id
        rows = (
            next_fit([len(t) for t in traces], max_length) if packing else [[i] for i in range(len(traces))]
        )
        self.groups = [rows[i : i + micro_batch_size] for i in range(0, len(rows), micro_batch_size)]

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for group in self.groups:
            yield collate_rows([[self.traces[i] for i in row] for row in group], self.pad_id)


#: The argument groups of the data module: ``data.<key>`` → its dataclass.
GROUPS = {"layout": LayoutArgs, "batching": BatchingArgs, "template": TemplateArgs}


def data_groups(**given: Any) -> dict[str, Any]:
    """The three argument groups from what the constructor got, flat keys of one release ago included."""
    nested, moved = nest_flat_keys(given, DATA_FLAT_KEYS, "data")
    unknown = sorted(set(nested) - set(GROUPS))
    if unknown:
        raise TypeError(f"TeacherTraceDataModule.__init__() got an unexpected keyword argument {unknown[0]!r}")
    note_flat_keys(moved, DATA_FLAT_KEYS, "data")
    try:
        return {key: as_group(nested[key], cls, f"data.{key}") for key, cls in GROUPS.items()}
    except TraceDataError:
        raise
    except (TypeError, ValueError) as err:  # an unknown key in a group, a group that is not a mapping
        raise TraceDataError(str(err)) from None


def load_tokenizer(source: str) -> Any:
    """``AutoTokenizer.from_pretrained(source)``; a missing, empty or corrupt tokenizer is one line
    (:class:`TraceDataError` naming ``data.tokenizer``), not a loader traceback."""
    from transformers import AutoTokenizer

    path = Path(source).expanduser()
    if path.exists() and not (path.is_dir() and any(path.glob("tokenizer*"))):
        raise TraceDataError(f"{source}: not a tokenizer folder (no tokenizer.json / tokenizer_config.json) "
                             "(data.tokenizer)")
    if not path.exists() and (source.startswith(("/", ".", "~")) or source.count("/") > 1):
        raise TraceDataError(f"{source}: no such tokenizer folder (data.tokenizer)")
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:  # json.JSONDecodeError is a ValueError
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TraceDataError(f"{source}: cannot load the tokenizer ({reason}) (data.tokenizer)") from None


class TeacherTraceDataModule(LightningDataModule):
    """Teacher reasoning traces rendered with the student's chat template, packed into optimizer steps.

    Args:
        path: A local .jsonl / .json / .csv / .parquet file, a folder of them, a ``datasets.save_to_disk``
            folder, or a Hugging Face dataset id. Required unless ``sources`` is given; a config may leave it
            null (``qwen3-boba200``) for the command line to fill in.
        tokenizer: Hub id or local path of the student's tokenizer (loaded with ``AutoTokenizer``).
        sources: Several sources mixed into one training set instead of ``path``: a list of paths or of
            ``{path, preset, fields, split, subset, revision, limit}`` mappings (unset keys default to this
            module's ``layout``, ``limit`` to none). See :mod:`t3s.data.sources` for the mixing rule.
        limit: Keep a reproducible random subset of this many records (drawn with ``seed``); with ``sources``,
            of the mixed set.
        seed: Seeds the subset and the per-epoch trace permutations.
        max_length: Most tokens per trace and per packed row.
        global_batch_size: Traces per optimizer step across all ranks, whatever the packing.
        val_path: Held-out traces (same layout) for a teacher-forced validation loss during ``fit``;
            ``validate`` / ``test`` fall back to the training traces when unset.
        layout: How ``path`` is read: preset, fields, split, subset, revision (:class:`~t3s.data.args.LayoutArgs`).
        batching: Micro-batches, packing, overlong traces, loader workers (:class:`~t3s.data.args.BatchingArgs`).
        template: System prompt, thinking switch, chat template (:class:`~t3s.data.args.TemplateArgs`).
        **flat: The flat keys of one release ago (``packing``, ``preset``, …: :data:`~t3s.data.args.DATA_FLAT_KEYS`),
            moved into their group with a one-line note.

    Each group's keys are also attributes of the module (``dm.packing``, ``dm.preset``, ``dm.chat_template``).

    The train dataloader yields one *step batch* per optimizer step,
    ``{"micro_batches": [micro_batch, ...], "num_traces": B / W, "num_tokens": int, "step": int}``, and resumes
    exactly from ``trainer.global_step`` (see :class:`~t3s.data.steps.StepSampler`).
    """

    def __init__(
        self,
        path: str | None,
        tokenizer: str,
        sources: list[str | dict[str, Any]] | None = None,
        limit: int | None = None,
        seed: int = 0,
        max_length: int = 4096,
        global_batch_size: int = 64,
        val_path: str | None = None,
        layout: LayoutArgs = LayoutArgs(),  # noqa: B008 (copied, never shared: as_group)
        batching: BatchingArgs = BatchingArgs(),  # noqa: B008 (copied, never shared: as_group)
        template: TemplateArgs = TemplateArgs(),  # noqa: B008 (copied, never shared: as_group)
        **flat: Any,
    ) -> None:
        super().__init__()
        if path and sources:
            raise TraceDataError("give data.path or data.sources, not both (--data.path null to use the sources)")
        if not path and not sources:
            raise TraceDataError("data.path is not set: name the teacher traces, a .jsonl/.json/.parquet file or "
                                 "a Hugging Face dataset id (--data.path …), or several with data.sources")
        for name, value in (("max_length", max_length), ("global_batch_size", global_batch_size)):
            if value < 1:
                raise TraceDataError(f"data.{name} must be positive, got {value}")
        if limit is not None and limit < 1:
            raise TraceDataError(f"data.limit must be positive (or null: every trace), got {limit}")
        groups = data_groups(layout=layout, batching=batching, template=template, **flat)
        self.layout: LayoutArgs = groups["layout"]
        self.batching: BatchingArgs = groups["batching"]
        self.template: TemplateArgs = groups["template"]
        self.save_hyperparameters()
        for key in DATA_FLAT_KEYS:
            self._hparams.pop(key, None)
        self._hparams.update({key: group_dict(value) for key, value in groups.items()})
        self._hparams_initial = copy.deepcopy(self._hparams)
        self.path = path
        self.tokenizer_name = tokenizer
        self.limit = limit
        self.seed = seed
        self.max_length = max_length
        self.global_batch_size = global_batch_size
        self.val_path = val_path
        # each group's keys as attributes too (dm.packing, dm.preset, dm.chat_template, as before the groups)
        preset, fields, split = self.layout.preset, self.layout.fields, self.layout.split
        subset, revision = self.layout.subset, self.layout.revision
        self.preset, self.fields, self.split, self.subset, self.revision = preset, fields, split, subset, revision
        self.micro_batch_size, self.packing = self.batching.micro_batch_size, self.batching.packing
        self.overlong, self.num_workers = self.batching.overlong, self.batching.num_workers
        self.system_prompt, self.enable_thinking = self.template.system_prompt, self.template.enable_thinking
        self.chat_template, self.chat_template_kwargs = self.template.chat_template, self.template.chat_template_kwargs
        self._val_traces: list[TokenizedTrace] | None = None
        self.mapping = FIELD_PRESETS[preset].with_overrides(fields)
        own = TraceSource(path or "", preset, fields, split, subset, revision, limit if not sources else None)
        self.sources = parse_sources(sources, own) if sources else [own]
        self._mixed_limit = limit if sources else None  # data.limit over the mixed set
        self._tokenizer: Any = None
        self._schedule: TraceSchedule | None = None
        self.records: list[TraceRecord] = []
        self.traces: list[TokenizedTrace] = []

    # ----------------------------------------------------------------------------------------------- loading
    @property
    def tokenizer(self) -> Any:
        """The student's tokenizer (loaded on first use)."""
        if self._tokenizer is None:
            tokenizer = load_tokenizer(self.tokenizer_name)
            use_chat_template(tokenizer, self.chat_template)  # a tokenizer without one is a one-line error
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def pad_id(self) -> int:
        """Padding id: the tokenizer's pad token, else its eos token, else 0."""
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def _load_traces(self, source: TraceSource) -> tuple[list[TokenizedTrace], LoadStats]:
        """Read, validate and render one trace source with this module's policies.

        ``source.limit`` counts traces that are trained: records are visited in the seeded order of the subset
        draw and the overlong ones are replaced by the next records of that order.
        """
        path, limit = source.path, source.limit
        records, stats = load_records(path, source.mapping, split=source.split, limit=None, seed=self.seed,
                                      subset=source.subset, revision=source.revision)
        if self.system_prompt:
            system = {"role": "system", "content": self.system_prompt}
            for record in records:
                if record.messages[0]["role"] != "system":
                    record.messages = [system, *record.messages]
        order = list(range(len(records)))
        if limit is not None and limit < len(records):
            random.Random(self.seed).shuffle(order)  # the draw of load_records' subset
        kept: dict[int, TokenizedTrace] = {}
        dropped = 0
        for i in order:
            if limit is not None and len(kept) == limit:
                break
            trace = tokenize_trace(
                self.tokenizer,
                records[i],
                0,
                max_length=self.max_length,
                overlong=self.overlong,
                enable_thinking=self.enable_thinking,
                template_kwargs=self.chat_template_kwargs,
            )
            if trace is None:
                dropped += 1
            else:
                kept[i] = trace
        if limit is not None and len(kept) < limit and dropped:
            raise TraceDataError(
                f"{path}: data.limit={limit} but only {len(kept)} of {len(records)} traces fit "
                f"max_length={self.max_length} ({dropped} longer); lower data.limit or raise data.max_length"
            )
        traces = [kept[i] for i in sorted(kept)]
        for index, trace in enumerate(traces):
            trace.index = index
        examined = len(kept) + dropped
        if dropped:
            log.warning(
                "dropped %d of %d traces longer than max_length=%d (data.batching.overlong=%s)",
                dropped,
                examined,
                self.max_length,
                self.overlong,
            )
        truncated = sum(t.truncated for t in traces)
        if truncated:
            log.warning(
                "truncated %d of %d traces to max_length=%d (data.batching.overlong=truncate)",
                truncated,
                examined,
                self.max_length,
            )
        return traces, stats

    def _share_template(self) -> None:
        """Give ``data.template.chat_template`` to the student's tokenizer too (its evaluations and ``hf/`` exports)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        student_tokenizer = getattr(module, "tokenizer", None)
        if self.chat_template is not None and student_tokenizer is not None:
            student_tokenizer.chat_template = self.tokenizer.chat_template

    def setup(self, stage: str | None = None) -> None:
        """Load, validate and tokenize the traces (once; later calls do nothing)."""
        self._share_template()
        if self._schedule is not None:
            return
        traces: list[TokenizedTrace] = []
        rows = 0
        for k, source in enumerate(self.sources):
            part, stats = self._load_traces(source)
            rows += stats.rows
            if len(self.sources) > 1:
                for trace in part:
                    trace.record.id = f"{k}:{trace.record.id}"
                log.info("source %d (%s): %d traces", k, source.path, len(part))
            traces += part
        if self._mixed_limit is not None and self._mixed_limit < len(traces):
            order = list(range(len(traces)))
            random.Random(self.seed).shuffle(order)
            traces = [traces[i] for i in sorted(order[: self._mixed_limit])]
        if not traces:
            raise TraceDataError(f"{self.source_name}: no trace left to train on ({rows} rows read)")
        for index, trace in enumerate(traces):
            trace.index = index
        self.traces = traces
        self.records = [t.record for t in traces]
        self._schedule = TraceSchedule(len(traces), self.global_batch_size, self.seed)
        log.info(
            "loaded %d traces (%d response tokens, %.0f tokens per trace) from %s; %d steps per epoch",
            len(traces),
            self.num_response_tokens,
            sum(len(t) for t in traces) / len(traces),
            self.source_name,
            self.steps_per_epoch,
        )

    @property
    def source_name(self) -> str:
        """``data.path``, or the paths of ``data.sources`` joined with ``+``."""
        return " + ".join(s.path for s in self.sources)

    @property
    def schedule(self) -> TraceSchedule:
        """The step schedule (sets the module up on first use)."""
        if self._schedule is None:
            self.setup()
        assert self._schedule is not None
        return self._schedule

    # ------------------------------------------------------------------------------------------------ steps
    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one Lightning epoch: ``ceil(num_traces / global_batch_size)``."""
        return self.schedule.steps_per_epoch

    def step_traces(self, step: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """Indices of the traces that ``rank`` of ``world_size`` trains on at optimizer step ``step``."""
        return self.schedule.step_traces(step, rank, world_size)

    def _dataset(self, rank: int, world_size: int) -> StepDataset:
        return StepDataset(
            self.traces,
            self.schedule,
            rank=rank,
            world_size=world_size,
            micro_batch_size=self.micro_batch_size,
            max_length=self.max_length,
            packing=self.packing,
            pad_id=self.pad_id,
        )

    def step_batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
        """The step batch ``rank`` of ``world_size`` gets at optimizer step ``step``."""
        return self._dataset(rank, world_size)[step]

    def make_train_dataloader(
        self, *, rank: int = 0, world_size: int = 1, start_step: int | Callable[[], int] = 0
    ) -> StepDataLoader:
        """The step-batch DataLoader of one rank; ``start_step`` is read whenever iteration starts."""
        sampler = StepSampler(self.steps_per_epoch, start_step, rank=rank, world_size=world_size)
        return StepDataLoader(self._dataset(rank, world_size), sampler, num_workers=self.num_workers)

    def _global_step(self) -> int:
        return int(self.trainer.global_step) if self.trainer is not None else 0

    def train_dataloader(self) -> StepDataLoader:
        """Step batches for this rank, from ``trainer.global_step`` to the end of the current epoch."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return self.make_train_dataloader(rank=rank, world_size=world_size, start_step=self._global_step)

    def val_dataloader(self) -> DataLoader:
        """Teacher-forced evaluation batches: ``val_path`` if given, else (for ``validate`` / ``test`` only)
        the training traces. During ``fit`` without ``val_path`` there is no validation loop: the
        benchmark callbacks are the evaluation."""
        trainer = self.trainer
        fitting = trainer is not None and trainer.state.fn == "fit"
        if self.val_path is None and fitting:
            return DataLoader([], batch_size=None)
        if self.val_path is not None and self._val_traces is None:
            val = TraceSource(self.val_path, self.preset, self.fields, self.split)
            self._val_traces, _ = self._load_traces(val)
        self.setup()
        traces = self._val_traces if self.val_path is not None else self.traces
        batches = ScoringBatches(traces, micro_batch_size=self.micro_batch_size, max_length=self.max_length,
                                 packing=self.packing, pad_id=self.pad_id)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        steps = [{"micro_batches": [mb], "num_traces": 0} for mb in batches]
        return DataLoader(steps[rank::world], batch_size=None, collate_fn=_identity)

    def test_dataloader(self) -> DataLoader:
        """Same batches as :meth:`val_dataloader`."""
        return self.val_dataloader()

    # --------------------------------------------------------------------------------------------- analysis
    def scoring_batches(self, micro_batch_size: int | None = None) -> ScoringBatches:
        """Micro-batches covering every trace once, in index order (for the trajectory scorer)."""
        self.setup()
        return ScoringBatches(
            self.traces,
            micro_batch_size=micro_batch_size or self.micro_batch_size,
            max_length=self.max_length,
            packing=self.packing,
            pad_id=self.pad_id,
        )

    def preview(self, index: int = 0) -> str:
        """Trace ``index`` as the student is trained on it: the rendered text, with every run of tokens that
        enters the loss between ``[[`` and ``]]`` (``print(dm.preview(0))`` after :meth:`setup`)."""
        self.setup()
        return show_trace(self.tokenizer, self.traces[index])

    @property
    def num_response_tokens(self) -> int:
        """Trained (labelled) tokens over all traces."""
        self.setup()
        return sum(t.num_response_tokens for t in self.traces)

    def problems(self) -> list[TraceRecord]:
        """The training problems (records: prompt turns and gold answer, gold may be None), in trace order."""
        self.setup()
        return list(self.records)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the tokenized training data; ``sha256`` covers every trace's ids and labels."""
        self.setup()
        digest = hashlib.sha256()
        for trace in self.traces:
            ids = np.asarray(trace.input_ids, dtype=np.int64)
            digest.update(np.int64(len(ids)).tobytes())
            digest.update(ids.tobytes())
            digest.update(np.asarray(trace.labels, dtype=np.int64).tobytes())
        return {
            "tokenizer": getattr(self.tokenizer, "name_or_path", self.tokenizer_name),
            "vocab_size": len(self.tokenizer),
            "path": str(self.path) if self.path else None,
            "preset": self.preset,
            "fields": dict(self.fields) if self.fields else None,
            "split": self.split,
            "limit": self.limit,
            "seed": self.seed,
            "max_length": self.max_length,
            "overlong": self.overlong,
            "num_traces": len(self.traces),
            "sha256": digest.hexdigest(),
            **({"sources": [s.describe() for s in self.sources]} if len(self.sources) > 1 or self.subset
               or self.revision else {}),
        }
