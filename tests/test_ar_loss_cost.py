"""What an ARStudent step spends on masked tokens: the loss kernels agree, the unselected log-prob is sampled."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import tiny_model_config

from t3s.data import TeacherTraceDataModule
from t3s.selection import RandomMask
from t3s.students import ARStudent


@pytest.fixture(scope="module")
def batch(tiny_world):
    data = TeacherTraceDataModule(path=str(tiny_world / "teacher_traces.jsonl"),
                                  tokenizer=str(tiny_world / "tokenizer"), limit=8, global_batch_size=8,
                                  micro_batch_size=8, max_length=512)
    data.setup("fit")
    return len(data.tokenizer), next(iter(data.train_dataloader()))["micro_batches"][0]


def _loss_and_grads(batch, **kw):
    vocab, mb = batch
    student = ARStudent(model_config=tiny_model_config(vocab), selection=RandomMask(fraction=0.5, seed=3), **kw)
    student.configure_model()
    (item,) = student.plan_step({"micro_batches": [mb]}).passes
    nll, stats = student.pass_loss(item)
    nll.backward()
    grads = {n: p.grad.clone() for n, p in student.model.named_parameters() if p.grad is not None}
    stats = torch.tensor(dataclasses.astuple(stats), dtype=torch.float64)
    return nll.detach(), stats, grads, int((item.context.response_mask & ~item.mask).sum())


def test_fused_and_chunked_kernels_give_the_same_loss_and_gradients(batch):
    fused, stats_f, grads_f, _ = _loss_and_grads(batch, loss_kernel="fused")
    chunked, stats_c, grads_c, _ = _loss_and_grads(batch, loss_kernel="chunked")
    assert torch.allclose(fused, chunked, rtol=1e-5)
    assert torch.allclose(stats_f, stats_c, rtol=1e-5, equal_nan=True)
    assert grads_f.keys() == grads_c.keys() and "lm_head.weight" in grads_f
    for name, g in grads_f.items():
        assert float((g - grads_c[name]).norm()) <= 1e-4 * float(grads_c[name].norm()) + 1e-8, name


def test_unselected_logprob_is_exact_sampled_or_off(batch):
    _, exact, _, n_unsel = _loss_and_grads(batch, unselected_logprob_sample=None)
    _, sampled, _, _ = _loss_and_grads(batch, unselected_logprob_sample=16)
    _, off, _, _ = _loss_and_grads(batch, unselected_logprob_sample=0)
    assert n_unsel > 16
    for stats in (exact, sampled, off):  # the counts (selected fraction, response tokens) stay exact
        assert int(stats[3]) == n_unsel and torch.equal(stats[[0, 1, 4]], exact[[0, 1, 4]])
    mean_exact, mean_sampled = float(exact[2]) / n_unsel, float(sampled[2]) / n_unsel
    assert mean_sampled != mean_exact and abs(mean_sampled - mean_exact) < 0.2 * abs(mean_exact)
    assert math.isnan(float(off[2]))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="loss_kernel"):
        ARStudent(model_config=tiny_model_config(10), loss_kernel="triton")
    with pytest.raises(ValueError, match="unselected_logprob_sample"):
        ARStudent(model_config=tiny_model_config(10), unselected_logprob_sample=-1)
    if not torch.cuda.is_available():  # "auto" resolves to SDPA off CUDA
        assert ARStudent(model_config=tiny_model_config(10)).hparams.attn_implementation == "sdpa"
