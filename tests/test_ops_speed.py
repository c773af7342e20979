"""Speed knobs: per-layer compile wiring and fused AdamW selection (compilation itself runs on GPU only)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model_config
from transformers import AutoConfig, AutoModelForCausalLM

from t3s.ops.speed import adamw_speed_kwargs, compile_decoder_layers
from t3s.students import ARStudent


def _model():
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_model_config(40)))


def test_compile_wraps_every_decoder_layer_lazily():
    model = _model()
    assert compile_decoder_layers(model) == 2
    assert all(layer._compiled_call_impl is not None for layer in model.model.layers)
    assert model.lm_head._compiled_call_impl is None  # only the repeated blocks
    with pytest.raises(ValueError, match="decoder layers"):
        compile_decoder_layers(torch.nn.Linear(2, 2))


def test_fused_adamw_only_for_cuda_parameters():
    params = list(_model().parameters())
    assert adamw_speed_kwargs(params) == {}
    assert adamw_speed_kwargs([]) == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_bf16_student_step_on_cuda():
    student = ARStudent(model_config=tiny_model_config(40), compile_layers=True, dtype="bfloat16")
    student.configure_model()
    student.to("cuda")
    ids = torch.randint(0, 40, (1, 24), device="cuda")
    mb = {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(24, device="cuda")[None],
          "trace_index": torch.zeros_like(ids)}
    ctx = student.selection_context(mb)
    nll, stats = student._micro_batch_loss(mb, ctx, ctx.response_mask)
    nll.backward()
    assert torch.isfinite(nll) and int(stats[1]) == 23
    assert student.model.lm_head.weight.grad is not None
    assert adamw_speed_kwargs(list(student.model.parameters())) == {"fused": True}
