"""Confidence trajectories: c_t(θ_k) of every training token at every checkpoint, and the token groups.

A trajectory cache is a folder (``t3s diagnose`` writes ``<phase>/diagnostics/trajectories/``)::

    meta.json              the data fingerprint (as in a score cache) and the scored checkpoints
    offsets.safetensors    offsets [N+1] i64: token t of trace i sits at offsets[i] + t
    step_<N>.safetensors   logprobs [T] f32: c_t under hf/step_<N>, NaN where t is not a trained target

One file per checkpoint, written as soon as it is scored, so memory does not grow with the number of
checkpoints and a rerun reuses every file whose data fingerprint and checkpoint still match. The values are
computed by the same kernel as ``t3s score`` (:func:`t3s.scoring.scorer.checkpoint_logprobs`).

Token groups (see the README, "Diagnostics"): anchors are the tokens whose confidence rose from θ_0 to θ_b
(Δc > threshold), the others are yet to learn. Where the traces hold a ``</think>`` token, each side is split
into reasoning (before it) and answer (after it) spans; otherwise into halves at the side's median Δc.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from t3s.evals.offline import run_checkpoints
from t3s.scoring.scorer import checkpoint_logprobs, data_offsets, resolve_device
from t3s.selection.scores import MATCH_KEYS, write_json_atomic

META_FILE = "meta.json"
OFFSETS_FILE = "offsets.safetensors"

#: The four groups when the traces have reasoning and answer spans.
SPAN_GROUPS = ("anchor_reasoning", "anchor_answer", "yet_to_learn_reasoning", "yet_to_learn_answer")
#: The four groups otherwise: each side split at its median Δc.
HALF_GROUPS = ("anchor_strong", "anchor_weak", "yet_to_learn_mild", "yet_to_learn_deep")
#: The two sides of the groups (their names, in this order, and their group ids): anchors are groups 0-1.
SIDES = {"anchor": (0, 1), "yet_to_learn": (2, 3)}


@dataclass
class TokenGroups:
    """The diagnostics' token groups over the flat token axis of a data set.

    Attributes:
        names: the four group names (:data:`SPAN_GROUPS` or :data:`HALF_GROUPS`).
        ids: ``[T]`` int64, the group (0-3) of each trained token, -1 elsewhere. Groups 0-1 are anchors.
        delta: ``[T]`` Δc = c(θ_b) − c(θ_0) (NaN where not trained).
        threshold: the anchor threshold on Δc.
    """

    names: tuple[str, ...]
    ids: torch.Tensor
    delta: torch.Tensor
    threshold: float

    @property
    def anchor(self) -> torch.Tensor:
        """Anchor tokens (Δc > threshold)."""
        return (self.ids == 0) | (self.ids == 1)

    @property
    def yet_to_learn(self) -> torch.Tensor:
        """Trained tokens that are not anchors."""
        return self.ids >= 2

    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean masks of the two sides and the four groups, by name."""
        out = {"anchor": self.anchor, "yet_to_learn": self.yet_to_learn}
        out.update({name: self.ids == g for g, name in enumerate(self.names)})
        return out


def answer_spans(traces: list[Any], tokenizer: Any, offsets: torch.Tensor) -> torch.Tensor | None:
    """``[T]`` True on the tokens after a trace's last ``</think>``; None when no trace has one."""
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    if not isinstance(think_end, int) or think_end == tokenizer.unk_token_id:
        return None
    answer = torch.zeros(int(offsets[-1]), dtype=torch.bool)
    found = False
    for i, trace in enumerate(traces):
        ids = torch.as_tensor(trace.input_ids)
        where = (ids == think_end).nonzero()
        if len(where):
            found = True
            answer[int(offsets[i]) + int(where[-1]) + 1 : int(offsets[i + 1])] = True
    return answer if found else None


def token_groups(base: torch.Tensor, bottleneck: torch.Tensor, answer: torch.Tensor | None,
                 threshold: float = 0.0) -> TokenGroups:
    """The four groups from c(θ_0), c(θ_b) and the answer spans (``None``: split each side at its median Δc)."""
    delta = bottleneck - base
    trained = ~torch.isnan(delta)
    anchor = trained & (delta > threshold)
    other = trained & ~anchor
    ids = torch.full(delta.shape, -1, dtype=torch.long)
    if answer is not None:
        names = SPAN_GROUPS
        second_a, second_o = answer, answer
    else:
        names = HALF_GROUPS
        second_a = delta <= (delta[anchor].median() if anchor.any() else 0.0)  # weaker half of the anchors
        second_o = delta < (delta[other].median() if other.any() else 0.0)  # deeper half of the others
    ids[anchor & ~second_a], ids[anchor & second_a] = 0, 1
    ids[other & ~second_o], ids[other & second_o] = 2, 3
    return TokenGroups(names, ids, delta, float(threshold))


def group_confidence(values: torch.Tensor, base: torch.Tensor, groups: TokenGroups) -> dict[str, dict[str, float]]:
    """Per group: mean c, its quartiles, and the share of tokens below their θ_0 confidence."""
    out = {}
    for name, mask in groups.masks().items():
        v, b = values[mask], base[mask]
        if not v.numel():
            out[name] = {"tokens": 0, "mean": float("nan"), "p25": float("nan"), "p75": float("nan"),
                         "below_base": float("nan")}
            continue
        q = torch.quantile(v.double(), torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
        out[name] = {"tokens": int(v.numel()), "mean": float(v.double().mean()), "p25": q[0], "p75": q[1],
                     "below_base": float((v < b).double().mean())}
    return out


class Trajectories:
    """The trajectory cache of one data set: c_t under each scored checkpoint, one file per step."""

    def __init__(self, directory: str | Path, fingerprint: dict[str, Any], offsets: torch.Tensor):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.offsets = offsets.long()
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self._meta()
        cached = meta.get("data") or {}
        if any(cached.get(k) != fingerprint.get(k) for k in MATCH_KEYS):  # other data: start over
            meta = {"data": fingerprint, "checkpoints": {}}
            for stale in self.directory.glob("step_*.safetensors"):
                stale.unlink()
            save_file({"offsets": self.offsets}, str(self.directory / OFFSETS_FILE))
            write_json_atomic(self.directory / META_FILE, meta)
        self.checkpoints: dict[str, str] = meta["checkpoints"]

    def _meta(self) -> dict[str, Any]:
        try:
            meta = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) and isinstance(meta.get("checkpoints"), dict) else {}

    def path(self, step: int) -> Path:
        return self.directory / f"step_{step}.safetensors"

    def has(self, step: int, checkpoint: str | Path) -> bool:
        """True when ``step`` was scored from this very checkpoint folder (same path, not newer)."""
        recorded = self.checkpoints.get(str(step))
        file = self.path(step)
        return (recorded == str(checkpoint) and file.is_file()
                and file.stat().st_mtime >= (Path(checkpoint) / "config.json").stat().st_mtime)

    def load(self, step: int) -> torch.Tensor:
        """c_t under ``hf/step_<step>`` (``[T]`` float32, NaN where not trained)."""
        return load_file(str(self.path(step)))["logprobs"]

    def save(self, step: int, checkpoint: str | Path, values: torch.Tensor) -> None:
        tmp = self.path(step).with_suffix(".tmp")
        save_file({"logprobs": values.float().contiguous()}, str(tmp))
        tmp.replace(self.path(step))
        self.checkpoints[str(step)] = str(checkpoint)
        write_json_atomic(self.directory / META_FILE, {"data": self.fingerprint, "checkpoints": self.checkpoints})


def score_step(datamodule: Any, checkpoint: str | Path, offsets: torch.Tensor, *, device: str = "cpu",
               micro_batch_size: int | None = None, chunk_size: int = 2048, rank: int = 0,
               world: int = 1) -> torch.Tensor:
    """c_t of every trained token under one checkpoint; with ``world`` > 1 each rank scores every
    ``world``-th micro-batch and the values are summed over the ranks (gloo / NCCL all-reduce)."""
    batches = list(datamodule.scoring_batches(micro_batch_size))[rank::world]
    values = checkpoint_logprobs(checkpoint, batches, offsets, device=device, chunk_size=chunk_size,
                                 desc=f"c_t {Path(checkpoint).name}")
    if world == 1:
        return values
    import torch.distributed as dist

    on = torch.device(device) if dist.get_backend() != "gloo" else torch.device("cpu")  # NCCL: device tensors
    scored = (~torch.isnan(values)).float().to(on)
    summed = torch.nan_to_num(values, nan=0.0).to(on)
    dist.all_reduce(summed)
    dist.all_reduce(scored)
    return torch.where(scored > 0, summed, torch.full_like(summed, float("nan"))).cpu()


def checkpoint_step(folder: str | Path, default: int) -> int:
    """The step of an ``hf/step_<N>`` folder (``default`` for any other name)."""
    name = Path(folder).name.removeprefix("step_")
    return int(name) if name.isdigit() else default


def expand_checkpoints(items: list[str]) -> list[tuple[int, Path]]:
    """``(step, folder)`` by step from HF folders and run directories (a run gives its ``hf/step_<N>``)."""
    found: dict[int, Path] = {}
    for i, item in enumerate(items):
        path = Path(item)
        if (path / "hf").is_dir() and not (path / "config.json").is_file():
            found.update(run_checkpoints(path))
        else:
            found[checkpoint_step(path, -(i + 1))] = path
    return sorted(found.items())


def score_trajectories(datamodule: Any, checkpoints: list[tuple[int, Path]], output: str | Path, base: torch.Tensor,
                       bottleneck: torch.Tensor, *, threshold: float = 0.0, micro_batch_size: int | None = None,
                       chunk_size: int = 2048, device: str = "auto") -> dict[str, Any]:
    """c_t of every training token under each checkpoint into a trajectory cache at ``output``, one file at a
    time, and ``summary.json`` there: per step and group, mean c and the share below c(θ_0).

    The groups are those of :func:`token_groups` on ``base`` (θ_0) and ``bottleneck`` (θ_b) scores.
    """
    datamodule.setup("fit")
    device = resolve_device(device)
    offsets = data_offsets(datamodule.traces)
    cache = Trajectories(output, datamodule.fingerprint(), offsets)
    groups = token_groups(base, bottleneck, answer_spans(datamodule.traces, datamodule.tokenizer, offsets), threshold)
    steps = []
    for step, folder in checkpoints:
        if cache.has(step, folder):
            values = cache.load(step)
        else:
            values = score_step(datamodule, folder, offsets, device=device, micro_batch_size=micro_batch_size,
                                chunk_size=chunk_size)
            cache.save(step, folder, values)
        steps.append({"step": step, "checkpoint": str(folder), "confidence": group_confidence(values, base, groups)})
    summary = {"groups": list(groups.names), "threshold": threshold, "steps": steps}
    write_json_atomic(Path(output) / "summary.json", summary)
    return summary
