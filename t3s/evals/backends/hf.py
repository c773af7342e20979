"""The ``hf`` backend: an autoregressive student sampled with its Hugging Face causal LM and KV cache
(:class:`HFGenerator`), in the training process or from saved folders on ``t3s evaluate``'s workers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from t3s.evals.backends.base import Generation, Generator, ServeOptions, TorchBackend, TorchGenerator
from t3s.evals.backends.sampling import SamplingParams

__all__ = ["BACKEND", "HFBackend", "HFGenerator", "decode_leaving_finished"]


class HFGenerator(TorchGenerator):
    """Batched generation with a Hugging Face causal LM and its KV cache.

    Prompts are expanded ``n`` times, sorted by length (less padding), LEFT padded and generated in
    batches of ``batch_size`` rows. A row that emits a stop token leaves the batch (its KV cache rows are
    dropped, :func:`decode_leaving_finished`), so the decode steps of a batch shrink with its unfinished rows
    instead of running to its longest response; greedy outputs equal ``model.generate``'s (tested). A model
    whose cache is not a transformers ``Cache`` (older remote code) goes through ``model.generate``, as does
    every model with ``leave_finished=False``. Sampling is seeded per batch (``params.seed`` + batch index) inside
    a forked RNG, so results are reproducible for the same inputs and ``batch_size`` and the global RNG
    is untouched. Generation stops at EOS / end-of-turn tokens (:func:`default_stop_token_ids` unless
    ``stop_token_ids`` is given). The model is put in eval mode and restored afterwards.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 8,
        stop_token_ids: Sequence[int] | None = None,
        show_progress: bool = True,
        leave_finished: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.stop_token_ids = self.given_or_default_stops(stop_token_ids, tokenizer, model)
        if not self.stop_token_ids:
            raise ValueError("no stop token: the tokenizer has no eos_token_id; pass stop_token_ids")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else self.stop_token_ids[0]
        self.show_progress = show_progress
        self.leave_finished = leave_finished

    def _generate_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "use_cache": True,
            "eos_token_id": self.stop_token_ids,
            "pad_token_id": self.pad_token_id,
        }
        if params.greedy:  # sampling flags are left out: transformers would warn that they are unused
            kw["do_sample"] = False
        else:  # every flag explicit, so sampling defaults of the checkpoint's generation_config never leak in
            kw.update(
                do_sample=True,
                temperature=float(params.temperature),
                top_p=float(params.top_p),
                top_k=int(params.top_k or 0),
            )
        return kw

    def _generate_batch(self, index: int, prompts: list[list[int]], params: SamplingParams,
                        device: torch.device) -> list[Generation]:
        """One batch, sampled inside a forked RNG seeded with ``params.seed + index``."""
        input_ids, attention_mask = self._left_pad(prompts, device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(params.seed) + index)
            new_tokens = None
            if self.leave_finished:
                new_tokens = decode_leaving_finished(self.model, input_ids, attention_mask, params,
                                                     self.stop_token_ids)
            if new_tokens is None:
                seqs = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                           **self._generate_kwargs(params))
                new_tokens = seqs[:, input_ids.shape[1] :].tolist()
        # a row without a stop token ran to the limit (rows that stopped early always contain one)
        limit = params.max_new_tokens
        return [self._generation(toks, limit_reached=len(toks) >= limit) for toks in new_tokens]

    def _left_pad(self, seqs: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
        return ids.to(device), mask.to(device)


def _sampling_processors(params: SamplingParams) -> Any:
    """transformers' own warpers, in ``generate``'s order: temperature, top-k, top-p."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if float(params.temperature) != 1.0:
        warpers.append(TemperatureLogitsWarper(float(params.temperature)))
    if params.top_k:
        warpers.append(TopKLogitsWarper(int(params.top_k)))
    if float(params.top_p) < 1.0:
        warpers.append(TopPLogitsWarper(float(params.top_p)))
    return warpers


def decode_leaving_finished(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            params: SamplingParams, stop_token_ids: Sequence[int]) -> list[list[int]] | None:
    """Decode a left-padded batch with the KV cache; a row leaves the batch (and its cache rows are dropped)
    at its first stop token, which it keeps, as ``model.generate`` would return it before its padding.

    Greedy when ``params.greedy``, else sampling from the global RNG after transformers' warpers. Returns
    the new tokens of each row, or ``None`` when the model's cache is not a transformers ``Cache`` (the caller
    then uses ``model.generate``).
    """
    import inspect

    from transformers import Cache

    # transformers ≥ 5.2x names the argument ``cache`` (``past_key_values`` is its deprecated alias)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rows = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(rows)]
    alive = torch.arange(rows, device=input_ids.device)
    stops = torch.tensor(sorted(set(stop_token_ids)), device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    warpers = None if params.greedy else _sampling_processors(params)
    step_ids, mask = input_ids, attention_mask
    seen = input_ids
    cache: Any = None
    next_position = positions[:, -1:] + 1
    for t in range(int(params.max_new_tokens)):
        try:
            result = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                           logits_to_keep=1, **{cache_arg: cache})
        except TypeError:  # remote code without ``logits_to_keep``: its own generate
            if t == 0:
                return None
            raise
        cache = getattr(result, "past_key_values", None) or getattr(result, "cache", None)
        if t == 0 and not isinstance(cache, Cache):
            return None
        logits = result.logits[:, -1, :].to(dtype=torch.float32)
        if warpers is None:
            tokens = logits.argmax(dim=-1)
        else:
            tokens = torch.multinomial(torch.softmax(warpers(seen, logits), dim=-1), num_samples=1).squeeze(1)
        for row, token in zip(alive.tolist(), tokens.tolist()):
            out[row].append(token)
        keep = ~torch.isin(tokens, stops)
        if not bool(keep.any()):
            break
        if not bool(keep.all()):  # finished rows leave: the batch, its mask, positions and KV cache shrink
            index = keep.nonzero().squeeze(1)
            alive, tokens, mask, next_position = alive[index], tokens[index], mask[index], next_position[index]
            seen = seen[index]
            cache.batch_select_indices(index)
        step_ids = tokens[:, None]
        if warpers is not None:
            seen = torch.cat([seen, step_ids], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = next_position
        next_position = next_position + 1
    return out


class HFBackend(TorchBackend):
    """``model.generate``-style sampling of an autoregressive student (:class:`HFGenerator`)."""

    name: ClassVar[str] = "hf"

    def from_student(self, student: Any, *, batch_size: int, show_progress: bool) -> Generator:
        return HFGenerator(student.model, student.tokenizer, batch_size=batch_size, show_progress=show_progress)

    def from_folder(self, folder: Path, tokenizer: Any, device: Any, options: ServeOptions) -> Generator:
        from transformers import AutoModelForCausalLM

        from t3s.runtime.threads import right_size_threads

        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=options.trust_remote_code)
        right_size_threads(model, device)
        return HFGenerator(model.to(device).eval(), tokenizer, batch_size=options.batch_size, show_progress=False)


#: The backend this module registers (:data:`t3s.evals.backends.BACKENDS`).
BACKEND = HFBackend()
