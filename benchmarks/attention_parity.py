"""Packed-row attention kernels against SDPA with the dense document mask: same hidden states, and their speed.

    python benchmarks/attention_parity.py --device cuda --kernels flex_attention flash_attention_2
    python benchmarks/attention_parity.py --device cpu --model tiny --length 256 --kernels eager   # rehearsal

One random-init Qwen3 (same seed for every kernel) runs teacher-forced on one packed row of documents with
the real R1 length mix's shape (several traces back to back, positions restarting at 0). The reference is
SDPA with the dense ``[L, L]`` document mask (:func:`t3s.ops.packed_attention.dense_document_mask`); each
other kernel gets what t3s gives it in training (flex: the document ``BlockMask``; flash: the restarts in
``position_ids``). Reported per kernel: max |Δ hidden| against the reference, forward seconds (after one
warm-up) and, on CUDA, the peak memory of the forward. A kernel that is not installed is listed as skipped.
The last line printed is one JSON object (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from t3s.ops.causal_lm import hidden_states  # noqa: E402
from t3s.ops.packed_attention import dense_document_mask  # noqa: E402

MODELS = {
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512},
    "qwen3-1.7b-2layers": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 2,
                           "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151_936},
}
#: Tolerance of max |Δ hidden| against the reference (bf16 kernels on CUDA; fp32 on CPU).
TOLERANCE = {"cpu": 1e-4, "cuda": 5e-2}


def packed_positions(length: int, documents: int) -> torch.Tensor:
    """``[1, length]`` positions of ``documents`` traces of uneven lengths packed back to back."""
    weights = torch.tensor([1.0 + (i % 3) for i in range(documents)])
    sizes = (weights / weights.sum() * length).long()
    sizes[-1] += length - int(sizes.sum())
    return torch.cat([torch.arange(int(n)) for n in sizes])[None]


def build(model: str, kernel: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model("qwen3", **MODELS[model], max_position_embeddings=1 << 16)
    return AutoModelForCausalLM.from_config(config, attn_implementation=kernel, dtype=dtype).to(device).eval()


@torch.no_grad()
def forward(model: torch.nn.Module, ids: torch.Tensor, positions: torch.Tensor, dense: bool) -> torch.Tensor:
    if dense:  # the reference: SDPA/eager with the materialised document mask
        return model.model(input_ids=ids, position_ids=positions,
                           attention_mask=dense_document_mask(positions)).last_hidden_state
    return hidden_states(model, ids, positions)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    positions = packed_positions(args.length, args.documents).to(device)
    ids = torch.randint(0, MODELS[args.model]["vocab_size"], positions.shape,
                        generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    report: dict[str, Any] = {"device": str(device), "model": args.model, "length": args.length,
                              "documents": args.documents, "dtype": str(dtype), "kernels": {}, "skipped": {}}
    reference = None
    for kernel in ["sdpa", *args.kernels]:
        try:
            model = build(args.model, kernel, device, dtype)
        except (ImportError, ValueError) as err:
            report["skipped"][kernel] = str(err).splitlines()[0]
            continue
        dense = reference is None
        forward(model, ids, positions, dense)  # warm-up (compilation for flex)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        hidden = forward(model, ids, positions, dense)
        if device.type == "cuda":
            torch.cuda.synchronize()
        entry = {"seconds": round(time.perf_counter() - start, 4)}
        if device.type == "cuda":
            entry["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if reference is None:
            reference = hidden.float()
            entry["role"] = "reference (dense document mask)"
        else:
            entry["max_abs_diff"] = float((hidden.float() - reference).abs().max())
            entry["match"] = entry["max_abs_diff"] <= TOLERANCE[device.type]
        report["kernels"][kernel] = entry
        del model
    report["parity"] = all(k.get("match", True) for k in report["kernels"].values())
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", choices=sorted(MODELS), default="qwen3-1.7b-2layers")
    p.add_argument("--length", type=int, default=8192, help="packed row length")
    p.add_argument("--documents", type=int, default=6, help="traces in the row")
    p.add_argument("--kernels", nargs="+", default=["flex_attention", "flash_attention_2"])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    report = run(args)
    for name, entry in report["kernels"].items():
        print(f"{name:<20} {json.dumps(entry)}")
    for name, why in report["skipped"].items():
        print(f"{name:<20} skipped: {why}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, separators=(",", ":")))
    if not report["parity"]:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
