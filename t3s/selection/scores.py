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

from t3s.errors import T3SError
from t3s.runtime.files import make_shareable

SCORES_FILE = "scores.safetensors"
META_FILE = "meta.json"
SUMMARY_FILE = "summary.json"

#: Fingerprint keys that must agree between a cache and the data it is used with (the sha256 covers
#: every token id and label, so another tokenizer or other data cannot pass).
MATCH_KEYS = ("vocab_size", "max_length", "num_traces", "sha256")


class ScoreCacheError(T3SError, ValueError):
    """A score cache is missing, malformed, or does not belong to the current data."""


class ScoreCache:
    """Per-token c(θ_0) and c(θ_b) for a tokenized dataset, looked up by (trace index, position)."""

    def __init__(self, base: torch.Tensor, bottleneck: torch.Tensor, offsets: torch.Tensor, meta: dict[str, Any]):
        if base.ndim != 1 or base.shape != bottleneck.shape or offsets.ndim != 1 or offsets.numel() < 1:
            raise ScoreCacheError("score cache tensors are inconsistent (base/bottleneck/offsets shapes differ)")
        if not base.is_floating_point() or not bottleneck.is_floating_point() or offsets.is_floating_point():
            raise ScoreCacheError("score cache tensors have the wrong dtypes (float scores, integer offsets)")
        steps = offsets[1:] - offsets[:-1]
        if int(offsets[0]) != 0 or bool((steps < 0).any()) or int(offsets[-1]) != base.numel():
            raise ScoreCacheError("score cache offsets do not index the scores (they must rise from 0 to their number)")
        if not isinstance(meta, dict):
            raise ScoreCacheError(f"score cache metadata must be a JSON object, got {type(meta).__name__}")
        # c_t(θ_0) and c_t(θ_b) per token ("base" / "bottleneck" in scores.safetensors); θ_b's step is elsewhere
        self.base_logprob = base.float()
        self.bottleneck_logprob = bottleneck.float()
        self.delta = self.bottleneck_logprob - self.base_logprob
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
        tensors = _read_tensors(directory / SCORES_FILE)
        meta = _read_meta(directory / META_FILE)
        try:
            cache = cls(tensors["base"], tensors["bottleneck"], tensors["offsets"], meta)
        except ScoreCacheError as err:
            raise ScoreCacheError(f"{directory / SCORES_FILE}: {err}; re-run `t3s score`") from None
        cache.check_values(str(directory / SCORES_FILE))
        return cache

    def save(self, directory: str | Path) -> None:
        """Write the cache tensors and metadata (each file replaced atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (SCORES_FILE + ".tmp")
        save_file({"base": self.base_logprob, "bottleneck": self.bottleneck_logprob, "offsets": self.offsets},
                  str(tmp))
        make_shareable(tmp)
        tmp.replace(directory / SCORES_FILE)
        write_json_atomic(directory / META_FILE, self.meta)

    # -------------------------------------------------------------- checks
    def check_values(self, source: str = "score cache") -> None:
        """Refuse caches no scorer writes: infinite log-probs, or not one scored token."""
        for name in ("base", "bottleneck"):
            values = getattr(self, f"{name}_logprob")
            scored = values[~torch.isnan(values)]
            if not bool(torch.isfinite(scored).all()):
                raise ScoreCacheError(f"{source}: '{name}' holds infinite log-probs; re-run `t3s score`")
        if not bool((~torch.isnan(self.delta)).any()):
            raise ScoreCacheError(f"{source}: no token has a score (all NaN: the checkpoints produced NaN or the "
                                  "data has no trained tokens); re-run `t3s score` with working checkpoints")

    def check_matches(self, fingerprint: dict[str, Any], source: str = "") -> None:
        """Refuse a cache computed on other data, another tokenizer or another max length."""
        cached = self.meta.get("data", {})
        diffs = [
            f"{key}: cache has {cached.get(key)!r}, data has {fingerprint.get(key)!r}"
            for key in MATCH_KEYS
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
        """Gather signal ``name`` ('base_logprob', 'bottleneck_logprob' or 'delta') at [R, L] token coordinates.

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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error kinds for damaged files
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ScoreCacheError(f"{path}: not a readable safetensors file ({first}); re-run `t3s score`") from None
    missing = [k for k in ("base", "bottleneck", "offsets") if k not in tensors]
    if missing:
        raise ScoreCacheError(f"{path}: missing tensor(s) {missing}; re-run `t3s score`")
    return tensors


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ScoreCacheError(f"{path}: not valid UTF-8 ({err.reason}); re-run `t3s score`") from None
    except json.JSONDecodeError as err:
        raise ScoreCacheError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); re-run `t3s score`") from None
    except (ValueError, RecursionError) as err:
        raise ScoreCacheError(f"{path}: unreadable JSON ({type(err).__name__}); re-run `t3s score`") from None
    except OSError as err:
        raise ScoreCacheError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("data", {}), dict):
        raise ScoreCacheError(f"{path}: expected a JSON object with a 'data' fingerprint; re-run `t3s score`")
    return meta


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
