"""ARStudent on tiny real models with a real Lightning Trainer."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from conftest import Record, make_data, make_student, make_trainer, tiny_model_config
from transformers import AutoModelForCausalLM

from t3s.selection import T3S, FullSFT, RandomMask


class Boom(L.Callback):
    """Raises a real exception inside the training loop at a given step."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


def test_masked_tokens_get_no_gradient(tiny_world):
    data = make_data(tiny_world)
    student = make_student(data)
    student.configure_model()
    mb = next(iter(data.train_dataloader()))["micro_batches"][0]
    ctx = student.selection_context(mb)
    keep = RandomMask(fraction=0.5, seed=1).loss_mask(ctx)
    hidden = student.hidden_states(mb)
    hidden.retain_grad()
    (-student.logprobs_at(hidden, mb["input_ids"], keep).sum()).backward()
    # the final hidden state at t-1 only predicts token t: zero gradient iff token t is not selected
    grad_norm = hidden.grad[:, :-1].norm(dim=-1)
    predicts_selected = keep[:, 1:]
    assert bool((grad_norm[~predicts_selected] == 0).all())
    assert bool((grad_norm[predicts_selected] > 0).all())
    assert 0 < int(keep.sum()) < int(ctx.response_mask.sum())


def test_loss_normalised_over_the_global_batch_under_accumulation(tiny_world, tmp_path):
    results = []
    for micro in (8, 3, 1):
        data = make_data(tiny_world, batch=8, micro=micro)
        student = make_student(data)
        rec = Record()
        make_trainer(tmp_path / f"m{micro}", 1, callbacks=[rec]).fit(student, datamodule=data)
        results.append(rec.rows[0])
    for other in results[1:]:
        assert other["train/loss"] == pytest.approx(results[0]["train/loss"], rel=1e-5)
        assert other["train/grad_norm"] == pytest.approx(results[0]["train/grad_norm"], rel=1e-4)
    assert results[0]["train/traces"] == 8
    assert results[0]["train/selected_fraction"] == 1.0


def test_fit_writes_loadable_hf_checkpoints_and_resumes_exactly(tiny_world, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(root, steps, ckpt_path=None, callbacks=()):
        data = make_data(tiny_world, batch=4, micro=2)
        student = make_student(data)
        ckpt = ModelCheckpoint(every_n_train_steps=2, save_top_k=1, save_last=True)
        trainer = make_trainer(root, steps, enable_checkpointing=True, callbacks=[ckpt, *callbacks])
        trainer.fit(student, datamodule=data, ckpt_path=ckpt_path)
        return student, trainer

    straight, _ = run(tmp_path / "straight", 4)
    hf = tmp_path / "straight" / "hf"
    assert sorted(p.name for p in hf.iterdir()) == ["final", "step_0", "step_2", "step_4"]
    loaded = AutoModelForCausalLM.from_pretrained(hf / "final")
    for name, tensor in straight.model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], tensor), name
    initial = make_student(make_data(tiny_world))
    initial.configure_model()
    step0 = AutoModelForCausalLM.from_pretrained(hf / "step_0").state_dict()
    assert all(torch.equal(step0[k], v) for k, v in initial.model.state_dict().items())

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "resumed", 4, callbacks=[Boom(at=2)])
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert last.is_file() and not list(last.parent.glob(".*tmp*"))
    resumed, trainer = run(tmp_path / "resumed", 4, ckpt_path=str(last))
    assert trainer.global_step == 4
    for name, tensor in straight.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[name], tensor, atol=1e-6), name


class Evaluates(L.Callback):
    """Asks for the HF folder of step ``at``, as an evaluation callback does."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.at:
            pl_module.ensure_hf_checkpoint(self.at)


def test_hf_folders_only_at_evaluated_steps_in_the_export_dtype(tiny_world, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    data = make_data(tiny_world, batch=4, micro=2)
    student = make_student(data, hf_folders="evaluated", hf_dtype="bfloat16")
    ckpt = ModelCheckpoint(every_n_train_steps=1, save_top_k=1, save_last=True)
    make_trainer(tmp_path, 3, enable_checkpointing=True, callbacks=[ckpt, Evaluates(at=2)]).fit(
        student, datamodule=data
    )
    hf = tmp_path / "hf"
    assert sorted(p.name for p in hf.iterdir()) == ["final", "step_0", "step_2", "step_3"]
    loaded = AutoModelForCausalLM.from_pretrained(hf / "final", dtype="auto")
    assert loaded.dtype == torch.bfloat16
    for name, tensor in student.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16)), name
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (hf / "step_3").iterdir())


def test_crash_keeps_the_last_good_checkpoint(tiny_world, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    data = make_data(tiny_world, batch=4, micro=4)
    trainer = make_trainer(tmp_path, 6, enable_checkpointing=True,
                           callbacks=[ModelCheckpoint(every_n_train_steps=1, save_top_k=1, save_last=True), Boom(at=3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(make_student(data), datamodule=data)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 3
    assert (tmp_path / "hf" / "step_3" / "model.safetensors").is_file()


def test_all_masked_batch_gives_zero_loss_and_a_warning(tiny_world, tmp_path, caplog):
    from t3s.selection.scores import ScoreCache

    data = make_data(tiny_world, batch=4, micro=2)
    data.setup("fit")
    n = sum(len(t.input_ids) for t in data.traces)
    lengths = torch.tensor([len(t.input_ids) for t in data.traces])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    # every token rose (Δc = +1 > 0): all are anchors, T3S masks everything
    ScoreCache(torch.zeros(n), torch.ones(n), offsets, {"data": data.fingerprint()}).save(tmp_path / "scores")
    student = make_student(data, selection=T3S(scores=str(tmp_path / "scores")))
    rec = Record()
    with caplog.at_level(logging.WARNING):
        make_trainer(tmp_path, 2, callbacks=[rec]).fit(student, datamodule=data)
    assert rec.rows[0]["train/loss"] == 0.0
    assert rec.rows[0]["train/selected_fraction"] == 0.0
    assert all(torch.isfinite(p).all() for p in student.parameters())
    assert "every token of the global batch is masked" in caplog.text


def test_schedule_expresses_the_paper_recipe():
    from t3s.students.base import make_schedule

    cosine = make_schedule("cosine", warmup=5, total=50, min_ratio=0.0)
    assert cosine(0) == pytest.approx(0.2) and cosine(4) == pytest.approx(1.0)
    assert cosine(5) == pytest.approx(1.0) and cosine(50) == pytest.approx(0.0, abs=1e-9)
    assert make_schedule("constant", 0, 50, 0.0)(30) == 1.0
    assert make_schedule("linear", 0, 50, 0.1)(25) == pytest.approx(0.55)
    assert FullSFT().describe() == "FullSFT"


def test_optimizer_options_reach_adamw(tiny_world, tmp_path):
    data = make_data(tiny_world)
    student = make_student(data, weight_decay=0.1, betas=(0.8, 0.9), adam_eps=1e-3)
    trainer = make_trainer(tmp_path, 1)
    trainer.fit(student, datamodule=data)
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert decay["eps"] == 1e-3 and decay["betas"] == (0.8, 0.9)


def test_selective_activation_checkpointing_recomputes_every_nth_layer_with_the_same_gradients(tiny_world):
    data = make_data(tiny_world)
    mb = next(iter(data.train_dataloader()))["micro_batches"][0]
    grads, flags = [], []
    for kw in ({}, {"gradient_checkpointing": True, "checkpoint_every_n_layers": 2}):
        student = make_student(data, model_config=tiny_model_config(len(data.tokenizer), num_hidden_layers=4), **kw)
        student.configure_model()
        student.model.train()
        flags.append([getattr(layer, "gradient_checkpointing", False) for layer in student.model.model.layers])
        (item,) = student.plan_step({"micro_batches": [mb]}).passes
        loss, _ = student.pass_loss(item)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in student.model.named_parameters() if p.grad is not None})
    assert flags == [[False] * 4, [True, False, True, False]]
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6, rtol=1e-5), name
