"""``t3s score``: the Δc cache T3S reads (c_t under θ_0 and θ_b for every training token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from t3s.errors import ConfigError
from t3s.resources import find_config


def run(
    config: str,
    base: str,
    bottleneck: str,
    output: str,
    device: str = "auto",
    dtype: str = "float32",
    micro_batch_size: int | None = None,
    chunk_size: int = 2048,
    trust_remote_code: bool = False,
    checkpoints: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Score every training token under θ_0 and θ_b and write the Δc cache T3S reads.

    Args:
        config: the training config whose ``data`` section defines the traces (same file as ``fit``).
        base: θ_0, an HF folder or hub id (e.g. ``<run>/hf/step_0``).
        bottleneck: θ_b, an HF folder (e.g. ``<run>/hf/step_20``) or a LoRA/DoRA adapter folder
            (``<run>/adapter/step_20``: merged into its base, written to ``<folder>/merged``).
        output: directory for ``scores.safetensors``, ``meta.json`` and ``summary.json``.
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: weights dtype for scoring (``float32`` or ``bfloat16``).
        micro_batch_size: rows per forward pass (default: the data config's).
        chunk_size: rows per chunk of the log-prob kernel.
        trust_remote_code: allow the checkpoints' own model code (e.g. Ling-mini-2.0 as a selector).
        checkpoints: also score these HF folders or run directories (``<run>/hf/step_*``, or ``<run>``: all its
            ``hf/step_N``) into ``<output>/trajectories`` (one file per checkpoint, a per-group summary).
        data: options of the config's ``data`` section to override, as ``fit`` spells them
            (``--data.limit 32 --data.max_length 1024``).
    """
    from t3s.data.from_config import datamodule_from_config
    from t3s.ops.hf_folders import check_hf_folder, looks_local
    from t3s.scoring.scorer import score
    from t3s.students.adapter_weights import as_model_folder  # an adapter folder: base + adapter, merged

    for option, source in (("--base", base), ("--bottleneck", bottleneck)):
        if looks_local(source) and not Path(source).expanduser().exists():  # not a hub id: say so before loading
            raise ConfigError(f"{option} {source}: no such model folder")
    base, bottleneck = as_model_folder(base), as_model_folder(bottleneck)
    for source in (base, bottleneck):
        if looks_local(source):
            check_hf_folder(source)
    datamodule = datamodule_from_config(find_config(config), data, origin=config)
    score(datamodule, base, bottleneck, output, device=device, dtype=dtype, micro_batch_size=micro_batch_size,
          chunk_size=chunk_size, trust_remote_code=trust_remote_code)
    print(f"wrote the score cache to {output}; train with model.init_args.selection.init_args.scores={output}")
    if checkpoints:
        from t3s.analysis.trajectories import expand_checkpoints, score_trajectories
        from t3s.selection.scores import ScoreCache

        found = expand_checkpoints(checkpoints)
        missing = [str(folder) for _, folder in found if not (folder / "config.json").is_file()]
        if not found or missing:
            raise ConfigError(f"score --checkpoints: not HF folders or run directories: {missing or checkpoints}")
        cache = ScoreCache.load(output)
        summary = score_trajectories(datamodule, found, Path(output) / "trajectories", cache.base_logprob,
                                     cache.bottleneck_logprob,
                                     micro_batch_size=micro_batch_size, chunk_size=chunk_size, device=device)
        for entry in summary["steps"]:
            conf = entry["confidence"]
            print(f"step {entry['step']:>6}  c(anchor) {conf['anchor']['mean']:+.3f}  c(yet-to-learn) "
                  f"{conf['yet_to_learn']['mean']:+.3f}  below θ0 {conf['yet_to_learn']['below_base']:.2f}")
        print(f"wrote c_t of {len(found)} checkpoint(s) to {Path(output) / 'trajectories'}")
