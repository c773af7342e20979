"""The parent side of ``t3s evaluate --backend vllm``: worker processes in the vLLM environment, one engine each.

:class:`VLLMWorkerPool` starts ``devices / tensor_parallel_size`` copies of :mod:`t3s.evals.backends.vllm_worker` with
the given interpreter (``CUDA_VISIBLE_DEVICES`` set to each worker's GPUs), serves every checkpoint with
the same engines (weights reloaded in place; a fresh process only when a worker asks for one) and speaks the
:class:`~t3s.evals.backends.base.Generator` protocol: prompts are split across the workers, responses come
back as token ids and are decoded here, with the same stop tokens as the HF backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from t3s.evals.backends.base import (
    BackendError,
    Generation,
    Generator,
    Job,
    ServeOptions,
    default_stop_token_ids,
    stopped_generation,
)
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.backends.vllm_worker import ENGINE_OPTIONS, disallowed_options

__all__ = ["BACKEND", "ENGINE_OPTIONS", "VLLMBackend", "VLLMError", "VLLMWorkerPool", "check_engine_options",
           "to_vllm_sampling_kwargs", "worker_devices"]

WORKER_SCRIPT = Path(__file__).with_name("vllm_worker.py")
README_SECTION = 'the README section "Evaluating with vLLM"'


class VLLMError(BackendError):
    """The vLLM environment or a worker cannot do what was asked (one line, names the interpreter)."""


def check_engine_options(engine: dict[str, Any]) -> None:
    """Refuse ``vllm.LLM`` options outside :data:`ENGINE_OPTIONS` (the worker refuses them too)."""
    refused = disallowed_options(engine)
    if refused:
        hint = " (trust_remote_code: give --trust_remote_code true)" if "trust_remote_code" in refused else ""
        raise VLLMError(f"vllm options not allowed: {', '.join(refused)}{hint}; allowed: {', '.join(ENGINE_OPTIONS)}")


def worker_devices(devices: int, tensor_parallel_size: int, visible: str | None = None) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` of each worker: ``devices`` GPUs in groups of ``tensor_parallel_size``."""
    if tensor_parallel_size < 1 or devices < tensor_parallel_size or devices % tensor_parallel_size:
        raise VLLMError(f"--devices {devices} cannot be split into workers of tensor_parallel_size "
                        f"{tensor_parallel_size} GPUs each")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(devices)]
    if len(ids) < devices:
        raise VLLMError(f"--devices {devices} but CUDA_VISIBLE_DEVICES lists {len(ids)} GPU(s): {visible}")
    return [",".join(ids[i : i + tensor_parallel_size]) for i in range(0, devices, tensor_parallel_size)]


class _Worker:
    """One worker process and its line protocol."""

    def __init__(self, python: str, engine: dict[str, Any], gpus: str, trust_remote_code: bool = False) -> None:
        self.python, self.engine, self.gpus, self.trust_remote_code = python, engine, gpus, trust_remote_code
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus}
        trust = ["--trust-remote-code"] if trust_remote_code else []
        try:
            self.process = subprocess.Popen(
                [python, str(WORKER_SCRIPT), "--engine", json.dumps(engine), *trust],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8",
            )
        except OSError as err:
            raise VLLMError(f"--python {python}: cannot run it ({err.strerror}); see {README_SECTION}") from None
        ready = self.receive()
        if not ready.get("ok"):
            self.process.wait(timeout=30)
            raise VLLMError(f"--python {python} has no vLLM ({ready.get('error', 'import failed')}); "
                            f"make the vLLM environment as in {README_SECTION}")
        self.version = str(ready.get("vllm"))

    def send(self, **request: Any) -> None:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._died() from None

    def receive(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise self._died()
        return json.loads(line)

    def call(self, **request: Any) -> dict[str, Any]:
        self.send(**request)
        return self.checked(self.receive())

    def checked(self, answer: dict[str, Any]) -> dict[str, Any]:
        if not answer.get("ok"):
            raise VLLMError(f"vLLM worker (GPUs {self.gpus}): {answer.get('error')}")
        return answer

    def _died(self) -> VLLMError:
        code = self.process.wait(timeout=60)
        return VLLMError(f"vLLM worker (GPUs {self.gpus}, {self.python}) exited with code {code}; its log is above")

    def close(self, timeout: float = 120, graceful: bool = True) -> int:
        """Ask the worker to drop its engine and exit; kill it if it does not within ``timeout`` seconds
        (at once when not ``graceful``: after an error it may still be generating)."""
        if self.process.poll() is None and not graceful:
            self.process.kill()
            self.process.wait()
        elif self.process.poll() is None:
            try:
                self.call(op="exit")
            except (VLLMError, OSError, ValueError):
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        return int(self.process.returncode)


class VLLMWorkerPool:
    """vLLM workers serving one checkpoint at a time (the ``Generator`` protocol).

    Args:
        devices: GPUs in all; ``devices / tensor_parallel_size`` workers.
        python: the interpreter of the vLLM environment (default: this one).
        engine: ``vllm.LLM`` keyword arguments (only :data:`ENGINE_OPTIONS`; others are refused).
        trust_remote_code: let vLLM run the model folders' own code (the user's command line opted in).

    Use as a context manager: every worker is closed (engine dropped, process joined) on the way out.
    ``restarts`` counts fresh processes started after the first engines (0 when weights reload in place).
    """

    def __init__(self, devices: int = 1, python: str | None = None, engine: dict[str, Any] | None = None,
                 trust_remote_code: bool = False) -> None:
        self.python = os.path.expanduser(python) if python else sys.executable
        self.engine = dict(engine or {})
        check_engine_options(self.engine)
        self.trust_remote_code = trust_remote_code
        tp = int(self.engine.get("tensor_parallel_size", 1))
        self.gpus = worker_devices(devices, tp, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.tokenizer: Any = None
        self.stop_token_ids: list[int] = []
        self.folder: Path | None = None
        try:
            self.workers = [_Worker(self.python, self.engine, gpus, trust_remote_code) for gpus in self.gpus]
        except BaseException:
            self.close(graceful=False)
            raise

    def __enter__(self) -> VLLMWorkerPool:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.close(graceful=kind is None)

    def load(self, folder: str | Path, tokenizer: Any) -> VLLMWorkerPool:
        """Serve ``folder`` on every worker (built, reloaded in place, or in a fresh process)."""
        folder = Path(folder).resolve()
        for worker in self.workers:
            worker.send(op="load", model=str(folder))
        for i, worker in enumerate(self.workers):
            if worker.checked(worker.receive())["engine"] == "restart":
                worker.close()
                self.workers[i] = _Worker(self.python, self.engine, worker.gpus, self.trust_remote_code)
                self.workers[i].call(op="load", model=str(folder))
                self.restarts += 1
        self.folder, self.tokenizer = folder, tokenizer
        self.stop_token_ids = folder_stop_token_ids(folder, tokenizer)
        return self

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Sample ``params.n`` generations per prompt; prompt i goes to worker i mod workers."""
        if self.tokenizer is None:
            raise VLLMError("VLLMWorkerPool.generate before load")
        sampling = {**to_vllm_sampling_kwargs(params), "stop_token_ids": self.stop_token_ids, "detokenize": False}
        shards = [list(range(w, len(prompts), len(self.workers))) for w in range(len(self.workers))]
        for worker, shard in zip(self.workers, shards):
            worker.send(op="generate", prompts=[prompts[i] for i in shard], sampling=sampling)
        out: list[list[Generation]] = [[] for _ in prompts]
        for worker, shard in zip(self.workers, shards):
            outputs = worker.checked(worker.receive())["outputs"]
            for i, samples in zip(shard, outputs):
                out[i] = [stopped_generation(s["token_ids"], self.stop_token_ids, self.tokenizer,
                                             limit_reached=s["finish_reason"] == "length") for s in samples]
        return out

    def close(self, graceful: bool = True) -> list[int]:
        """Close every worker (killed when not ``graceful``); their exit codes."""
        codes = [worker.close(graceful=graceful) for worker in self.workers]
        self.workers = []
        return codes


def folder_stop_token_ids(folder: Path, tokenizer: Any) -> list[int]:
    """The HF backend's stop tokens for a folder: the tokenizer's (EOS, end of turn) and its generation config's EOS."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_pretrained(folder) if (folder / "generation_config.json").is_file() else None
    return default_stop_token_ids(tokenizer, generation_config=config)


def to_vllm_sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Map :class:`SamplingParams` to ``vllm.SamplingParams`` keyword arguments."""
    return {
        "n": int(params.n),
        "temperature": float(params.temperature),
        "top_p": 1.0 if params.greedy else float(params.top_p),
        "top_k": int(params.top_k) if params.top_k else -1,
        "max_tokens": int(params.max_new_tokens),
        "seed": int(params.seed),
    }


class VLLMBackend:
    """Engines in a separate vLLM environment (:class:`VLLMWorkerPool`), reused across checkpoints; this process
    renders, grades and writes. Serves saved folders only (``BenchmarkCallback`` mode ``subprocess`` or
    ``defer``), of autoregressive students."""

    name = "vllm"
    inline = False

    def serves(self, family: str) -> bool:
        return family == "hf"

    def check(self, options: ServeOptions) -> None:
        check_engine_options(options.engine)

    def from_student(self, student: Any, *, batch_size: int, show_progress: bool) -> Generator:
        raise VLLMError("the vLLM backend runs in its own environment through `t3s evaluate`: "
                        "set mode 'subprocess' or 'defer'")

    def run(self, job: Job, plan: Any, devices: int, options: ServeOptions) -> None:
        with VLLMWorkerPool(devices, python=options.python, engine=options.engine,
                            trust_remote_code=options.trust_remote_code) as pool:
            job(0, 1, plan, pool.load)


#: The backend this module registers (:data:`t3s.evals.backends.BACKENDS`).
BACKEND = VLLMBackend()
