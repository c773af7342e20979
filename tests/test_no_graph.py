"""Forward-only work builds no autograd graph, and scoring's memory does not grow with the number of traces.

Every module forward is watched through torch's global forward hook: scoring, trajectory scoring, the
diagnostics' loss sums, generation and RRT must run with gradients off at the function that does the work
(a kept graph costs ~70 KB per scored token; an 8B model on 200 traces would run out of memory).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import REPO, save_random_ar, tiny_model_config, tiny_qwen3, tiny_trace_data
from safetensors.torch import load_file

from t3s.analysis.interaction import group_loss_sums, probe_batch
from t3s.analysis.rrt import residual_transfer
from t3s.analysis.trajectories import score_step
from t3s.evals.backends.hf import HFGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.scoring.scorer import checkpoint_logprobs, data_offsets


@contextmanager
def grad_modes() -> Iterator[list[bool]]:
    """Record ``torch.is_grad_enabled()`` at every module forward while the block runs."""
    seen: list[bool] = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: seen.append(torch.is_grad_enabled()))
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def scored(tiny_world, tmp_path_factory):
    data = tiny_trace_data(tiny_world, packing=True)
    root = tmp_path_factory.mktemp("no-graph")
    return data, save_random_ar(root / "a", data, 0), save_random_ar(root / "b", data, 1), root


def test_scoring_and_trajectories_run_without_grad(scored):
    data, base, _, _ = scored
    offsets = data_offsets(data.traces)
    with grad_modes() as seen:
        values = checkpoint_logprobs(base, data.scoring_batches(), offsets)
        again = score_step(data, base, offsets)
    assert seen and not any(seen)
    assert not values.requires_grad and values.grad_fn is None
    assert torch.equal(torch.isnan(values), torch.isnan(again))


def test_diagnostics_loss_sums_run_without_grad(scored):
    data, base, _, _ = scored
    offsets = data_offsets(data.traces)
    groups = torch.zeros(int(offsets[-1]), dtype=torch.long)
    probe = probe_batch(data, groups, offsets, traces=4)
    model = tiny_qwen3(len(data.tokenizer))
    with grad_modes() as seen:
        sums = group_loss_sums(model, probe)
    assert seen and not any(seen) and not sums.requires_grad


def test_generation_runs_without_grad(scored):
    data, *_ = scored
    model = tiny_qwen3(len(data.tokenizer))
    prompts = [list(t.input_ids[:5]) for t in data.traces[:3]]
    with grad_modes() as seen:
        HFGenerator(model, data.tokenizer, batch_size=2, show_progress=False).generate(
            prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=4))
    assert seen and not any(seen)


def test_rrt_writes_plain_tensors(scored):
    _, base, other, root = scored
    out = residual_transfer(base, other, base, root / "rrt")
    tensors = load_file(str(Path(out) / "model.safetensors"))
    assert tensors and not any(t.requires_grad for t in tensors.values())


SCORE_RSS = """
import resource, sys, warnings
warnings.simplefilter("error", UserWarning)  # the old requires_grad warning fails the run
from t3s.cli import main
main(sys.argv[1:])
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _score_peak_rss(config: Path, base: str, bottleneck: str, output: Path, limit: int) -> int:
    cmd = [sys.executable, "-c", SCORE_RSS, "score", "--config", str(config), "--base", base,
           "--bottleneck", bottleneck, "--output", str(output), "--device", "cpu", "--data.limit", str(limit)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=output.parent, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "requires_grad" not in done.stderr
    return int(done.stdout.split("peak_rss_kb")[-1].split()[0])


def _save_toy_sized(path: Path, data, seed: int) -> str:
    """A random model of the toy worlds' size (hidden 128, 3 layers): a kept graph costs ~125 KB a token."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = tiny_model_config(len(data.tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                            head_dim=32)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg)).save_pretrained(path)
    data.tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_scoring_peak_memory_does_not_grow_with_traces(scored, tmp_path):
    """8× the traces: peak RSS within 1.25× (with the graph kept it was 2.3×: ~560 MB → ~1.3 GB)."""
    data, *_ = scored
    base, bottleneck = _save_toy_sized(tmp_path / "a", data, 0), _save_toy_sized(tmp_path / "b", data, 1)
    config = REPO / "configs" / "tiny.yaml"
    few = _score_peak_rss(config, base, bottleneck, tmp_path / "few", limit=8)
    many = _score_peak_rss(config, base, bottleneck, tmp_path / "many", limit=64)
    assert many < 1.25 * few, (few, many)
