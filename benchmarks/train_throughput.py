"""Training throughput of t3s against a plain Hugging Face loop (and TRL), same device, data and weights.

    python benchmarks/train_throughput.py --device cpu --quick        # ~4 CPU-minutes on one thread, 8.4 GB peak RSS
    python benchmarks/train_throughput.py --device cuda --model qwen3-1.7b --data r1 fixed

Contenders, in one process, on one random-init Qwen3 (same seed, same initial weights):

* ``t3s_full``   (a) ``ARStudent`` + ``FullSFT``: packed rows, loss through the fused LM-head kernel on
  response tokens only, run by a real Lightning ``Trainer``.
* ``t3s_masked`` (b) the same student with the real ``T3S`` strategy reading a score cache built here:
  Δc = +1 (an anchor, masked) on a deterministic pseudo-random half of the response tokens (seed 0)
  and −1 on the rest. Only the number of masked tokens matters for speed; no θ_b is trained.
* ``hf_plain``   (c) a plain Hugging Face loop: micro-batches of ``--hf-micro-batch`` traces right-padded
  to the longest, ``labels`` −100 on prompt and padding, ``model(..., labels=, num_items_in_batch=)``,
  ``loss.backward()``, gradient clipping at 1.0, ``torch.optim.AdamW`` (what ``transformers.Trainer``
  does with gradient accumulation).
* ``trl``        (d) TRL's ``SFTTrainer.training_step`` on TRL's own collated batch, when ``trl`` is
  importable (``pip install '.[bench]'``; never a t3s dependency). Skipped with a reason otherwise.
  ``SFTConfig`` keeps TRL's defaults (what a user moving from TRL runs), which include gradient
  checkpointing; pass ``--grad-ckpt`` to give every other contender checkpointing too.

Procedure: before timing, the losses of (a) and (c) on the same batch and the same initial weights are
compared (same normalisation: summed NLL over all response tokens of the step divided by their number);
``loss_match`` is True when they agree to ``1e-4`` relative (fp32; ``2e-2`` under bf16). TRL's loss is
reported beside them (``loss_rel_diff``) but not matched: TRL re-prepares the tokens itself.
Then one Lightning fit runs ARStudent steps alternately under FullSFT and T3S (a callback swaps
``selection`` before each step and flips the order every cycle), and after each pair it times one
step of (c) and (d). The first cycle is warm-up; medians over the others are reported.

Numbers:

* ``tps_*``: real tokens per second = non-pad tokens of the step (prompt + response, the same for every
  contender) / median seconds of one optimizer step (forward, backward, clipping, optimizer step).
  Seconds are wall time on CUDA. On CPU they are the process's CPU time (``time.process_time``), because
  a shared machine stretches wall time by whatever else runs; ``--wall-clock`` switches to wall time,
  and the JSON always holds both (``median_wall_s_*``, ``wall_ratio_*``).
* ``ratio_full_vs_hf`` = ``tps_t3s_full / tps_hf_plain`` (higher is better; CPU goal ≥ 1.0).
* ``ratio_masked_vs_full`` = median step time of (b) / median step time of (a), i.e. how long a T3S step
  masking ~half of the response takes relative to a FullSFT step (lower is better; CPU goal < 0.9).
  It equals ``tps_t3s_full / tps_t3s_masked``.
* ``ratio_full_vs_trl`` = ``tps_t3s_full / tps_trl`` when TRL ran.
* ``peak_mib_*``: on CUDA, the contender's own weights, gradients and optimizer state plus the peak
  growth of allocated memory during its step; on CPU the same with the growth of the process RSS
  (sampled every 2 ms) in place of allocated memory.
* ``mfu_*`` (CUDA only): model FLOPs / (step seconds × ``--peak-tflops``). Convention: 6·N per real token
  (N = every parameter but the input embedding; LM head included) plus 12·layers·(heads·head_dim)·(p+1)
  for causal attention of the token at position p within its own trace; the same count for every
  contender, so MFU ratios are throughput ratios.

Data: the real length mix of ``../shared/data/r1_traces_mmlupro_200.jsonl`` rendered with the real
Qwen3 chat template (``../shared/tokenizers/qwen3``), traces of at most ``--max-length`` tokens; when
those files are absent, synthetic traces with a similar length spread (labelled ``synthetic`` in the
output). ``fixed`` rows: ``--traces`` traces of exactly ``--max-length`` tokens (128-token prompt).

The last line printed is one JSON object (the headline keys come from the first ``--data`` entry).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: glibc hands every large freed block back to the OS, so each new [chunk, vocab] buffer, logits tensor and
#: optimizer temporary is page-faulted afresh; on some VMs that costs more than the matmuls. Like the
#: jemalloc/tcmalloc PyTorch recommends for CPU training, these settings keep freed memory for reuse. They
#: apply to every contender alike. They are opt-in (``--allocator-tuning``): a heap that never shrinks makes the
#: process's RSS the sum of every contender's peak, which does not fit a shared 24 GiB machine, and hides each
#: contender's own peak. Without them each contender's peak RSS is reported.
ALLOCATOR_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
if (__name__ == "__main__" and sys.platform == "linux" and "GLIBC_TUNABLES" not in os.environ
        and "--allocator-tuning" in sys.argv):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": ALLOCATOR_TUNABLES})

import lightning as L  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from t3s.data.schema import TokenizedTrace, TraceRecord  # noqa: E402
from t3s.data.steps import micro_batches  # noqa: E402
from t3s.ops.causal_lm import hidden_states, logprobs_at  # noqa: E402
from t3s.selection import T3S, FullSFT  # noqa: E402
from t3s.selection.scores import ScoreCache  # noqa: E402
from t3s.students import ARStudent  # noqa: E402

#: ``../shared`` next to the checkout (override with ``T3S_SHARED=/path/to/shared``).
SHARED = Path(os.environ.get("T3S_SHARED", REPO.parent / "shared"))
R1_PATH = SHARED / "data" / "r1_traces_mmlupro_200.jsonl"
QWEN3_TOKENIZER = SHARED / "tokenizers" / "qwen3"
QWEN3_VOCAB = 151_936

_QWEN3 = {"model_type": "qwen3", "vocab_size": QWEN3_VOCAB, "num_key_value_heads": 8, "head_dim": 128,
          "max_position_embeddings": 40_960, "rope_theta": 1_000_000.0}
#: Random-init architectures. ``cpu-small``: the CPU contract model (real vocabulary, tiny body).
MODELS: dict[str, dict[str, Any]] = {
    "cpu-small": {**_QWEN3, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "tie_word_embeddings": False},
    # for tests of this script: a tiny body on the real vocabulary
    "tiny": {**_QWEN3, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "tie_word_embeddings": False},
    "qwen3-0.6b": {**_QWEN3, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                   "num_attention_heads": 16, "tie_word_embeddings": True},
    "qwen3-1.7b": {**_QWEN3, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
                   "num_attention_heads": 16, "tie_word_embeddings": True},
    "qwen3-8b": {**_QWEN3, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                 "num_attention_heads": 32, "tie_word_embeddings": False},
}
CONTENDERS = ("t3s_full", "t3s_masked", "hf_plain", "trl")
LR = 1e-5


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Workload:
    """The traces of one optimizer step and where they came from."""

    name: str
    source: str
    traces: list[TokenizedTrace]
    pad_id: int
    tokenizer: Any = None

    @property
    def real_tokens(self) -> int:
        return sum(len(t) for t in self.traces)

    @property
    def response_tokens(self) -> int:
        return sum(t.num_response_tokens for t in self.traces)


def _trace(index: int, ids: list[int], prompt: int) -> TokenizedTrace:
    record = TraceRecord(id=f"synthetic-{index}", messages=[{"role": "user", "content": ""}], reasoning=None,
                         answer_text="")
    labels = [-100] * prompt + ids[prompt:]
    return TokenizedTrace(index=index, record=record, input_ids=ids, labels=labels)


def r1_workload(n: int, max_length: int, vocab: int, seed: int = 0) -> Workload:
    """``n`` R1 traces of at most ``max_length`` tokens with the real tokenizer, else a synthetic stand-in."""
    if R1_PATH.is_file() and (QWEN3_TOKENIZER / "tokenizer.json").is_file():
        from t3s.data import TeacherTraceDataModule

        for limit in (min(200, 6 * n), None):
            data = TeacherTraceDataModule(path=str(R1_PATH), tokenizer=str(QWEN3_TOKENIZER), preset="r1_mc",
                                          max_length=max_length, limit=limit, seed=seed)
            with _quiet_logs():
                data.setup("fit")
            if len(data.traces) >= n:
                traces = [copy.copy(t) for t in data.traces[:n]]
                for i, t in enumerate(traces):
                    t.index = i
                return Workload("r1", f"{R1_PATH.name} (real Qwen3 tokenizer, traces <= {max_length} tokens)",
                                traces, data.pad_id, data.tokenizer)
            if limit is None:
                raise SystemExit(f"only {len(data.traces)} R1 traces fit in --max-length {max_length}; lower --traces")
    # Synthetic stand-in: lengths spread like the R1 mix below max_length (60%..100%), 10% prompt.
    g = torch.Generator().manual_seed(seed)
    traces = []
    for i in range(n):
        length = int(max_length * (0.6 + 0.4 * float(torch.rand((), generator=g))))
        ids = torch.randint(0, vocab, (length,), generator=g).tolist()
        traces.append(_trace(i, ids, max(1, length // 10)))
    return Workload("r1", f"synthetic lengths (../shared absent), <= {max_length} tokens", traces, 0)


def fixed_workload(n: int, length: int, vocab: int, prompt: int = 128, seed: int = 1) -> Workload:
    """``n`` random-token traces of exactly ``length`` tokens, the first ``prompt`` (at most half) unlabelled."""
    prompt = min(prompt, length // 2)
    g = torch.Generator().manual_seed(seed)
    traces = [_trace(i, torch.randint(0, vocab, (length,), generator=g).tolist(), prompt) for i in range(n)]
    return Workload("fixed", f"{n} rows of {length} tokens (random ids, {prompt}-token prompt)", traces, 0)


def t3s_step_batch(work: Workload, max_length: int, rows_per_micro: int) -> dict[str, Any]:
    """The ARStudent step batch: traces packed first-fit-decreasing into rows of ``max_length``."""
    mbs = micro_batches(work.traces, micro_batch_size=rows_per_micro, max_length=max_length, packing=True,
                        pad_id=work.pad_id)
    return {"micro_batches": mbs, "num_traces": len(work.traces), "step": 0}


def hf_batches(work: Workload, micro: int) -> list[dict[str, torch.Tensor]]:
    """The plain-HF micro-batches: ``micro`` traces each, in order, right-padded to the longest."""
    out = []
    for i in range(0, len(work.traces), micro):
        group = work.traces[i : i + micro]
        width = max(len(t) for t in group)
        ids = torch.full((len(group), width), work.pad_id, dtype=torch.long)
        labels = torch.full((len(group), width), -100, dtype=torch.long)
        attn = torch.zeros((len(group), width), dtype=torch.long)
        for r, t in enumerate(group):
            ids[r, : len(t)] = torch.tensor(t.input_ids)
            labels[r, : len(t)] = torch.tensor(t.labels)
            attn[r, : len(t)] = 1
        out.append({"input_ids": ids, "attention_mask": attn, "labels": labels})
    return out


def half_anchor_cache(work: Workload, seed: int = 0) -> ScoreCache:
    """A score cache whose Δc is +1 (anchor: T3S masks it) on a pseudo-random half of the tokens."""
    lengths = torch.tensor([len(t) for t in work.traces])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    g = torch.Generator().manual_seed(seed)
    rose = torch.rand(int(offsets[-1]), generator=g) < 0.5
    return ScoreCache(torch.zeros(len(rose)), torch.where(rose, 1.0, -1.0), offsets, {"data": {}})


# --------------------------------------------------------------------------------------------- models
class BenchStudent(ARStudent):
    """``ARStudent`` without the Hugging Face folders it writes at fit start and end (timing only)."""

    def on_train_start(self) -> None:
        self.model.train()

    def on_train_end(self) -> None:
        pass


def model_flops_per_step(config: dict[str, Any], work: Workload, n_params: int) -> float:
    """Model FLOPs of one step under the convention in the module docstring."""
    d_attn = config["num_attention_heads"] * config["head_dim"]
    embed = config["vocab_size"] * config["hidden_size"]
    dense = 6.0 * (n_params - embed) * work.real_tokens
    attn = sum(12.0 * config["num_hidden_layers"] * d_attn * (len(t) * (len(t) + 1) / 2) for t in work.traces)
    return dense + attn


def hf_copy(model: torch.nn.Module, attn: str) -> torch.nn.Module:
    """A copy of the initial weights for the HF-side contenders, with their own attention kernel."""
    model = copy.deepcopy(model)
    model.set_attn_implementation(attn)
    return model


def state_bytes(params: list[torch.Tensor], optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of weights plus optimizer state (gradients are counted in the step's growth)."""
    total = sum(p.numel() * p.element_size() for p in params)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return total


# -------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak growth of memory during a block: CUDA allocated bytes, or the sampled RSS of this process."""

    def __init__(self, device: torch.device):
        self.device = device
        self.growth = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return 0

    def __enter__(self) -> PeakMemory:
        self.active = memory_measured(self.device)
        if not self.active:  # nothing to measure: no sampling thread to add CPU time
            return self
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.growth = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.growth = max(self._peak, self._rss()) - self._base


# ---------------------------------------------------------------------------------------- contenders
@dataclass
class Timings:
    """Per-contender step times on both clocks (see :class:`Clock`) and peak memory growth."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONTENDERS})
    wall: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CONTENDERS})
    growth: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, times: tuple[float, float], growth: int, warm: bool) -> None:
        if not warm:
            self.seconds[name].append(times[0])
            self.wall[name].append(times[1])
        self.growth[name] = max(self.growth.get(name, 0), growth)


class Clock:
    """Times a block on the reported clock and on the wall clock: ``(reported_s, wall_s)``.

    CUDA: both are wall time after a synchronize. CPU: the reported clock is this process's CPU time
    (``time.process_time``: all threads, user + system), so that other load on a shared machine, which
    only stretches wall time, does not enter the comparison; ``--wall-clock`` reports wall time instead.
    """

    wall_only = False

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def stop(self) -> tuple[float, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return (wall if self.device.type == "cuda" or self.wall_only else cpu), wall


class PlainHF:
    """Contender (c): the textbook loop on its own copy of the initial weights."""

    def __init__(self, model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], n_items: int,
                 device: torch.device, autocast: Any, fused: bool, grad_ckpt: bool = False):
        self.model = model.to(device).train()
        if grad_ckpt:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.batches = [{k: v.to(device) for k, v in mb.items()} for mb in batches]
        self.n_items = n_items
        self.autocast = autocast
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=LR, betas=(0.9, 0.95), weight_decay=0.0,
                                           **({"fused": True} if fused else {}))

    def loss(self) -> float:
        with torch.no_grad():
            return sum(float(self._forward(mb)) for mb in self.batches)

    def _forward(self, mb: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.autocast():
            return self.model(**mb, num_items_in_batch=self.n_items, use_cache=False).loss

    def step(self) -> None:
        for mb in self.batches:
            self._forward(mb).backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class TRLStep:
    """Contender (d): ``SFTTrainer.training_step`` + its optimizer on TRL's own collated batch."""

    def __init__(self, model: torch.nn.Module, work: Workload, micro: int, device: torch.device, bf16: bool,
                 outdir: str):
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [{"input_ids": t.input_ids, "completion_mask": [int(x != -100) for x in t.labels]} for t in work.traces]
        args = SFTConfig(output_dir=outdir, per_device_train_batch_size=micro, max_length=None, report_to=[],
                         completion_only_loss=True, bf16=bf16, use_cpu=device.type == "cpu", learning_rate=LR,
                         adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10**9, save_strategy="no",
                         dataset_num_proc=None, disable_tqdm=True)
        with _quiet_logs():
            self.trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                      processing_class=work.tokenizer)
        self.trainer.create_optimizer_and_scheduler(num_training_steps=10**6)
        collate = self.trainer.data_collator
        self.batches = [collate(rows[i : i + micro]) for i in range(0, len(rows), micro)]
        self.n_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in self.batches)
        self.model = self.trainer.model

    def _inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.trainer.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def loss(self) -> float:
        self.model.eval()
        with torch.no_grad():
            total = 0.0
            for b in self.batches:
                out = self.model(**self._inputs(b), num_items_in_batch=self.n_items, use_cache=False)
                total += float(out.loss)
        self.model.train()
        return total

    def step(self) -> None:
        n = torch.tensor(self.n_items, device=self.trainer.args.device)
        for b in self.batches:
            self.trainer.training_step(self.model, self._inputs(b), num_items_in_batch=n)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.trainer.optimizer.step()
        self.trainer.lr_scheduler.step()
        self.model.zero_grad(set_to_none=True)


class Alternate(L.Callback):
    """Runs (a) and (b) alternately inside one fit and times them; after each pair times (c) and (d)."""

    def __init__(self, strategies: dict[str, Any], others: dict[str, Any], timings: Timings, device: torch.device):
        self.strategies = strategies
        self.others = others
        self.timings = timings
        self.device = device

    def _name(self, idx: int) -> str:
        cycle, half = divmod(idx, 2)
        order = ("t3s_full", "t3s_masked") if cycle % 2 == 0 else ("t3s_masked", "t3s_full")
        return order[half]

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, idx: int) -> None:
        module.selection = self.strategies[self._name(idx)]
        self._memory = PeakMemory(self.device).__enter__()
        self._clock = Clock(self.device)
        self._clock.start()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        times = self._clock.stop()
        self._memory.__exit__(None, None, None)
        self.timings.add(self._name(idx), times, self._memory.growth, warm=idx < 2)
        if idx % 2 == 1:
            for name, contender in self.others.items():
                self.timings.add(name, *_timed(contender.step, self.device), warm=idx < 2)


def _timed(fn: Any, device: torch.device) -> tuple[tuple[float, float], int]:
    """``((reported_s, wall_s), memory growth)`` of one call of ``fn``."""
    with PeakMemory(device) as memory:
        clock = Clock(device)
        clock.start()
        fn()
        times = clock.stop()
    return times, memory.growth


@contextlib.contextmanager
def _quiet_logs():
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# ----------------------------------------------------------------------------------------------- run
def t3s_loss(student: ARStudent, step_batch: dict[str, Any], device: torch.device, autocast: Any) -> float:
    """The ARStudent training loss of the step batch (FullSFT), without an optimizer step."""
    nll, count = 0.0, 0.0
    with torch.no_grad(), autocast():
        batch = {**step_batch, "micro_batches": [{k: v.to(device) for k, v in mb.items()}
                                                 for mb in step_batch["micro_batches"]]}
        for item in student.plan_step(batch).passes:
            loss, stats = student.pass_loss(item)
            nll += float(loss)
            count += stats.selected
    return nll / count


def run_workload(args: argparse.Namespace, work: Workload, device: torch.device) -> dict[str, Any]:
    """Loss check, then the alternating timed steps; returns this workload's numbers."""
    config = dict(MODELS[args.model])
    config["max_position_embeddings"] = max(config["max_position_embeddings"], args.max_length)
    bf16 = args.precision != "fp32"
    dtype = "bfloat16" if args.precision == "bf16-true" else "float32"
    lightning_precision = {"fp32": "32-true", "bf16-mixed": "bf16-mixed", "bf16-true": "bf16-true"}[args.precision]

    def autocast():
        if args.precision == "bf16-mixed":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    student = BenchStudent(model_config=config, lr=LR, max_grad_norm=1.0, schedule="constant", dtype=dtype,
                           attn_implementation=args.attn, gradient_checkpointing=args.grad_ckpt,
                           logprob_chunk_size=args.chunk, unselected_logprob_sample=args.unselected_sample)
    with _quiet_logs(), torch.device(device):  # initialise on the device: an 8B model is slow to fill on CPU
        student.configure_model()
    student.to(device)
    step_batch = t3s_step_batch(work, args.max_length, args.t3s_micro_rows)
    n_items = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in hf_batches(work, args.hf_micro_batch))

    others: dict[str, Any] = {}
    if "hf_plain" in args.contenders:
        others["hf_plain"] = PlainHF(hf_copy(student.model, args.hf_attn), hf_batches(work, args.hf_micro_batch),
                                     n_items, device, autocast, fused=device.type == "cuda", grad_ckpt=args.grad_ckpt)
    skipped: dict[str, str] = {}
    if "trl" in args.contenders:
        try:
            import trl  # noqa: F401
        except ImportError:
            skipped["trl"] = "trl is not installed (pip install '.[bench]')"
        else:
            if work.tokenizer is None:
                skipped["trl"] = "needs the real tokenizer (../shared absent)"
            else:
                outdir = tempfile.mkdtemp(prefix="t3s-bench-trl-")
                others["trl"] = TRLStep(hf_copy(student.model, args.hf_attn), work, args.hf_micro_batch, device, bf16,
                                        outdir)

    losses = {"t3s": t3s_loss(student, step_batch, device, autocast)}
    for name, contender in others.items():
        losses[name] = contender.loss()
    tolerance = 2e-2 if bf16 else 1e-4
    rel_diff = {name: abs(v - losses["t3s"]) / abs(losses["t3s"]) for name, v in losses.items() if name != "t3s"}
    # the contract: (a) and (c) agree; TRL prepares its own tokens (it may add an EOS), so its loss is reported
    loss_match = bool(rel_diff.get("hf_plain", 0.0) <= tolerance) if "hf_plain" in losses else None

    strategies = {"t3s_full": FullSFT(), "t3s_masked": T3S()}
    strategies["t3s_masked"].attach(half_anchor_cache(work))
    timings = Timings()
    cycles = args.cycles + 1  # + one warm-up cycle
    student_optimizer = None
    if {"t3s_full", "t3s_masked"} & set(args.contenders):
        with tempfile.TemporaryDirectory(prefix="t3s-bench-") as root, _quiet_logs():
            trainer = L.Trainer(max_steps=2 * cycles, accelerator=device.type, devices=1,
                                precision=lightning_precision, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                                callbacks=[Alternate(strategies, others, timings, device)])
            loader = torch.utils.data.DataLoader([step_batch] * (2 * cycles), batch_size=None, collate_fn=lambda b: b)
            trainer.fit(student, train_dataloaders=loader)
        student_optimizer = trainer.optimizers[0]
    else:  # only the HF-side contenders: free the student first (one 8B model with Adam at a time)
        student.model = None
        for cycle in range(cycles):
            for name, contender in others.items():
                timings.add(name, *_timed(contender.step, device), warm=cycle == 0)

    masked_fraction = _masked_fraction(student, strategies["t3s_masked"], step_batch)
    scoring = {}
    if args.score and student.model is not None:
        scoring = time_scoring(student.model, step_batch, device, args.chunk, repeats=max(2, args.cycles // 2))
    reference = student.model if student.model is not None else next(iter(others.values())).model
    n_params = sum(p.numel() for p in reference.parameters())
    flops = model_flops_per_step(config, work, n_params)
    result: dict[str, Any] = {
        "data": work.source, "traces": len(work.traces), "real_tokens": work.real_tokens,
        "response_tokens": work.response_tokens,
        "t3s_rows": sum(mb["input_ids"].shape[0] for mb in step_batch["micro_batches"]),
        "t3s_row_length": args.max_length,
        "hf_padded_tokens": sum(mb["input_ids"].numel() for mb in hf_batches(work, args.hf_micro_batch)),
        "t3s_masked_fraction_of_response": masked_fraction,
        "losses": losses, "loss_rel_diff": rel_diff, "loss_match": loss_match, "loss_tolerance_rel": tolerance,
        "skipped": skipped,
        "timed_steps": {k: len(v) for k, v in timings.seconds.items() if v and k in args.contenders},
    }
    own_state = {}
    if student.model is not None:
        own_state["t3s_full"] = own_state["t3s_masked"] = state_bytes(list(student.model.parameters()),
                                                                       student_optimizer)
    for name, contender in others.items():
        opt = contender.optimizer if name == "hf_plain" else contender.trainer.optimizer
        own_state[name] = state_bytes(list(contender.model.parameters()), opt)
    for name, seconds in timings.seconds.items():
        if not seconds or name not in args.contenders:
            continue
        median = statistics.median(seconds)
        result[f"median_s_{name}"] = median
        result[f"steps_s_{name}"] = [round(s, 4) for s in seconds]
        result[f"median_wall_s_{name}"] = statistics.median(timings.wall[name])
        result[f"tps_{name}"] = work.real_tokens / median
        if memory_measured(device):
            result[f"peak_mib_{name}"] = (own_state[name] + timings.growth[name]) / 2**20
        if device.type == "cuda":
            result[f"mfu_{name}"] = flops / median / (args.peak_tflops * 1e12)
    if "tps_hf_plain" in result and "tps_t3s_full" in result:
        result["ratio_full_vs_hf"] = result["tps_t3s_full"] / result["tps_hf_plain"]
        if memory_measured(device):
            result["ratio_peak_mem_full_vs_hf"] = result["peak_mib_t3s_full"] / result["peak_mib_hf_plain"]
    if "median_s_t3s_masked" in result and "median_s_t3s_full" in result:
        result["ratio_masked_vs_full"] = result["median_s_t3s_masked"] / result["median_s_t3s_full"]
    if "median_wall_s_hf_plain" in result and "median_wall_s_t3s_full" in result:
        result["wall_ratio_full_vs_hf"] = result["median_wall_s_hf_plain"] / result["median_wall_s_t3s_full"]
    if "median_wall_s_t3s_masked" in result and "median_wall_s_t3s_full" in result:
        result["wall_ratio_masked_vs_full"] = result["median_wall_s_t3s_masked"] / result["median_wall_s_t3s_full"]
    if "tps_trl" in result and "tps_t3s_full" in result:
        result["ratio_full_vs_trl"] = result["tps_t3s_full"] / result["tps_trl"]
    if scoring:
        result.update(scoring)
        if "tps_t3s_full" in result:
            result["ratio_score_vs_train"] = scoring["tps_score"] / result["tps_t3s_full"]
    return result


def run_scoring_only(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Scoring of one ``--score-length`` row (bf16 weights on CUDA): tokens/s and peak memory."""
    config = dict(MODELS[args.model])
    config["max_position_embeddings"] = max(config["max_position_embeddings"], args.score_length)
    dtype = "float32" if args.precision == "fp32" else "bfloat16"
    student = ARStudent(model_config=config, dtype=dtype, attn_implementation=args.attn)
    with _quiet_logs(), torch.device(device):
        student.configure_model()
    model = student.model.to(device)
    work = fixed_workload(1, args.score_length, config["vocab_size"])
    step_batch = t3s_step_batch(work, args.score_length, 1)
    return {"data": work.source, **time_scoring(model, step_batch, device, args.chunk, repeats=args.cycles)}


def memory_measured(device: torch.device) -> bool:
    """Per-contender peak memory is meaningful on CUDA, and on CPU only with glibc's own allocator settings
    (with the tuned heap, freed memory stays in the process, so RSS only ever grows)."""
    return device.type == "cuda" or os.environ.get("GLIBC_TUNABLES") != ALLOCATOR_TUNABLES


def score_step(model: torch.nn.Module, step_batch: dict[str, Any], device: torch.device, chunk: int) -> int:
    """Scoring as ``t3s score`` does it: no grad, final hidden states, chunked c_t of the response tokens."""
    n = 0
    with torch.no_grad():
        for mb in step_batch["micro_batches"]:
            ids, pos = mb["input_ids"].to(device), mb["position_ids"].to(device)
            mask = mb["labels"].to(device) != -100
            mask[:, 0] = False
            n += logprobs_at(model, hidden_states(model, ids, pos), ids, mask, chunk_size=chunk).numel()
    return n


def time_scoring(model: torch.nn.Module, step_batch: dict[str, Any], device: torch.device, chunk: int,
                 repeats: int) -> dict[str, Any]:
    """Median seconds, real tokens/s and peak memory growth of scoring ``step_batch`` ``repeats`` times."""
    was_training = model.training
    model.eval()
    score_step(model, step_batch, device, chunk)  # warm-up
    seconds, growth = [], 0
    for _ in range(repeats):
        (s, _), g = _timed(lambda: score_step(model, step_batch, device, chunk), device)
        seconds.append(s)
        growth = max(growth, g)
    model.train(was_training)
    real = sum(int((mb["trace_index"] >= 0).sum()) for mb in step_batch["micro_batches"])
    median = statistics.median(seconds)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {"median_s_score": median, "tps_score": real / median, "score_tokens": real}
    if memory_measured(device):
        out["peak_mib_score"] = (weights + growth) / 2**20
    return out


def _masked_fraction(student: ARStudent, strategy: T3S, step_batch: dict[str, Any]) -> float:
    masked = total = 0
    for mb in step_batch["micro_batches"]:
        ctx = student.selection_context(mb)
        keep = strategy.loss_mask(ctx)
        total += int(ctx.response_mask.sum())
        masked += int((ctx.response_mask & ~keep).sum())
    return masked / max(total, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--quick", action="store_true", help="small CPU-friendly sizes (the acceptance contract)")
    p.add_argument("--model", choices=sorted(MODELS), help="default: cpu-small on CPU, qwen3-1.7b on CUDA")
    p.add_argument("--data", nargs="+", choices=("r1", "fixed"), help="workloads; the first gives the headline keys")
    p.add_argument("--traces", type=int, help="traces per optimizer step")
    p.add_argument("--max-length", type=int, help="t3s row length, longest trace, fixed row length")
    p.add_argument("--hf-micro-batch", type=int, help="traces per padded micro-batch of the HF/TRL loops")
    p.add_argument("--t3s-micro-rows", type=int, default=1, help="packed rows per ARStudent micro-batch")
    p.add_argument("--cycles", type=int, help="timed cycles (each: one step of every contender) after 1 warm-up")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    p.add_argument("--precision", choices=("fp32", "bf16-mixed", "bf16-true"),
                   help="default fp32 on CPU, bf16-mixed (fp32 master weights) on CUDA")
    p.add_argument("--attn", default="auto", help="ARStudent attention (auto: flash/flex on CUDA, sdpa on CPU)")
    p.add_argument("--hf-attn", default="sdpa", help="attention of the HF and TRL contenders (transformers' default)")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in t3s and the plain HF loop")
    p.add_argument("--chunk", type=int, default=2048, help="rows per chunk of the t3s LM-head kernel")
    p.add_argument("--unselected-sample", type=int, default=128, help="ARStudent unselected_logprob_sample")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator peak for MFU (H100/H200 bf16 dense)")
    p.add_argument("--no-score", dest="score", action="store_false",
                   help="skip timing scoring (no-grad chunked c_t, as `t3s score`) of the step batch")
    p.add_argument("--score-only", action="store_true", help="only time scoring of one --score-length row")
    p.add_argument("--score-length", type=int, default=32_768, help="row length of --score-only")
    p.add_argument("--allocator-tuning", action="store_true",
                   help="on CPU, restart with GLIBC_TUNABLES that keep freed memory (faster on some VMs; RSS only "
                        "grows, so per-contender peaks are not reported)")
    p.add_argument("--no-allocator-tuning", action="store_true", help="glibc's own settings (the default now)")
    p.add_argument("--wall-clock", action="store_true",
                   help="on CPU, report wall time instead of process CPU time (both are in the JSON)")
    p.add_argument("--json", type=Path, help="also write the final JSON object here")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    cpu = args.device == "cpu"
    defaults = {
        "model": "cpu-small" if cpu else "qwen3-1.7b",
        "data": ["r1", "fixed"],
        "traces": (2 if args.quick else 8) if cpu else 16,
        "max_length": (1536 if args.quick else 2048) if cpu else 8192,
        "hf_micro_batch": 2,
        "cycles": (3 if args.quick else 5) if cpu else 5,
        "precision": "fp32" if cpu else "bf16-mixed",
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick and cpu and args.data == ["r1", "fixed"]:
        args.data = ["r1"]
    for name in ("traces", "max_length", "hf_micro_batch", "cycles", "t3s_micro_rows", "chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def versions() -> dict[str, str]:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "lightning": L.__version__}
    with contextlib.suppress(ImportError):
        import trl

        out["trl"] = trl.__version__
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    Clock.wall_only = args.wall_clock
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    vocab = MODELS[args.model]["vocab_size"]
    report: dict[str, Any] = {"workloads": {}}
    if args.score_only:
        report["scoring"] = run_scoring_only(args, device)
        print(json.dumps(report["scoring"]), flush=True)
    for name in [] if args.score_only else args.data:
        work = (r1_workload(args.traces, args.max_length, vocab) if name == "r1"
                else fixed_workload(args.traces, args.max_length, vocab))
        result = run_workload(args, work, device)
        report["workloads"][name] = result
        print(_table(name, result), flush=True)
    head = report["workloads"].get(args.data[0], report.get("scoring", {}))
    for key in ("tps_t3s_full", "tps_t3s_masked", "tps_hf_plain", "tps_trl", "ratio_full_vs_hf",
                "ratio_masked_vs_full", "ratio_full_vs_trl", "peak_mib_t3s_full", "peak_mib_hf_plain",
                "mfu_t3s_full", "mfu_hf_plain", "tps_score", "peak_mib_score", "ratio_score_vs_train"):
        if key in head:
            report[key] = head[key]
    report["loss_match"] = all(w["loss_match"] is not False for w in report["workloads"].values())
    report.update({
        "headline_workload": "scoring" if args.score_only else args.data[0], "device": _device_name(device),
        "model": args.model,
        "precision": args.precision, "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "quick": args.quick, "versions": versions(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_s": round(time.perf_counter() - started, 1),
        "clock": "wall" if device.type == "cuda" or args.wall_clock else "process_cpu",
        "definitions": {
            "tps": "non-pad tokens of the step / median step seconds (clock: see 'clock'; wall_* use wall time)",
            "ratio_full_vs_hf": "tps_t3s_full / tps_hf_plain (higher is better)",
            "ratio_masked_vs_full": "median T3S step seconds / median FullSFT step seconds (lower is better)",
        },
    })
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, separators=(",", ":")), flush=True)
    return report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"cpu ({name}, {os.cpu_count()} cores)"


def _table(name: str, r: dict[str, Any]) -> str:
    lines = [f"\n[{name}] {r['data']}: {r['traces']} traces, {r['real_tokens']} real tokens "
             f"({r['response_tokens']} trained); t3s {r['t3s_rows']} packed rows of {r['t3s_row_length']}, "
             f"HF {r['hf_padded_tokens']} padded positions; T3S masks {r['t3s_masked_fraction_of_response']:.0%}",
             f"  losses on the same batch: {json.dumps({k: round(v, 6) for k, v in r['losses'].items()})} "
             f"-> match={r['loss_match']}",
             f"  {'contender':<12}{'median s':>10}{'tokens/s':>11}{'peak MiB':>10}"]
    for c in CONTENDERS:
        if f"tps_{c}" in r:
            mfu = f"  MFU {r[f'mfu_{c}']:.1%}" if f"mfu_{c}" in r else ""
            peak = f"{r[f'peak_mib_{c}']:>10.0f}" if f"peak_mib_{c}" in r else f"{'-':>10}"
            lines.append(f"  {c:<12}{r[f'median_s_{c}']:>10.3f}{r[f'tps_{c}']:>11.1f}{peak}{mfu}")
    for c, why in r["skipped"].items():
        lines.append(f"  {c:<12} skipped: {why}")
    if "tps_score" in r:
        peak = f"{r['peak_mib_score']:>10.0f}" if "peak_mib_score" in r else f"{'-':>10}"
        lines.append(f"  {'scoring':<12}{r['median_s_score']:>10.3f}{r['tps_score']:>11.1f}{peak}"
                     "  (no grad, chunked c_t)")
    for key in ("ratio_full_vs_hf", "ratio_masked_vs_full", "ratio_full_vs_trl", "ratio_peak_mem_full_vs_hf",
                "ratio_score_vs_train"):
        if key in r:
            lines.append(f"  {key} = {r[key]:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
