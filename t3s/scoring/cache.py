"""The score cache: per-token log-probs of every training token at θ_0 and θ_b, aligned with the data.

Layout of a cache directory (written by ``t3s score``)::

    scores.safetensors   base [T] f32, bottleneck [T] f32, offsets [N+1] i64
    meta.json            the data fingerprint it was computed on, and the two checkpoints
    summary.json         anchor fraction, mean Δc, most frequent anchor / yet-to-learn tokens

Values are flat over all traces: token ``t`` of trace ``i`` sits at ``offsets[i] + t``. Positions that
are not trained targets (prompt, template) hold NaN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from t3s.ops.files import make_shareable

SCORES_FILE = "scores.safetensors"
META_FILE = "meta.json"
SUMMARY_FILE = "summary.json"

#: Fingerprint keys that must agree between a cache and the data it is used with (the sha256 covers
#: every token id and label, so another tokenizer or other data cannot pass).
_MATCH_KEYS = ("vocab_size", "max_length", "num_traces", "sha256")


class ScoreCacheError(ValueError):
    """A score cache is missing, malformed, or does not belong to the current data."""


class ScoreCache:
    """Per-token c(θ_0) and c(θ_b) for a tokenized dataset, looked up by (trace index, position)."""

    def __init__(self, base: torch.Tensor, bottleneck: torch.Tensor, offsets: torch.Tensor, meta: dict[str, Any]):
        if base.shape != bottleneck.shape or offsets.ndim != 1 or int(offsets[-1]) != base.numel():
            raise ScoreCacheError("score cache tensors are inconsistent (base/bottleneck/offsets sizes differ)")
        self.base = base.float()
        self.bottleneck = bottleneck.float()
        self.delta = self.bottleneck - self.base
        self.offsets = offsets.long()
        self.meta = meta

    # ------------------------------------------------------------------ io
    @classmethod
    def load(cls, directory: str | Path) -> ScoreCache:
        """Load a cache directory written by ``t3s score``; a clear error if it is absent or broken."""
        directory = Path(directory)
        if not (directory / SCORES_FILE).is_file() or not (directory / META_FILE).is_file():
            raise ScoreCacheError(
                f"no score cache at '{directory}' (expected {SCORES_FILE} and {META_FILE}); "
                "create it with `python -m t3s score --config CFG --base θ0 --bottleneck θb --output DIR`"
            )
        tensors = load_file(str(directory / SCORES_FILE))
        meta = json.loads((directory / META_FILE).read_text())
        return cls(tensors["base"], tensors["bottleneck"], tensors["offsets"], meta)

    def save(self, directory: str | Path) -> None:
        """Write the cache tensors and metadata (each file replaced atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (SCORES_FILE + ".tmp")
        save_file({"base": self.base, "bottleneck": self.bottleneck, "offsets": self.offsets}, str(tmp))
        make_shareable(tmp)
        tmp.replace(directory / SCORES_FILE)
        write_json_atomic(directory / META_FILE, self.meta)

    # -------------------------------------------------------------- checks
    def check_matches(self, fingerprint: dict[str, Any], source: str = "") -> None:
        """Refuse a cache computed on other data, another tokenizer or another max length."""
        cached = self.meta.get("data", {})
        diffs = [
            f"{key}: cache has {cached.get(key)!r}, data has {fingerprint.get(key)!r}"
            for key in _MATCH_KEYS
            if cached.get(key) != fingerprint.get(key)
        ]
        if diffs:
            where = f" '{source}'" if source else ""
            raise ScoreCacheError(
                f"score cache{where} does not match the training data ({'; '.join(diffs)}); "
                "re-run `t3s score` with this config"
            )

    # -------------------------------------------------------------- lookup
    def lookup(self, name: str, trace_index: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Gather signal ``name`` ('base', 'bottleneck' or 'delta') at [R, L] token coordinates.

        Padding (trace_index < 0) and positions outside a trace give NaN.
        """
        values: torch.Tensor = getattr(self, name)
        ti = trace_index.detach().cpu().long()
        pos = position_ids.detach().cpu().long()
        valid = ti >= 0
        start = self.offsets[ti.clamp(min=0)]
        length = self.offsets[ti.clamp(min=0) + 1] - start
        valid &= (pos >= 0) & (pos < length)
        flat = torch.where(valid, start + pos, torch.zeros_like(pos))
        out = values[flat]
        out = torch.where(valid, out, torch.full_like(out, float("nan")))
        return out.to(trace_index.device)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
