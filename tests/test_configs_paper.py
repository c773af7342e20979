"""The paper-scale configs (Qwen3-8B S1K-200, the Qwen3-32B and BOBA-200 overlays, LLaDA2.0-mini) parse, overlays
are refused alone, and the data presets read rows with the hub datasets' column names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from t3s.cli import main
from t3s.data.fields import FIELD_PRESETS
from t3s.data.records import load_records


def printed_config(capsys, *configs: str) -> dict:
    args = ["fit"]
    for config in configs:
        args += ["--config", config]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def bench_args(config: dict) -> dict:
    return next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))["init_args"]


def test_qwen3_and_its_32b_overlay_parse(capsys):
    base = printed_config(capsys, "qwen3")
    big = printed_config(capsys, "qwen3", "qwen3-32b")
    assert base["model"]["init_args"]["model"] == "Qwen/Qwen3-8B" and base["trainer"]["num_nodes"] == 1
    assert big["model"]["init_args"]["model"] == "Qwen/Qwen3-32B" and big["data"]["tokenizer"] == "Qwen/Qwen3-32B"
    assert big["trainer"]["num_nodes"] == 2 and big["trainer"]["logger"]["init_args"]["save_dir"] == "runs/qwen3-32b"
    for config in (base, big):  # everything else is the 8B recipe: T3S, evaluation deferred to vLLM workers
        assert config["model"]["init_args"]["selection"]["class_path"] == "t3s.selection.T3S"
        assert config["data"]["path"] == "simplescaling/s1K-1.1" and config["data"]["limit"] == 200
        bench = bench_args(config)
        assert (bench["mode"], bench["backend"], bench["every_n_steps"]) == ("defer", "vllm", 5)
        assert set(bench["vllm"]) == {"tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype",
                                      "enable_prefix_caching"}
        assert bench["vllm"]["max_model_len"] >= 32768


def test_boba200_overlay_is_qwen3_with_the_traces_left_to_the_command_line(capsys):
    base = printed_config(capsys, "qwen3")
    boba = printed_config(capsys, "qwen3", "qwen3-boba200")
    assert boba["data"]["path"] is None and boba["data"]["layout"]["preset"] == "default"
    assert boba["trainer"]["default_root_dir"] == "runs/qwen3-boba200"
    assert boba["trainer"]["logger"]["init_args"]["save_dir"] == "runs/qwen3-boba200"
    same = ("model", "seed_everything")
    assert all(boba[key] == base[key] for key in same) and bench_args(boba) == bench_args(base)
    assert {k: v for k, v in boba["data"].items() if k not in ("path", "layout")} == \
        {k: v for k, v in base["data"].items() if k not in ("path", "layout")}
    assert {**boba["data"]["layout"], "preset": None} == {**base["data"]["layout"], "preset": None}
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "qwen3", "--config", "qwen3-boba200", "--data.path", "org/boba-200",
              "--print_config"])
    assert exit_info.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["data"]["path"] == "org/boba-200"


def test_boba200_without_traces_stops_before_loading_anything(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "qwen3", "--config", "qwen3-boba200"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: data.path is not set")


@pytest.mark.parametrize("overlay", ["qwen3-32b", "configs/qwen3-boba200.yaml"])
def test_an_overlay_alone_is_refused_with_the_command_to_run(capsys, overlay: str):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", overlay])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"--config qwen3 --config {overlay}" in err


def test_help_marks_the_overlays(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    assert "qwen3-32b (after qwen3)" in out and "qwen3-boba200 (after qwen3)" in out and "toy-small" in out


def test_llada2_mini_evaluates_through_the_evaluator(capsys):
    config = printed_config(capsys, "llada2-mini")
    bench = bench_args(config)
    assert bench["mode"] == "defer" and bench["tasks"] == ["aime24", "aime25"] and bench["train_accuracy"]
    assert config["model"]["class_path"].endswith("DiffusionStudent")  # `t3s evaluate` picks the diffusion sampler
    assert bench["sampling"]["max_new_tokens"] == config["model"]["init_args"]["sampler"]["gen_length"]


def test_s1k_preset_reads_a_row_with_the_hub_columns(tmp_path: Path):
    """A row shaped like simplescaling/s1K-1.1 (every column it has): the DeepSeek-R1 trace is what is read."""
    preset = yaml.safe_load((REPO / "configs" / "qwen3.yaml").read_text())["data"]["layout"]["preset"]
    row = {
        "solution": r"Since $x^2 = 4$ and $x > 0$, $x = \boxed{2}$.",
        "question": "Find the positive x with x^2 = 4.",
        "cot_type": "math",
        "source_type": "synthetic",
        "metadata": "{}",
        "gemini_thinking_trajectory": "GEMINI THINKING",
        "gemini_attempt": "GEMINI ATTEMPT",
        "deepseek_thinking_trajectory": "x squared is four, so x is two.",
        "deepseek_attempt": r"The answer is $\boxed{2}$.",
        "messages": [{"role": "user", "content": "not this"}, {"role": "assistant", "content": "GEMINI"}],
    }
    path = tmp_path / "s1k.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (record,), _ = load_records(path, FIELD_PRESETS[preset])
    assert record.messages == [{"role": "user", "content": "Find the positive x with x^2 = 4."}]
    assert record.reasoning == "x squared is four, so x is two."
    assert record.answer_text == r"The answer is $\boxed{2}$." and record.gold == "2"


def test_the_diffusion_configs_follow_their_references(capsys):
    mini = printed_config(capsys, "llada2-mini")["model"]["init_args"]
    assert (mini["objective"], mini["block_size"], mini["loss_normalization"]) == ("llada2", 32, "sequence")
    assert mini["sampler"]["block_length"] == 32 and mini["sampler"]["threshold"] == 0.95
    llada = printed_config(capsys, "llada-8b")
    args = llada["model"]["init_args"]
    assert (args["objective"], args["block_size"], args["mask_token_id"]) == ("llada", None, 126336)
    assert args["trust_remote_code"] and llada["data"]["batching"]["packing"] is False
