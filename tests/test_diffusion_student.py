"""DiffusionStudent with a real Lightning Trainer on tiny models."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import Record, make_trainer, save_random_ar, tiny_model_config
from transformers import AutoModelForCausalLM

from t3s.data import TeacherTraceDataModule
from t3s.scoring import ScoreCacheError, score
from t3s.selection import T3S
from t3s.selection.scores import ScoreCache
from t3s.students import DiffusionStudent
from t3s.students.diffusion import DiffusionStudentError, attends_bidirectionally


def make_data(world, batch=4, micro=4, limit=8, **kw) -> TeacherTraceDataModule:
    kw.setdefault("packing", False)
    return TeacherTraceDataModule(
        path=str(world / "teacher_traces.jsonl"), tokenizer=str(world / "tokenizer"), limit=limit,
        global_batch_size=batch, micro_batch_size=micro, max_length=512, **kw,
    )


def make_student(data, **kw) -> DiffusionStudent:
    data.setup("fit")
    kw.setdefault("lr", 1e-3)
    kw.setdefault("max_grad_norm", None)
    return DiffusionStudent(
        model_config=tiny_model_config(len(data.tokenizer)), tokenizer=data.tokenizer.name_or_path, **kw
    )


def test_fit_writes_hf_checkpoints_that_load_back_bidirectional(tiny_world, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    data = make_data(tiny_world, batch=4, micro=2)
    student = make_student(data)
    rec = Record()
    ckpt = ModelCheckpoint(every_n_train_steps=1, save_top_k=1, save_last=True)
    make_trainer(tmp_path, 2, enable_checkpointing=True, callbacks=[ckpt, rec]).fit(student, datamodule=data)
    hf = tmp_path / "hf"
    assert sorted(p.name for p in hf.iterdir()) == ["final", "step_0", "step_1", "step_2"]
    assert all(r["train/loss"] > 0 and r["train/selection_added_fraction"] == 0 for r in rec.rows)
    assert 0 < rec.rows[0]["train/corrupted_fraction"] < 1 and rec.rows[0]["train/traces"] == 4

    loaded = AutoModelForCausalLM.from_pretrained(hf / "final")
    assert loaded.config.is_causal is False and attends_bidirectionally(loaded)
    for name, tensor in student.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    again = DiffusionStudent(model=str(hf / "final"))  # tokenizer saved alongside
    again.configure_model()
    assert again.mask_token_id == 5 and again.model.config.is_causal is False
    assert torch.equal(again.model.lm_head.weight, student.model.lm_head.weight)


@pytest.mark.parametrize(("objective", "complementary"), [("llada", False), ("llada2", True)])
def test_loss_is_normalised_over_the_global_batch(tiny_world, tmp_path, objective, complementary):
    results = []
    for micro in (4, 1):
        data = make_data(tiny_world, batch=4, micro=micro)
        student = make_student(data, objective=objective, complementary_masking=complementary, pad_to=192)
        rec = Record()
        make_trainer(tmp_path / f"m{micro}", 1, callbacks=[rec]).fit(student, datamodule=data)
        results.append(rec.rows[0])
    assert results[1]["train/loss"] == pytest.approx(results[0]["train/loss"], rel=1e-5)
    assert results[1]["train/grad_norm"] == pytest.approx(results[0]["train/grad_norm"], rel=1e-4)
    if complementary:
        assert results[0]["train/corrupted_fraction"] == pytest.approx(0.5)


def test_fit_with_t3s_from_a_real_score_cache(tiny_world, tmp_path, caplog):
    data = make_data(tiny_world, batch=4, micro=2)
    data.setup("fit")
    base, bottleneck = save_random_ar(tmp_path / "ar0", data, 0), save_random_ar(tmp_path / "arb", data, 1)
    summary = score(data, base, bottleneck, tmp_path / "scores", device="cpu")
    assert summary["num_tokens"] == data.num_response_tokens  # every reply token has a Δc

    student = make_student(data, objective="llada2", selection=T3S(scores=str(tmp_path / "scores")))
    rec = Record()
    with caplog.at_level(logging.WARNING):
        make_trainer(tmp_path / "run", 2, callbacks=[rec]).fit(student, datamodule=data)
    assert all(0 < r["train/selection_added_fraction"] < 1 for r in rec.rows)
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert (tmp_path / "run" / "hf" / "final" / "config.json").is_file()
    assert "no diffusion side" not in caplog.text

    other = make_data(tiny_world, batch=4, micro=2, limit=6)  # a cache of other data is refused
    with pytest.raises(ScoreCacheError, match="does not match"):
        make_trainer(tmp_path / "bad", 1).fit(
            make_student(other, selection=T3S(scores=str(tmp_path / "scores"))), datamodule=other
        )


def test_bad_data_is_refused_or_skipped(tiny_world, tmp_path, caplog):
    # packed rows train (tests/test_diffusion_packing.py); what cannot train on them is refused there
    data = make_data(tiny_world, batch=4, micro=2, limit=4)
    with pytest.raises(DiffusionStudentError, match="occurs as a real token"):
        make_trainer(tmp_path / "mask", 1).fit(make_student(data, mask_token_id=8), datamodule=data)

    data = make_data(tiny_world, batch=4, micro=2, limit=4)
    data.setup("fit")
    data.traces[2].labels = [-100] * len(data.traces[2].labels)
    rec = Record()
    with caplog.at_level(logging.WARNING):
        make_trainer(tmp_path / "skip", 1, callbacks=[rec]).fit(make_student(data), datamodule=data)
    assert rec.rows[0]["train/skipped_sequences"] == 1
    assert "skipped 1 sequence(s) with no response tokens" in caplog.text


def test_t3s_can_force_the_whole_reply(tiny_world, tmp_path):
    # every reply token has Δc = −1 < −τ: T3S corrupts the whole reply, the EOS padding stays random
    data = make_data(tiny_world, batch=4, micro=4, limit=4)
    data.setup("fit")
    n = sum(len(t.input_ids) for t in data.traces)
    lengths = torch.tensor([len(t.input_ids) for t in data.traces])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ScoreCache(torch.zeros(n), -torch.ones(n), offsets, {"data": data.fingerprint()}).save(tmp_path / "s")
    student = make_student(data, selection=T3S(scores=str(tmp_path / "s")))
    rec = Record()
    make_trainer(tmp_path, 1, callbacks=[rec]).fit(student, datamodule=data)
    reply = data.num_response_tokens
    mb = data.step_batch(0)["micro_batches"][0]
    answer = int((mb["labels"] != -100).sum()) + int((mb["trace_index"] < 0).sum())
    assert rec.rows[0]["train/corrupted_fraction"] >= reply / answer


def test_the_benchmark_callback_runs_on_a_diffusion_student(tiny_world, tmp_path):
    from t3s.evals.callbacks import BenchmarkCallback

    data = make_data(tiny_world, batch=4, micro=4, limit=4)
    student = make_student(data, sampler={"gen_length": 16, "block_length": 8, "steps": 8})
    bench = BenchmarkCallback(every_n_steps=1, train_limit=2, batch_size=2,
                              sampling={"n": 1, "temperature": 0.0, "max_new_tokens": 16})
    make_trainer(tmp_path, 2, callbacks=[bench]).fit(student, datamodule=data)
    assert [step for step, _ in bench.history["train"]] == [0, 1, 2]
    rows = (tmp_path / "generations" / "step_2" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 2
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["final", "step_0", "step_1", "step_2"]


def test_block_diffusion_fit_from_the_cli_writes_checkpoints_the_evaluator_decodes_block_causally(tiny_world, tmp_path):
    """The issue's contract on a tiny random base: fit with block_size 4 for 2 steps, then the offline
    evaluator's sampler for hf/step_2 decodes block-causally with blocks of 4; block_size null is today's loss."""
    import yaml
    from conftest import REPO

    from t3s.cli import main
    from t3s.evals.backends import get_backend
    from t3s.evals.offline import plan_evaluation
    from t3s.evals.scalars import read_scalars

    data = make_data(tiny_world, limit=8)
    data.setup("fit")
    base = save_random_ar(tmp_path / "base", data, seed=0)
    cfg = yaml.safe_load((REPO / "configs" / "tiny-diffusion.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path), enable_progress_bar=False)
    cfg["model"]["init_args"].update(model=base)
    cfg["data"].update(path=str(tiny_world / "teacher_traces.jsonl"), tokenizer=str(tiny_world / "tokenizer"),
                       limit=16, global_batch_size=4, micro_batch_size=4)
    losses = {}
    for name, block in (("blocks", "4"), ("full", "null"), ("default", None)):
        cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name=name)
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        extra = [] if block is None else ["--model.init_args.block_size", block]
        main(["fit", "--config", str(config), "--model.init_args.objective", "llada2", "--trainer.max_steps", "2",
              *extra])
        losses[name] = read_scalars(tmp_path / name / "version_0", "train/loss")[1]
    assert losses["full"][0] == pytest.approx(losses["default"][0], rel=1e-6)
    assert abs(losses["blocks"][0] - losses["default"][0]) > 1e-3

    run = tmp_path / "blocks" / "version_0"
    assert (run / "hf" / "step_2" / "config.json").is_file()
    plan = plan_evaluation(run, train_accuracy=True, steps=[2])
    folder = plan.checkpoints[0][1]
    assert plan.family(folder).generation_backend == "diffusion"
    gen = get_backend("diffusion").from_folder(folder, data.tokenizer, torch.device("cpu"), plan.serve_options())
    assert gen.block_causal and gen.block_length == 4
    trained = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.equal(gen.model.lm_head.weight, trained.lm_head.weight)
