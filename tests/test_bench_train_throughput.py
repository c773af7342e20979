"""benchmarks/train_throughput.py in a tiny configuration: the script's core runs, its numbers are consistent.

Timing is not asserted (tests never assert wall-clock times); the loss check and the bookkeeping are.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_reports_matching_losses_and_the_contract_keys(bench, capsys):
    report = bench.main(["--device", "cpu", "--model", "tiny", "--data", "fixed", "--traces", "3",
                         "--max-length", "48", "--cycles", "1", "--hf-micro-batch", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("{") and '"loss_match":true' in last
    for key in ("tps_t3s_full", "tps_t3s_masked", "tps_hf_plain", "ratio_full_vs_hf", "ratio_masked_vs_full"):
        assert report[key] > 0, key
    assert report["loss_match"] is True
    run = report["workloads"]["fixed"]
    assert run["real_tokens"] == 3 * 48 and run["response_tokens"] == 3 * 24  # the prompt is capped at half
    losses = run["losses"]
    assert losses["t3s"] == pytest.approx(losses["hf_plain"], rel=1e-4)
    assert 0.4 < run["t3s_masked_fraction_of_response"] < 0.6
    assert run["timed_steps"] == {"t3s_full": 1, "t3s_masked": 1, "hf_plain": 1}
    assert report["ratio_masked_vs_full"] == pytest.approx(run["median_s_t3s_masked"] / run["median_s_t3s_full"])
    if importlib.util.find_spec("trl") is None:
        assert "trl" in run["skipped"]


def test_both_layouts_see_the_same_tokens_and_targets(bench):
    work = bench.fixed_workload(5, 40, vocab=1000, prompt=7)
    work.traces[1].input_ids = work.traces[1].input_ids[:25]  # uneven lengths: padding vs packing differ
    work.traces[1].labels = work.traces[1].labels[:25]
    step = bench.t3s_step_batch(work, max_length=64, rows_per_micro=2)
    padded = bench.hf_batches(work, micro=2)
    t3s_real = sum(int((mb["trace_index"] >= 0).sum()) for mb in step["micro_batches"])
    hf_real = sum(int(mb["attention_mask"].sum()) for mb in padded)
    assert t3s_real == hf_real == work.real_tokens == 4 * 40 + 25
    t3s_targets = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in step["micro_batches"])
    hf_targets = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in padded)
    assert t3s_targets == hf_targets == work.response_tokens
    assert sum(mb["input_ids"].numel() for mb in padded) == 2 * 40 + 2 * 40 + 40  # the short trace is padded
    cache = bench.half_anchor_cache(work)
    assert cache.offsets[-1] == work.real_tokens and 0.35 < float((cache.delta > 0).float().mean()) < 0.65


def test_r1_workload_uses_the_real_tokenizer(bench, shared_dir, monkeypatch):
    monkeypatch.setattr(bench, "R1_PATH", shared_dir / "data" / "r1_traces_mmlupro_200.jsonl")
    monkeypatch.setattr(bench, "QWEN3_TOKENIZER", shared_dir / "tokenizers" / "qwen3")
    work = bench.r1_workload(2, 1400, vocab=bench.QWEN3_VOCAB)
    assert "real Qwen3 tokenizer" in work.source and work.tokenizer is not None
    assert all(len(t) <= 1400 and t.labels[0] == -100 and t.num_response_tokens > 0.5 * len(t) for t in work.traces)
    assert [t.index for t in work.traces] == [0, 1]


def test_quick_defaults_are_the_cpu_contract(bench):
    args = bench.parse_args(["--device", "cpu", "--quick"])
    assert args.model == "cpu-small" and args.data == ["r1"] and args.precision == "fp32"
    assert bench.MODELS["cpu-small"]["vocab_size"] == 151_936 and bench.MODELS["cpu-small"]["hidden_size"] == 256
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cpu", "--cycles", "0"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.parse_args(["--device", "cuda"])


def test_scoring_only_and_hf_only_paths(bench, capsys):
    scored = bench.main(["--device", "cpu", "--model", "tiny", "--score-only", "--score-length", "64", "--cycles", "1"])
    assert scored["scoring"]["score_tokens"] == 64 and scored["tps_score"] > 0
    hf_only = bench.main(["--device", "cpu", "--model", "tiny", "--data", "fixed", "--traces", "2", "--max-length",
                          "32", "--cycles", "1", "--contenders", "hf_plain", "--no-score"])
    run = hf_only["workloads"]["fixed"]
    assert run["timed_steps"] == {"hf_plain": 1} and run["loss_match"] and "tps_t3s_full" not in run


def test_gpu_check_dry_run_lists_steps_and_exits_0():
    import subprocess

    script = SCRIPT.parent / "gpu_check.sh"
    out = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for step in ("pytest -m gpu", "qwen3-1.7b", "qwen3-8b", "--score-length 32768", "gpu_check.json"):
        assert step in out.stdout, step
