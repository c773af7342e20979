"""The trajectory scorer: c_t(θ_0), c_t(θ_b) and Δc_t for every trained token of the dataset."""

from __future__ import annotations

import gc
import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from t3s.errors import T3SError
from t3s.ops.causal_lm import DTYPES, hidden_states, logprobs_at
from t3s.ops.hf_folders import CheckpointError, check_finite, check_hf_folder, looks_local
from t3s.runtime.threads import right_size_threads
from t3s.selection.scores import SUMMARY_FILE, ScoreCache, write_json_atomic

log = logging.getLogger(__name__)


class TokenizerMismatchError(T3SError, ValueError):
    """A checkpoint's tokenizer differs from the tokenizer the data was rendered with."""


def check_tokenizer_matches(checkpoint: str | Path, tokenizer: PreTrainedTokenizerBase,
                            role: str = "checkpoint") -> None:
    """Refuse a checkpoint whose saved tokenizer has a different vocabulary from ``tokenizer``.

    Checkpoints without tokenizer files (plain weight folders) are accepted as they are.
    """
    path = Path(checkpoint)
    if path.is_dir() and not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        return
    try:
        other = AutoTokenizer.from_pretrained(str(checkpoint))
    except OSError as err:
        raise FileNotFoundError(f"cannot load the {role} checkpoint '{checkpoint}': {err}") from None
    if other.get_vocab() != tokenizer.get_vocab():
        raise TokenizerMismatchError(
            f"the {role} '{checkpoint}' uses a different tokenizer ({len(other)} tokens) from the data's "
            f"'{tokenizer.name_or_path}' ({len(tokenizer)} tokens); Δc is only meaningful on shared token ids"
        )


def resolve_device(device: str) -> str:
    """``auto``: CUDA when there is a GPU, else the CPU; any other value as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def data_offsets(traces: list[Any]) -> torch.Tensor:
    """``[N+1]`` start of each trace on the flat token axis of a score cache."""
    lengths = torch.tensor([len(t.input_ids) for t in traces], dtype=torch.long)
    return torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])


@torch.no_grad()
def checkpoint_logprobs(
    checkpoint: str | Path,
    batches: Iterable[dict[str, torch.Tensor]],
    offsets: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    chunk_size: int = 2048,
    desc: str = "scoring",
    trust_remote_code: bool = False,
) -> torch.Tensor:
    """Teacher-forced c_t of every trained token under one checkpoint, flat and aligned with ``offsets``."""
    if looks_local(checkpoint):
        check_hf_folder(checkpoint)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(checkpoint), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
        ).to(device)
    except OSError as err:
        raise FileNotFoundError(f"cannot load checkpoint '{checkpoint}': {str(err).splitlines()[0]}") from None
    except (RuntimeError, ValueError) as err:  # e.g. weights whose shapes do not match config.json
        raise CheckpointError(f"cannot load checkpoint '{checkpoint}': {str(err).strip().splitlines()[0]}") from None
    check_finite(model.named_parameters(), checkpoint)
    right_size_threads(model, device)
    model.eval()
    out = torch.full((int(offsets[-1]),), float("nan"))
    batches = list(batches) if not hasattr(batches, "__len__") else batches
    for mb in tqdm(batches, desc=desc, unit="batch", leave=False, disable=len(batches) < 2 or None):
        mb = {k: v.to(device) for k, v in mb.items() if isinstance(v, torch.Tensor)}
        mask = mb["labels"] != -100
        mask[:, 0] = False
        lp = logprobs_at(model, hidden_states(model, mb["input_ids"], mb["position_ids"]), mb["input_ids"], mask,
                         chunk_size=chunk_size)
        flat = offsets[mb["trace_index"][mask].cpu()] + mb["position_ids"][mask].cpu()
        out[flat] = lp.float().cpu()
    del model
    gc.collect()
    return out


def score(
    datamodule: Any,
    base: str | Path,
    bottleneck: str | Path,
    output: str | Path,
    *,
    device: str = "auto",
    dtype: str = "float32",
    micro_batch_size: int | None = None,
    chunk_size: int = 2048,
    top_tokens: int = 30,
    trust_remote_code: bool = False,
    selection: Any = None,
) -> dict[str, Any]:
    """Score θ_0 and θ_b on the data module's traces and write the cache and ``summary.json`` to ``output``.

    The summary counts anchors and yet-to-learn tokens with ``selection``'s thresholds (a ``T3S`` strategy;
    default: ``T3S``'s defaults)."""
    datamodule.setup("fit")
    tokenizer = datamodule.tokenizer
    for role, ckpt in (("base", base), ("bottleneck", bottleneck)):
        check_tokenizer_matches(ckpt, tokenizer, role)
    device = resolve_device(device)
    offsets = data_offsets(datamodule.traces)
    values = {}
    for role, ckpt in (("base", base), ("bottleneck", bottleneck)):
        values[role] = checkpoint_logprobs(
            ckpt, datamodule.scoring_batches(micro_batch_size), offsets, device=device, dtype=dtype,
            chunk_size=chunk_size, desc=f"scoring {role}", trust_remote_code=trust_remote_code,
        )
    meta = {"data": datamodule.fingerprint(), "base": str(base), "bottleneck": str(bottleneck)}
    cache = ScoreCache(values["base"], values["bottleneck"], offsets, meta)
    cache.check_values(f"scores of {base} and {bottleneck}")  # a NaN checkpoint must not write a cache
    output = Path(output)
    cache.save(output)
    summary = summarize(cache, datamodule.traces, tokenizer, top_tokens=top_tokens, selection=selection)
    write_json_atomic(output / SUMMARY_FILE, summary)
    print_summary(summary)
    return summary


def summarize(cache: ScoreCache, traces: list[Any], tokenizer: PreTrainedTokenizerBase, *, top_tokens: int = 30,
              selection: Any = None) -> dict[str, Any]:
    """Anchor fraction, mean Δc and the most frequent anchor / yet-to-learn tokens, decoded.

    Anchors are tokens with Δc above ``selection.threshold`` and strongly yet-to-learn ones have Δc below
    ``-selection.yet_to_learn_threshold`` (``selection`` a ``T3S`` strategy; default: ``T3S()``'s thresholds).
    """
    if selection is None or not hasattr(selection, "yet_to_learn_threshold"):
        from t3s.selection.strategies import T3S

        selection = T3S()
    threshold, yet_to_learn_threshold = float(selection.threshold), float(selection.yet_to_learn_threshold)
    ids = torch.cat([torch.tensor(t.input_ids, dtype=torch.long) for t in traces]) if traces else torch.zeros(0)
    scored = ~torch.isnan(cache.delta)
    delta, token_ids = cache.delta[scored], ids[scored]
    anchors = delta > threshold
    strong = delta < -yet_to_learn_threshold

    def top(selection: torch.Tensor) -> list[dict[str, Any]]:
        counts = Counter(token_ids[selection].tolist())
        rows = []
        for tid, n in counts.most_common(top_tokens):
            of_token = token_ids == tid
            rows.append({
                "token": tokenizer.decode([tid]),
                "id": tid,
                "count": n,
                "share_of_occurrences": n / int(of_token.sum()),
                "mean_delta": float(delta[of_token].mean()),
            })
        return rows

    n = int(scored.sum())
    return {
        "num_tokens": n,
        "anchor_threshold": threshold,
        "yet_to_learn_threshold": yet_to_learn_threshold,
        "anchor_fraction": float(anchors.float().mean()) if n else 0.0,
        "yet_to_learn_fraction": float((~anchors).float().mean()) if n else 0.0,
        f"delta_below_-{yet_to_learn_threshold}_fraction": float(strong.float().mean()) if n else 0.0,
        "mean_delta": float(delta.mean()) if n else 0.0,
        "mean_base_logprob": float(cache.base_logprob[scored].mean()) if n else 0.0,
        "mean_bottleneck_logprob": float(cache.bottleneck_logprob[scored].mean()) if n else 0.0,
        "top_anchor_tokens": top(anchors),
        "top_yet_to_learn_tokens": top(~anchors),
        "base": cache.meta.get("base"),
        "bottleneck": cache.meta.get("bottleneck"),
    }


def print_summary(summary: dict[str, Any], console: Console | None = None, rows: int = 15) -> None:
    """A readable view of what T3S will mask."""
    console = console or Console()
    console.print(
        f"[bold]Δc summary[/bold]: {summary['num_tokens']} tokens, anchor fraction "
        f"{summary['anchor_fraction']:.3f}, mean Δc {summary['mean_delta']:+.3f} "
        f"(c(θ0) {summary['mean_base_logprob']:.3f} → c(θb) {summary['mean_bottleneck_logprob']:.3f})"
    )
    threshold = summary.get("anchor_threshold", 0.0)
    table = Table(f"anchor token (Δc>{threshold:g})", "count", "share", "yet-to-learn token", "count", "share")
    anchors, others = summary["top_anchor_tokens"], summary["top_yet_to_learn_tokens"]
    for i in range(min(rows, max(len(anchors), len(others)))):
        a = anchors[i] if i < len(anchors) else None
        o = others[i] if i < len(others) else None
        table.add_row(
            json.dumps(a["token"]) if a else "", str(a["count"]) if a else "",
            f"{a['share_of_occurrences']:.2f}" if a else "",
            json.dumps(o["token"]) if o else "", str(o["count"]) if o else "",
            f"{o['share_of_occurrences']:.2f}" if o else "",
        )
    console.print(table)

