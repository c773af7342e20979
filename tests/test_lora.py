"""LoRA / DoRA students (issue 25): only adapters train, merged HF folders equal the live model, adapter
folders work in ``t3s rrt`` and ``t3s score``, checkpoints resume, restarts reset the adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_WORLD, error_of, make_data, make_student, make_trainer, random_model_config
from transformers import AutoModelForCausalLM

from t3s.cli import main
from t3s.students.adapter_weights import AdapterError, as_model_folder, read_adapter, write_merged
from t3s.students.checkpoints import read_hf_weights

pytest.importorskip("peft", reason="LoRA students need peft (pip install 't3s[lora]')")

ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def fit_adapter(root: Path, steps: int, kind: str = "lora", **kw):
    data = make_data(TINY_WORLD, batch=8, micro=8)
    student = make_student(data, adapter={"kind": kind, "r": 4, **kw})
    trainer = make_trainer(root, steps)
    trainer.fit(student, datamodule=data)
    return student, data


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_only_adapters_train_and_the_merged_folder_is_the_live_model(tmp_path, kind):
    student, data = fit_adapter(tmp_path, 3, kind)
    trained = [n for n, p in student.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    assert all(p.requires_grad == ("lora_" in n) for n, p in student.model.named_parameters())

    theta0 = student.build_causal_lm(None).state_dict()  # θ_0 rebuilt from the config and seed
    step0, step3 = read_hf_weights(tmp_path / "hf" / "step_0"), read_hf_weights(tmp_path / "hf" / "step_3")
    assert set(step0) == set(step3) and "model.layers.0.self_attn.q_proj.weight" in step0
    changed = 0
    for name, tensor in step0.items():
        assert torch.equal(tensor, theta0[name]), name  # hf/step_0 is the base itself
        if any(f".{m}." in name for m in ADAPTED):
            changed += not torch.allclose(step3[name], tensor)
        else:  # embeddings, norms, LM head: untouched
            assert torch.equal(step3[name], tensor), name
    assert changed == 2 * len(ADAPTED)  # every adapted matrix of both layers moved

    # the merged export computes what the trained student computes, and what peft's own merge gives
    ids = torch.randint(0, len(data.tokenizer), (2, 24))
    student.model.eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "step_3").eval()
    torch.testing.assert_close(logits(merged, ids), logits(student.model, ids), atol=1e-5, rtol=1e-5)
    peft_merged = student._peft[0].merge_and_unload(safe_merge=True)
    for name, tensor in peft_merged.state_dict().items():
        if name in step3:
            torch.testing.assert_close(step3[name], tensor, atol=1e-6, rtol=1e-6)

    adapter = tmp_path / "adapter" / "step_3"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == (tmp_path / "hf" / "step_0").resolve()
    assert config["use_dora"] == (kind == "dora") and config["r"] == 4 and config["lora_alpha"] == 8
    assert (adapter / "tokenizer_config.json").is_file()
    # peft itself loads the adapter folder onto its base and computes what the merged folder computes
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]),
                                       adapter).eval()
    torch.testing.assert_close(logits(loaded, ids), logits(merged, ids), atol=1e-5, rtol=1e-5)


def test_online_restart_puts_the_adapters_back_to_their_fresh_state(tmp_path):
    student, data = fit_adapter(tmp_path, 2)
    fresh = dict(student._fresh_adapter)
    moved = {n: p.detach().clone() for n, p in student.model.named_parameters() if n in fresh}
    assert any(not torch.equal(moved[n], fresh[n]) for n in fresh)
    student.restart_from(tmp_path / "hf" / "step_0")  # what the online switch calls
    for name, param in student.model.named_parameters():
        if name in fresh:
            assert torch.equal(param, fresh[name])
    assert all(len(opt.state) == 0 for opt in student.trainer.optimizers)
    ids = torch.randint(0, len(data.tokenizer), (2, 16))
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "step_0").eval()
    student.model.eval()
    torch.testing.assert_close(logits(student.model, ids), logits(base, ids), atol=1e-6, rtol=1e-6)


def test_a_masking_strategy_trains_adapters_on_its_selected_tokens(tmp_path):
    from t3s.selection import RandomMask

    data = make_data(TINY_WORLD, batch=8, micro=8)
    student = make_student(data, adapter={"kind": "lora", "r": 4}, selection=RandomMask(fraction=0.3, seed=1))
    trainer = make_trainer(tmp_path, 2)
    trainer.fit(student, datamodule=data)
    fraction = float(trainer.callback_metrics["train/selected_fraction"])
    assert 0.2 < fraction < 0.4
    assert any(not torch.equal(p, student._fresh_adapter[n]) for n, p in student.model.named_parameters()
               if n in student._fresh_adapter)


def test_lightning_checkpoint_holds_the_adapter_and_resumes_to_the_same_weights(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root: Path, steps: int, ckpt: str | None = None):
        data = make_data(TINY_WORLD, batch=8, micro=8)
        student = make_student(data, adapter={"kind": "lora", "r": 4})
        trainer = make_trainer(root, steps, enable_checkpointing=True,
                               callbacks=[ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=2,
                                                          save_last=True)])
        trainer.fit(student, datamodule=data, ckpt_path=ckpt)
        return student

    first = run(tmp_path / "a", 2)
    saved = torch.load(tmp_path / "a" / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["state_dict"] and all("lora_" in k for k in saved["state_dict"])  # no frozen base in it
    assert saved["optimizer_states"][0]["state"]  # Adam moments of the adapters
    restored = run(tmp_path / "a", 2, str(tmp_path / "a" / "ckpt" / "last.ckpt"))  # nothing left to train
    for (name, p), (_, q) in zip(restored.model.named_parameters(), first.model.named_parameters()):
        assert torch.equal(p, q), name
    resumed = run(tmp_path / "a", 4, str(tmp_path / "a" / "ckpt" / "last.ckpt"))
    assert resumed.global_step == 4
    assert any(not torch.equal(p, q) for p, q in zip(resumed.model.parameters(), first.model.parameters()))


def adapter_config_file(tmp_path: Path, exports: str = "both") -> Path:
    """A random tiny student, 4 steps, Lightning checkpoints (and HF exports) every 2 steps."""
    path = random_model_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                    "init_args": {"every_n_train_steps": 2, "save_top_k": 1, "save_last": True}}]
    cfg["model"]["init_args"]["adapter"] = {"exports": exports}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_contract_fit_with_lora_then_rrt_on_adapters_equals_rrt_on_merged_folders(tmp_path):
    config = adapter_config_file(tmp_path)
    main(["fit", "--config", str(config), "--model.init_args.adapter.kind", "lora",
          "--model.init_args.adapter.r", "8", "--trainer.max_steps", "4"])
    run = next((tmp_path / "runs" / "sft").glob("version_*"))
    hf, adapters = run / "hf", run / "adapter"
    assert {p.name for p in adapters.iterdir()} >= {"step_0", "step_2", "step_4"}
    assert json.loads((adapters / "step_4" / "adapter_config.json").read_text())["r"] == 8

    base, final = read_hf_weights(hf / "step_0"), read_hf_weights(hf / "step_4")
    factors = read_adapter(adapters / "step_4")
    assert set(factors) == {n for n in base if any(f".{m}." in n for m in ADAPTED)}
    for name, tensor in base.items():  # hf/step_4 = θ_0 + s·B·A exactly where adapted, θ_0 elsewhere
        f = factors.get(name)
        expected = tensor if f is None else tensor + f.scaling * f.lora_b @ f.lora_a
        torch.testing.assert_close(final[name], expected, atol=1e-6, rtol=0)

    for b, f, out in ((adapters / "step_2", adapters / "step_4", "rrt_a"), (hf / "step_2", hf / "step_4", "rrt_m")):
        main(["rrt", "--base", str(hf / "step_0"), "--bottleneck", str(b), "--final", str(f),
              "--output", str(tmp_path / out)])
    from_adapters, from_merged = read_hf_weights(tmp_path / "rrt_a"), read_hf_weights(tmp_path / "rrt_m")
    assert set(from_adapters) == set(from_merged)
    moved = 0.0
    for name, tensor in from_merged.items():
        torch.testing.assert_close(from_adapters[name], tensor, atol=1e-5, rtol=0)
        moved = max(moved, float((tensor - base[name]).abs().max()))
    assert moved > 1e-4  # the transfer is not θ_0 itself
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "rrt_a") is not None


def test_adapter_only_exports_skip_merged_folders_but_not_the_final_one(tmp_path):
    config = adapter_config_file(tmp_path, exports="adapter")
    main(["fit", "--config", str(config), "--model.init_args.adapter.kind", "dora", "--trainer.max_steps", "4"])
    run = next((tmp_path / "runs" / "sft").glob("version_*"))
    assert {p.name for p in (run / "adapter").iterdir()} == {"step_0", "step_2", "step_4"}
    assert {p.name for p in (run / "hf").iterdir()} == {"step_0", "step_4", "final"}  # no merged step_2
    # an adapter folder scores like the merged folder it stands for
    merged = Path(as_model_folder(run / "adapter" / "step_2"))
    assert merged == run / "adapter" / "step_2" / "merged"
    write_merged(run / "hf" / "step_0", run / "adapter" / "step_4", tmp_path / "m4")
    for name, tensor in read_hf_weights(run / "hf" / "step_4").items():
        torch.testing.assert_close(read_hf_weights(tmp_path / "m4")[name], tensor, atol=0, rtol=0)
    out_a, out_m = tmp_path / "scores_a", tmp_path / "scores_m"
    main(["score", "--config", str(config), "--base", str(run / "hf" / "step_0"),
          "--bottleneck", str(run / "adapter" / "step_2"), "--output", str(out_a), "--device", "cpu"])
    main(["score", "--config", str(config), "--base", str(run / "hf" / "step_0"),
          "--bottleneck", str(merged), "--output", str(out_m), "--device", "cpu"])
    from safetensors.torch import load_file

    sa, sm = load_file(str(out_a / "scores.safetensors")), load_file(str(out_m / "scores.safetensors"))
    assert sa.keys() == sm.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sm[key], equal_nan=True)

    # and evaluates as that merged folder (greedy, 2 held-out problems)
    from t3s.evals.results import read_results

    task = tmp_path / "heldout.yaml"
    task.write_text(f"name: heldout\ndataset: {TINY_WORLD / 'heldout.jsonl'}\ngrader: exact\nlimit: 2\n"
                    "fields: {problem: prompt, answer: answer}\nenable_thinking: false\n")
    main(["evaluate", str(run / "adapter" / "step_2"), "--tasks", str(task), "--n", "1", "--temperature", "0",
          "--max_new_tokens", "4"])
    assert [r["task"] for r in read_results(merged)] == ["heldout"]


def test_bad_adapter_settings_fail_in_one_line(tmp_path, capsys):
    config = str(random_model_config(tmp_path))
    line = error_of(capsys, "fit", "--config", config, "--model.init_args.adapter.kind", "qlora")
    assert "adapter" in line and "'lora', 'dora'" in line and "qlora" in line
    assert "r must be an integer >= 1" in error_of(capsys, "fit", "--config", config,
                                                   "--model.init_args.adapter.r", "0")
    if not torch.cuda.is_available():
        assert "needs bitsandbytes and a CUDA GPU" in error_of(capsys, "fit", "--config", config,
                                                               "--model.init_args.adapter.quantize", "4bit")
    not_adapter = tmp_path / "junk"
    not_adapter.mkdir()
    (not_adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(AdapterError, match="LoRA / DoRA adapters only"):
        read_adapter(not_adapter)


def test_qwen3_32b_lora_overlay_is_qwen3_on_one_node_with_adapters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "qwen3", "--config", "qwen3-32b-lora", "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["num_nodes"] == 1 and config["trainer"]["strategy"] == "ddp"
    init = config["model"]["init_args"]
    assert init["model"] == "Qwen/Qwen3-32B" and init["selection"]["class_path"] == "t3s.selection.T3S"
    assert init["adapter"]["kind"] == "lora" and init["adapter"]["r"] == 64 and init["adapter"]["exports"] == "adapter"


@pytest.mark.slow
def test_fsdp2_with_lora_on_two_processes_equals_one(tmp_path):
    """tests/fsdp_run.py with an adapter: 1 process, then 2 gloo processes under ModelParallelStrategy (frozen base
    sharded, adapters trained); same losses, same merged and adapter folders; the restart resets the shards."""
    import os
    import subprocess
    import sys

    from conftest import REPO, tiny_model_config, tiny_trace_data
    from safetensors.torch import load_file

    vocab = len(tiny_trace_data(TINY_WORLD, packing=True).tokenizer)

    def spec(root: Path, name: str, **extra) -> dict:
        return {"world": str(TINY_WORLD), "family": "ar", "model_config": tiny_model_config(vocab), "scores": None,
                "root": str(root / name), "student": {"adapter": {"kind": "lora", "r": 4}}} | extra

    outputs = []
    for nproc in (1, 2):
        specs = [spec(tmp_path / str(nproc), "lora")]
        if nproc == 2:
            specs.append(spec(tmp_path / "2", "restart", restart_at=2, steps=3))
        path = tmp_path / f"{nproc}.json"
        path.write_text(json.dumps(specs))
        launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, *launcher, str(REPO / "tests" / "fsdp_run.py"), str(path)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        outputs.append(tmp_path / str(nproc) / "lora")
    one, two = outputs
    m1, m2 = (json.loads((run / "metrics.json").read_text()) for run in (one, two))
    assert len(m1) == len(m2) == 4
    for a, b in zip(m1, m2):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-4)
    for folder in ("hf/step_0", "hf/final", "adapter/step_4"):
        file = "adapter_model.safetensors" if folder.startswith("adapter") else "model.safetensors"
        w1, w2 = load_file(str(one / folder / file)), load_file(str(two / folder / file))
        assert w1.keys() == w2.keys()
        assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5, folder
    restart = tmp_path / "2" / "restart"
    fresh, restarted = (read_adapter(restart / "adapter" / f"step_{s}") for s in (0, 999))
    assert all(torch.equal(fresh[k].lora_a, restarted[k].lora_a) and not restarted[k].lora_b.any() for k in fresh)
