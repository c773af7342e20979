"""`t3s evaluate` on a diffusion student's checkpoints: the diffusion sampler, as the inline callback runs it."""

from __future__ import annotations

import pytest
import yaml
from conftest import BASE, REPO, TINY_WORLD
from test_evaluate import verdicts

from t3s.cli import main
from t3s.evals.results import read_results
from t3s.evals.scalars import read_scalars


@pytest.mark.slow
def test_evaluate_uses_the_diffusion_sampler_and_matches_the_inline_callback(tmp_path):
    cfg = yaml.safe_load((REPO / "configs" / "tiny-diffusion.yaml").read_text())
    cfg["trainer"].update(max_steps=4, default_root_dir=str(tmp_path), enable_progress_bar=False,
                          enable_checkpointing=False, callbacks=[{
                              "class_path": "t3s.evals.BenchmarkCallback",
                              "init_args": {"every_n_steps": 2, "train_limit": 6, "batch_size": 8,
                                            "sampling": {"n": 1, "temperature": 0.0, "max_new_tokens": 64}}}])
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name="inline")
    cfg["model"]["init_args"].update(model=BASE)
    cfg["data"].update(path=str(TINY_WORLD / "teacher_traces.jsonl"), tokenizer=str(TINY_WORLD / "tokenizer"),
                       limit=32)
    config = tmp_path / "tiny-diffusion.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    main(["fit", "--config", str(config)])
    run = tmp_path / "inline" / "version_0"

    main(["evaluate", str(run), "--output", str(tmp_path / "offline"), "--devices", "2"])
    assert [(r["step"], r["task"]) for r in read_results(tmp_path / "offline")] == [
        (0, "train"), (2, "train"), (4, "train")
    ]
    for step in (0, 2, 4):  # same weights, same sampler settings, greedy: the same responses and verdicts
        assert verdicts(tmp_path / "offline", step) == verdicts(run, step)
        assert all(response for _, response, _ in verdicts(run, step))  # real sampler output, not empty strings
    inline = read_scalars(run, "bench/train/avg@1")
    assert read_scalars(tmp_path / "offline", "bench/train/avg@1") == inline and inline[0] == [0, 2, 4]
