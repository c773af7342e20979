"""What every generation backend speaks: :class:`Generation`, the :class:`Generator` protocol (sampling from
one model) and the :class:`Backend` protocol (a way of serving models: in the training process, from saved
folders on worker processes, or in engines of another environment), plus the stop-token helpers they share.

A backend is one module of :mod:`t3s.evals.backends` exporting ``BACKEND`` (listed by name in
:data:`t3s.evals.backends.BACKENDS`). :class:`TorchBackend` is the base of those that load a folder into torch
in this environment (``hf``, ``diffusion``): it runs ``t3s evaluate``'s workers, one per device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from t3s.data.render import stop_token_ids
from t3s.errors import T3SError
from t3s.evals.backends.sampling import SamplingParams

__all__ = [
    "Backend",
    "BackendError",
    "Generation",
    "Generator",
    "Job",
    "Serve",
    "ServeOptions",
    "TorchBackend",
    "TorchGenerator",
    "default_stop_token_ids",
    "stopped_generation",
]


class BackendError(T3SError, ValueError):
    """A backend cannot serve what was asked (unknown name, wrong student family, bad options): one line."""


@dataclass
class Generation:
    """One sampled response.

    ``token_ids`` are the generated tokens without the stop token and padding; ``num_tokens`` is their
    count; ``hit_limit`` is True when generation stopped at ``max_new_tokens`` without a stop token.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    num_tokens: int = 0
    hit_limit: bool = False


@runtime_checkable
class Generator(Protocol):
    """Anything that samples ``params.n`` responses for each tokenized prompt."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Return one list of ``params.n`` generations per prompt, in prompt order."""
        ...


@dataclass(frozen=True)
class ServeOptions:
    """How a backend serves saved checkpoints (``t3s evaluate``).

    Attributes:
        batch_size: prompts per generation batch.
        trust_remote_code: run the folders' own model code (only ever set from the command line).
        run_args: the run's ``model.init_args`` (a family's sampler settings, e.g. a diffusion student's).
        python: the interpreter of another environment (the vLLM backend); None: this one.
        engine: engine options of a backend that has them (``vllm.LLM`` keyword arguments).
    """

    batch_size: int = 16
    trust_remote_code: bool = False
    run_args: dict[str, Any] = field(default_factory=dict)
    python: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)


#: ``serve(folder, tokenizer)``: a generator over one checkpoint folder's weights.
Serve = Callable[[Path, Any], Generator]
#: ``job(rank, world, plan, serve)``: the evaluation of a plan's checkpoints on one worker (``t3s evaluate``).
Job = Callable[[int, int, Any, Serve], None]


class Backend(Protocol):
    """A way to sample from students: in the training process (``from_student``) and from saved folders (``run``).

    Attributes:
        name: its name in :data:`t3s.evals.backends.BACKENDS` (what ``backend:`` says in a config).
        inline: it can sample from the training weights inside the training process
            (``BenchmarkCallback`` mode ``inline``).
    """

    name: str
    inline: bool

    def serves(self, family: str) -> bool:
        """Whether it samples the student family whose ``generation_backend`` is ``family``."""
        ...

    def check(self, options: ServeOptions) -> None:
        """Refuse options it cannot take (one :class:`BackendError` line)."""
        ...

    def from_student(self, student: Any, *, batch_size: int, show_progress: bool) -> Generator:
        """A generator over a training student's own weights (``inline`` backends only)."""
        ...

    def run(self, job: Job, plan: Any, devices: int, options: ServeOptions) -> None:
        """Run ``job`` over ``devices`` devices, each worker serving folders through this backend."""
        ...


class TorchBackend:
    """Base of the backends that load a folder into torch here: ``devices`` workers, one model each at a time,
    joined by gloo (one worker runs in this process). Subclasses give ``from_student`` and ``from_folder``."""

    name: ClassVar[str] = ""
    inline: ClassVar[bool] = True

    def serves(self, family: str) -> bool:
        return family == self.name

    def check(self, options: ServeOptions) -> None:
        """Nothing to refuse: engine options (``vllm:``) belong to another backend and are left unused."""

    def from_student(self, student: Any, *, batch_size: int, show_progress: bool) -> Generator:
        raise NotImplementedError

    def from_folder(self, folder: Path, tokenizer: Any, device: Any, options: ServeOptions) -> Generator:
        """A generator over one checkpoint folder, loaded on ``device``."""
        raise NotImplementedError

    def run(self, job: Job, plan: Any, devices: int, options: ServeOptions) -> None:
        from t3s.runtime.workers import run_on_workers

        run_on_workers(_torch_worker, (self.name, job, plan, options), devices, backend="gloo")


def _torch_worker(rank: int, world: int, name: str, job: Job, plan: Any, options: ServeOptions) -> None:
    """One worker of a :class:`TorchBackend` (module level: spawned workers unpickle it)."""
    from t3s.evals.backends import get_backend
    from t3s.runtime.workers import worker_device

    backend, device = get_backend(name), worker_device(rank)
    job(rank, world, plan, lambda folder, tokenizer: backend.from_folder(folder, tokenizer, device, options))


class TorchGenerator:
    """Base of the torch backends' generators: the batching around one model (``hf`` and ``diffusion``).

    :meth:`generate` expands every prompt ``params.n`` times, sorts the rows by prompt length (stable:
    equal lengths keep prompt / sample order), puts the model in eval mode (restored afterwards) and
    decodes the rows ``batch_size`` at a time (:meth:`_batches`) with :meth:`_generate_batch`, behind a
    progress bar over several batches in a terminal (none for one batch or in a log file). Subclasses set
    the attributes below.
    """

    model: Any
    tokenizer: Any
    batch_size: int
    stop_token_ids: list[int]
    show_progress: bool
    #: the progress bar's label.
    progress_desc: ClassVar[str] = "generate"

    @staticmethod
    def given_or_default_stops(stop_token_ids: Sequence[int] | None, tokenizer: Any, model: Any) -> list[int]:
        """``stop_token_ids`` when given, else :func:`default_stop_token_ids` of the tokenizer and model."""
        if stop_token_ids is not None:
            return list(stop_token_ids)
        return default_stop_token_ids(tokenizer, model)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Generation]]:
        """Sample ``params.n`` generations for each prompt (outer list: prompts, inner: samples)."""
        import torch
        from tqdm.auto import tqdm

        with torch.inference_mode():
            for i, ids in enumerate(prompts):
                if len(ids) == 0:
                    raise ValueError(f"prompt {i} is empty")
            rows = sorted(((p, s) for p in range(len(prompts)) for s in range(params.n)),
                          key=lambda r: len(prompts[r[0]]))
            out: list[list[Generation | None]] = [[None] * params.n for _ in prompts]
            device = next(self.model.parameters()).device
            batches = self._batches(rows, prompts)
            was_training = self.model.training
            self.model.eval()
            try:
                self._before_batches()
                quiet = (not self.show_progress or len(batches) < 2) or None  # None: no bar off a terminal
                bar = tqdm(batches, desc=self.progress_desc, unit="batch", disable=quiet)
                for b, batch in enumerate(bar):
                    generations = self._generate_batch(b, [prompts[p] for p, _ in batch], params, device)
                    for (p, s), generation in zip(batch, generations):
                        out[p][s] = generation
            finally:
                self.model.train(was_training)
        return [[g for g in gens if g is not None] for gens in out]

    def _batches(self, rows: list[tuple[int, int]], prompts: list[list[int]]) -> list[list[tuple[int, int]]]:
        """The sorted ``(prompt, sample)`` rows cut into batches of ``batch_size``."""
        return [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]

    def _before_batches(self) -> None:
        """Called once in eval mode before the first batch (nothing by default)."""

    def _generate_batch(self, index: int, prompts: list[list[int]], params: SamplingParams,
                        device: Any) -> list[Generation]:
        """The generations of batch number ``index``, one per prompt (prompts repeat for ``params.n``)."""
        raise NotImplementedError

    def _generation(self, tokens: Sequence[int], *, limit_reached: bool) -> Generation:
        """:func:`stopped_generation` with this generator's stop tokens and tokenizer."""
        return stopped_generation(tokens, self.stop_token_ids, self.tokenizer, limit_reached=limit_reached)


def default_stop_token_ids(tokenizer: Any, model: Any = None, generation_config: Any = None) -> list[int]:
    """EOS ids of the tokenizer and of the generation config (``generation_config``, else the model's), plus known
    end-of-turn tokens."""
    ids: list[int] = []

    def add(value: Any) -> None:
        if value is None:
            return
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))

    add(getattr(tokenizer, "eos_token_id", None))
    gen_cfg = generation_config if generation_config is not None else getattr(model, "generation_config", None)
    if gen_cfg is not None:
        add(getattr(gen_cfg, "eos_token_id", None))
    add(stop_token_ids(tokenizer))  # end-of-turn tokens the tokenizer has as special tokens (not Qwen's plain `</s>`)
    return ids


def stopped_generation(tokens: Sequence[int], stop_token_ids: Sequence[int], tokenizer: Any, *,
                       limit_reached: bool) -> Generation:
    """A response cut before its first stop token and decoded; it ``hit_limit`` when it has no stop token and
    the backend says its budget ran out (``limit_reached``)."""
    stops = set(stop_token_ids)
    cut = next((i for i, t in enumerate(tokens) if t in stops), None)
    kept = list(tokens if cut is None else tokens[:cut])
    text = tokenizer.decode(kept, skip_special_tokens=False)
    return Generation(text=text, token_ids=kept, num_tokens=len(kept), hit_limit=cut is None and limit_reached)
