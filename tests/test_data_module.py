"""TeacherTraceDataModule: setup, step batches, rank partition, exact resume, scoring batches, fingerprint."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DistributedSampler

from t3s.data import FieldMapping, TeacherTraceDataModule, TraceDataError, load_records

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
WORDS = ["user", "assistant", "system", "q", "a", "r"] + [f"w{i}" for i in range(30)]
TEMPLATE = (  # ignores reasoning_content, so the module's <think> fallback is exercised too
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A word-level tokenizer (one token per whitespace-separated word) with a ChatML-like template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIALS[2:],
    )
    tok.chat_template = TEMPLATE
    path = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(path)
    return str(path)


def write_traces(path: Path, n: int = 10, extra: int = 0) -> Path:
    """Trace i: prompt of 2 words, reasoning of 1 + i % 10 + extra words, answer of 2 words (13 + i % 10 + extra
    tokens once rendered)."""
    rows = [
        {
            "id": f"t{i}",
            "prompt": f"q w{i % 30}",
            "reasoning": " ".join(["r"] + [f"w{(i + k) % 30}" for k in range(i % 10 + extra)]),
            "answer_text": f"a w{i % 30}",
            "answer": f"w{i % 30}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_dm(tmp_path: Path, tokenizer_dir: str, **kwargs: Any) -> TeacherTraceDataModule:
    path = kwargs.pop("path", None) or write_traces(tmp_path / "traces.jsonl")
    args: dict[str, Any] = {"global_batch_size": 4, "micro_batch_size": 2, "max_length": 40} | kwargs
    dm = TeacherTraceDataModule(str(path), tokenizer_dir, **args)
    dm.setup()
    return dm


def segments(micro_batch: dict[str, torch.Tensor]) -> list[int]:
    """Trace indices of the traces in a micro-batch, one entry per trace occurrence."""
    starts = (micro_batch["position_ids"] == 0) & (micro_batch["trace_index"] >= 0)
    return micro_batch["trace_index"][starts].tolist()


def step_trace_list(batch: dict[str, Any]) -> list[int]:
    return sorted(i for mb in batch["micro_batches"] for i in segments(mb))


def test_setup_renders_and_labels(tmp_path: Path, tokenizer_dir: str) -> None:
    dm = make_dm(tmp_path, tokenizer_dir)
    traces = dm.traces
    dm.setup()
    assert dm.traces is traces  # idempotent
    assert len(traces) == 10 and [t.index for t in traces] == list(range(10))
    assert [len(t) for t in traces] == [13 + i for i in range(10)]
    tok = dm.tokenizer
    reply = tok.decode([x for x in traces[2].labels if x != -100])
    assert reply == "<think> r w2 w3 </think> a w2 <|im_end|>"
    assert traces[2].labels[:7] == [-100] * 7
    assert dm.num_response_tokens == sum(6 + i for i in range(10))
    assert dm.steps_per_epoch == 3
    problems = dm.problems()
    assert [p.gold for p in problems[:3]] == ["w0", "w1", "w2"]
    assert problems[1].messages == [{"role": "user", "content": "q w1"}] and problems[1].id == "t1"


def test_each_step_has_global_batch_size_traces_and_ranks_partition(
    tmp_path: Path, tokenizer_dir: str
) -> None:
    dm = make_dm(tmp_path, tokenizer_dir)
    for step in range(7):  # crosses epoch boundaries (10 traces, 4 per step)
        whole = dm.step_traces(step)
        halves = [dm.step_traces(step, rank, 2) for rank in (0, 1)]
        assert len(whole) == 4 and sorted(whole) == sorted(halves[0] + halves[1])
        for rank in (0, 1):
            batch = dm.step_batch(step, rank, 2)
            assert batch["num_traces"] == 2 and batch["step"] == step
            assert step_trace_list(batch) == sorted(halves[rank])
            assert batch["num_tokens"] == sum(dm.traces[i].num_response_tokens for i in halves[rank])
        for mb in dm.step_batch(step)["micro_batches"]:
            assert mb["input_ids"].shape[0] <= 2 and mb["attention_mask"].sum(1).max() <= 40
    # an uneven world: 3 ranks share 4 traces as 2 / 1 / 1, together the whole step
    thirds = [dm.step_traces(0, rank, 3) for rank in range(3)]
    assert [len(t) for t in thirds] == [2, 1, 1]
    assert sorted(thirds[0] + thirds[1] + thirds[2]) == sorted(dm.step_traces(0))
    with pytest.raises(ValueError, match="smaller than the world size 5"):
        dm.step_traces(0, 0, 5)


def test_epochs_are_permutations(tmp_path: Path, tokenizer_dir: str) -> None:
    dm = make_dm(tmp_path, tokenizer_dir)
    stream = [i for step in range(10) for i in dm.step_traces(step)]  # 40 items = 4 data epochs
    epochs = [stream[e * 10 : (e + 1) * 10] for e in range(4)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 4
    again = make_dm(tmp_path, tokenizer_dir)
    assert [i for step in range(10) for i in again.step_traces(step)] == stream  # same seed, same stream
    other = make_dm(tmp_path, tokenizer_dir, seed=1)
    assert [i for step in range(10) for i in other.step_traces(step)] != stream


def test_loader_resumes_exactly(tmp_path: Path, tokenizer_dir: str) -> None:
    dm = make_dm(tmp_path, tokenizer_dir)
    position = {"step": 0}
    loader = dm.make_train_dataloader(start_step=lambda: position["step"])
    assert isinstance(loader.sampler, DistributedSampler)  # so Lightning never swaps in its own sampler
    assert len(loader) == 3
    run = {b["step"]: b for b in loader}
    assert sorted(run) == [0, 1, 2]
    position["step"] = 1  # read when iteration starts
    resumed = list(loader)
    assert [b["step"] for b in resumed] == [1, 2]
    for batch in resumed:
        for got, want in zip(batch["micro_batches"], run[batch["step"]]["micro_batches"], strict=True):
            assert all(torch.equal(got[k], want[k]) for k in want)
    position["step"] = 4  # inside the second epoch: up to its end
    assert [b["step"] for b in loader] == [4, 5]
    rank1 = dm.make_train_dataloader(rank=1, world_size=2, start_step=2)
    assert [step_trace_list(b) for b in rank1] == [sorted(dm.step_traces(2, 1, 2))]


class StepRecorder(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.steps: list[int] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.steps.append(batch["step"])
        assert len(step_trace_list(batch)) == batch["num_traces"] == 4
        return (self.weight * batch["num_tokens"]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(max_steps: int) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_trainer_resume_mid_epoch_continues_from_global_step(tmp_path: Path, tokenizer_dir: str) -> None:
    first = StepRecorder()
    fit = trainer(4)
    fit.fit(first, make_dm(tmp_path, tokenizer_dir))
    assert first.steps == [0, 1, 2, 3]
    fit.save_checkpoint(tmp_path / "mid.ckpt")
    second = StepRecorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(7).fit(second, make_dm(tmp_path, tokenizer_dir), ckpt_path=tmp_path / "mid.ckpt")
    assert second.steps == [4, 5, 6]
    assert not [w for w in caught if "not resumable" in str(w.message)]


def test_scoring_batches_cover_every_trace_once_in_order(tmp_path: Path, tokenizer_dir: str) -> None:
    dm = make_dm(tmp_path, tokenizer_dir)
    batches = dm.scoring_batches()
    seen = [i for mb in batches for i in segments(mb)]
    assert seen == list(range(10)) and len(batches) == len(list(batches))
    assert len(dm.scoring_batches(micro_batch_size=100)) == 1
    unpacked = make_dm(tmp_path, tokenizer_dir, packing=False, micro_batch_size=3)
    shapes = [mb["input_ids"].shape[0] for mb in unpacked.scoring_batches()]
    assert shapes == [3, 3, 3, 1]
    step = unpacked.step_batch(0)
    assert [mb["input_ids"].shape[0] for mb in step["micro_batches"]] == [3, 1]  # one trace per row


def test_overlong_drop_and_truncate_are_counted(
    tmp_path: Path, tokenizer_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="t3s.data.module"):
        dm = make_dm(tmp_path, tokenizer_dir, max_length=17)  # lengths 13..22: 5 fit
    assert [len(t) for t in dm.traces] == [13, 14, 15, 16, 17]
    assert [t.record.id for t in dm.traces] == ["t0", "t1", "t2", "t3", "t4"]
    assert "dropped 5 of 10 traces longer than max_length=17 (data.batching.overlong=drop)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="t3s.data.module"):
        cut = make_dm(tmp_path, tokenizer_dir, max_length=17, overlong="truncate")
    assert [len(t) for t in cut.traces] == [13, 14, 15, 16] + [17] * 6
    assert sum(t.truncated for t in cut.traces) == 5
    assert "truncated 5 of 10 traces to max_length=17" in caplog.text


def test_limit_counts_traces_left_after_the_overlong_filter(tmp_path: Path, tokenizer_dir: str) -> None:
    # lengths 13..22, 5 fit max_length=17: a limit of 4 is 4 trained traces, a subset of the fitting five
    fitting = {t.record.id for t in make_dm(tmp_path, tokenizer_dir, max_length=17).traces}
    dm = make_dm(tmp_path, tokenizer_dir, max_length=17, limit=4)
    assert len(dm.traces) == 4 and {t.record.id for t in dm.traces} <= fitting
    assert [t.index for t in dm.traces] == [0, 1, 2, 3]
    # without drops the subset is the plain seeded draw of the records (what it was before)
    assert [t.record.id for t in make_dm(tmp_path, tokenizer_dir, limit=4).traces] == [
        r.id for r in load_records(write_traces(tmp_path / "again.jsonl"), FieldMapping(), limit=4)[0]
    ]
    with pytest.raises(TraceDataError, match="data.limit=6 but only 5 of 10 traces fit max_length=17"):
        make_dm(tmp_path, tokenizer_dir, max_length=17, limit=6)


def test_fingerprint_tracks_data_and_max_length(tmp_path: Path, tokenizer_dir: str) -> None:
    base = make_dm(tmp_path, tokenizer_dir).fingerprint()
    assert base == make_dm(tmp_path, tokenizer_dir).fingerprint()
    assert base["num_traces"] == 10 and base["vocab_size"] == len(SPECIALS + WORDS)
    assert base["tokenizer"] == tokenizer_dir and base["max_length"] == 40
    longer = make_dm(tmp_path, tokenizer_dir, max_length=64).fingerprint()
    assert longer["max_length"] == 64 and longer != base
    changed = write_traces(tmp_path / "changed.jsonl", extra=1)
    other = make_dm(tmp_path, tokenizer_dir, path=changed).fingerprint()
    assert other["sha256"] != base["sha256"]


def test_bad_configuration(tmp_path: Path, tokenizer_dir: str) -> None:
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        TeacherTraceDataModule("x.jsonl", tokenizer_dir, preset="nope")
    with pytest.raises(ValueError, match="data.global_batch_size must be positive"):
        TeacherTraceDataModule("x.jsonl", tokenizer_dir, global_batch_size=0)
