"""Peak memory and time of per-token log-probs through an LM head: naive PyTorch vs ``t3s.ops``.

What it measures
    One forward + backward pass of ``loss = -mean(log p(target))`` for ``N`` tokens, hidden size
    ``H`` and vocabulary ``V`` (default 151936, Qwen3's), done two ways:

    * ``naive``: the plain Hugging Face way, ``logits = F.linear(hidden, W).float()`` then
      ``F.cross_entropy(logits, targets, reduction="none")`` and ``.backward()``; this builds
      ``[N, V]`` fp32 logits, and autograd keeps the log-softmax and its gradient of the same size.
    * ``ours``: :func:`t3s.ops.token_logprobs`, which works ``chunk_size`` rows at a time and
      recomputes the chunk logits in backward.

    The reported peak is the memory ABOVE the inputs (hidden, weight, targets), so it includes the
    gradients of hidden and weight, which both variants must produce. Each variant runs in its own
    subprocess so that peaks cannot mix:

    * CPU: peak resident set size, sampled from ``/proc/self/statm`` by a background thread every
      millisecond and cross-checked with ``resource.getrusage(...).ru_maxrss`` (the larger is used),
      minus the RSS measured right after the inputs were allocated.
    * CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
      ``torch.cuda.memory_allocated()`` at that point (after one untimed warm-up pass).

    Time is the wall clock of that one forward + backward (synchronised on CUDA). The ``loss``
    of both variants is compared as a correctness check.

Configurations
    * always (unless ``--no-cpu``): 8192 tokens, hidden 1024, fp32, CPU. The naive run needs about
      20 GiB of RAM (four [N, V] fp32 tensors are alive at its peak) and takes ~2.5 minutes on two
      cores; it is skipped if less memory is available. Ours needs ~1.8 GiB.
    * with ``--gpu`` (default when CUDA is available, ``--no-gpu`` to disable): 8192 x 1024 fp32 and
      32768 tokens x hidden 4096 in bf16, on CUDA (the naive 32k run needs ~80 GiB of GPU memory;
      if it does not fit it is reported as OOM).

How to run
    python benchmarks/logprob_memory.py                # CPU config (+ GPU configs if CUDA is there)
    python benchmarks/logprob_memory.py --gpu --no-cpu # GPU configs only
    python benchmarks/logprob_memory.py --vocab 32000  # smaller/faster variant

    It prints a table (config, naive MiB, ours MiB, ratio, naive s, ours s) and, as the last line,
    ``ratio_8192=<naive peak / ours peak>`` for the 8192-token configuration (CPU if it ran).
    A single measurement: ``python benchmarks/logprob_memory.py --worker ours --tokens 8192 \
    --hidden 1024 --vocab 151936 --device cpu`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024**2
DEFAULT_VOCAB = 151936
DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class Config:
    """One benchmark setting."""

    tokens: int
    hidden: int
    dtype: str
    device: str

    @property
    def label(self) -> str:
        return f"{self.tokens} tok x H{self.hidden} {self.dtype} {self.device}"


# --------------------------------------------------------------------------------------------------
# worker side (runs in a subprocess, measures exactly one variant)
# --------------------------------------------------------------------------------------------------


class RssSampler:
    """Background thread recording the maximum resident set size of this process (Linux only)."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def current(self) -> int:
        """Current RSS in bytes."""
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _step(variant: str, hidden: Any, weight: Any, targets: Any, chunk_size: int) -> float:
    """One forward + backward of ``-mean(log p(target))``; returns the loss value."""
    import torch.nn.functional as F

    if variant == "naive":
        logits = F.linear(hidden, weight).float()  # what HF causal-LM heads do before the loss
        loss = F.cross_entropy(logits, targets, reduction="none").mean()
    else:
        from t3s.ops import token_logprobs

        loss = -token_logprobs(hidden, weight, targets, chunk_size=chunk_size).mean()
    loss.backward()
    return float(loss.detach())


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Allocate inputs, run one measured forward + backward and return the measurements."""
    import torch

    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    gen = torch.Generator(device=device).manual_seed(0)
    # Random inputs, created in place so that no input-sized temporaries inflate the CPU peak RSS.
    hidden = torch.randn(args.tokens, args.hidden, generator=gen, device=device, dtype=dtype)
    weight = torch.randn(args.vocab, args.hidden, generator=gen, device=device, dtype=dtype)
    weight.mul_(args.hidden**-0.5 * 2.0)
    hidden.requires_grad_()
    weight.requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,), generator=gen, device=device)

    if device.type == "cuda":
        _step(args.worker, hidden, weight, targets, args.chunk_size)  # warm-up (kernels, cuBLAS workspace)
        hidden.grad = weight.grad = None
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        start = time.perf_counter()
        loss = _step(args.worker, hidden, weight, targets, args.chunk_size)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        gc.collect()
        with RssSampler() as sampler:
            baseline = sampler.current()
            start = time.perf_counter()
            loss = _step(args.worker, hidden, weight, targets, args.chunk_size)
            seconds = time.perf_counter() - start
        max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        peak = max(sampler.peak, max_rss) - baseline
    return {
        "variant": args.worker,
        "peak_mib": peak / MIB,
        "seconds": seconds,
        "loss": loss,
        "inputs_mib": (hidden.nbytes + weight.nbytes + targets.nbytes) / MIB,
    }


# --------------------------------------------------------------------------------------------------
# driver side
# --------------------------------------------------------------------------------------------------


def _available_ram() -> int:
    """MemAvailable from /proc/meminfo in bytes (a large number when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 60


def _naive_estimate(cfg: Config, vocab: int) -> int:
    """Rough bytes of RAM the naive CPU run needs: inputs, their grads, 4 fp32 [N, V] tensors, runtime."""
    itemsize = 4 if cfg.dtype == "fp32" else 2
    inputs = (cfg.tokens + vocab) * cfg.hidden * itemsize
    return 2 * inputs + 4 * cfg.tokens * vocab * 4 + (512 << 20)


def spawn(variant: str, cfg: Config, vocab: int, chunk_size: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and parse its JSON line."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", variant,
        "--tokens", str(cfg.tokens), "--hidden", str(cfg.hidden), "--vocab", str(vocab),
        "--device", cfg.device, "--dtype", cfg.dtype, "--chunk-size", str(chunk_size),
    ]  # fmt: skip
    env = dict(os.environ)
    repo_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        reason = "OOM" if "OutOfMemory" in tail[0] or proc.returncode == -9 else tail[0][:60]
        return {"variant": variant, "error": reason}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--worker", choices=("naive", "ours"), help="internal: measure one variant")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=DEFAULT_VOCAB)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--gpu", action="store_true", help="run the CUDA configs (default if available)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA configs")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU config")
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args)))
        return

    import torch
    from rich.console import Console
    from rich.table import Table

    # Rich falls back to 80 columns when not attached to a terminal; the table needs a bit more.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    configs: list[Config] = [] if args.no_cpu else [Config(8192, 1024, "fp32", "cpu")]
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu given but CUDA is not available")
    if (args.gpu or torch.cuda.is_available()) and not args.no_gpu:
        configs += [Config(8192, 1024, "fp32", "cuda"), Config(32768, 4096, "bf16", "cuda")]
    if not configs:
        parser.error("nothing to run")

    results: list[tuple[Config, dict[str, Any], dict[str, Any]]] = []
    for cfg in configs:
        measured: dict[str, dict[str, Any]] = {}
        for variant in ("ours", "naive"):
            need = _naive_estimate(cfg, args.vocab)
            if variant == "naive" and cfg.device == "cpu" and need > _available_ram():
                measured[variant] = {"error": f"skipped: needs ~{need / 2**30:.0f} GiB RAM"}
                continue
            with console.status(f"[bold]{variant}[/] {cfg.label}, V={args.vocab} ..."):
                measured[variant] = spawn(variant, cfg, args.vocab, args.chunk_size)
            res = measured[variant]
            done = res.get("error") or f"{res['peak_mib']:.0f} MiB above inputs, {res['seconds']:.1f} s"
            console.log(f"{variant:5s} {cfg.label}: {done}")
        results.append((cfg, measured["naive"], measured["ours"]))

    table = Table(
        title=f"forward+backward peak memory above inputs (V={args.vocab}, chunk {args.chunk_size})"
    )
    for col in ("config", "naive MiB", "ours MiB", "ratio", "naive s", "ours s", "|Δloss|"):
        table.add_column(col, justify="left" if col == "config" else "right")
    ratio_8192: float | None = None
    for cfg, naive, ours in results:
        ok = "error" not in naive and "error" not in ours
        ratio = naive["peak_mib"] / max(ours["peak_mib"], 1e-9) if ok else None
        if ratio is not None and cfg.tokens == 8192 and ratio_8192 is None:
            ratio_8192 = ratio
        table.add_row(
            cfg.label,
            naive.get("error") or f"{naive['peak_mib']:.0f}",
            ours.get("error") or f"{ours['peak_mib']:.0f}",
            f"{ratio:.2f}x" if ratio is not None else "-",
            f"{naive['seconds']:.2f}" if "seconds" in naive else "-",
            f"{ours['seconds']:.2f}" if "seconds" in ours else "-",
            f"{abs(naive['loss'] - ours['loss']):.1e}" if ok else "-",
        )
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    print(f"ratio_8192={ratio_8192:.2f}" if ratio_8192 is not None else "ratio_8192=nan")


if __name__ == "__main__":
    main()
