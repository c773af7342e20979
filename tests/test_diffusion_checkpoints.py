"""Real-checkpoint code paths on stand-ins written for these tests (tests/fixtures/remote_dllm): LLaDA2.0's
remote code under transformers 5 (the compatibility shim, block diffusion, 2-D masks turned causal) and
LLaDA 1.0's forward (no position_ids, logits only)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import Record, make_trainer, tiny_trace_data
from fixtures.remote_dllm import HERE, build

from t3s.data import TeacherTraceDataModule
from t3s.evals.backends.diffusion import DiffusionGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.students import DiffusionStudent
from t3s.students.diffusion import DiffusionStudentError, answer_layout, corrupt, view_loss_sum
from t3s.students.remote_compat import default_rope_parameters, install, reinit_rotary_buffers

EOS, MASK = 2, 5
PROMPTS = [[1, 29, 41, 12, 11, 15, 2, 1, 30], [1, 29, 12, 2, 1, 30], [1, 12, 2]]


@pytest.fixture(scope="module")
def data(tiny_world) -> TeacherTraceDataModule:
    return tiny_trace_data(tiny_world, packing=False)


@pytest.fixture(scope="module")
def llada2(data, tmp_path_factory) -> str:
    install()  # the stand-in imports what LLaDA2's code imports; building it needs the shim too
    return build("llada2", tmp_path_factory.mktemp("llada2"), data.tokenizer, len(data.tokenizer))


@pytest.fixture(scope="module")
def llada1(data, tmp_path_factory) -> str:
    return build("llada1", tmp_path_factory.mktemp("llada1"), data.tokenizer, len(data.tokenizer))


def test_the_shim_restores_what_llada2_code_imports():
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    install()
    assert install() == []  # idempotent
    from transformers.utils.import_utils import is_torch_fx_available

    assert is_torch_fx_available() is False
    config = transformers.PretrainedConfig(hidden_size=32, num_attention_heads=4, head_dim=8, rope_theta=100.0,
                                           partial_rotary_factor=0.5)
    inv_freq, scaling = ROPE_INIT_FUNCTIONS["default"](config, None)
    assert ROPE_INIT_FUNCTIONS["default"] is default_rope_parameters and scaling == 1.0
    assert torch.allclose(inv_freq, torch.tensor([1.0, 100.0 ** -0.5]))  # dim 4: exponents 0, 2/4


def test_the_rotary_frequencies_of_llada2_code_are_recomputed_after_loading(data, llada2):
    """The stand-in keeps inv_freq as LLaDA2's code does (a non-persistent buffer of a *RotaryEmbedding module,
    with an _init_weights that skips buffers), which transformers 5 leaves as uninitialised memory after
    from_pretrained; the student's load recomputes it."""
    from transformers import AutoModelForCausalLM

    raw = AutoModelForCausalLM.from_pretrained(llada2, trust_remote_code=True)
    expected, _ = default_rope_parameters(raw.config)
    assert reinit_rotary_buffers(raw) == ["model.rotary_emb.inv_freq"]
    assert torch.equal(raw.model.rotary_emb.inv_freq, expected)
    assert raw.model.rotary_emb.original_inv_freq is raw.model.rotary_emb.inv_freq
    student = DiffusionStudent(model=llada2, trust_remote_code=True)
    student.configure_model()
    assert torch.equal(student.model.model.rotary_emb.inv_freq, expected)
    assert reinit_rotary_buffers(torch.nn.Linear(2, 2)) == []  # nothing else is touched


def test_llada2_code_trains_block_diffusion_and_decodes_block_causally(data, llada2, tmp_path):
    student = DiffusionStudent(model=llada2, trust_remote_code=True, objective="llada2", block_size=4,
                               loss_normalization="sequence", lr=1e-3, max_grad_norm=None,
                               sampler={"gen_length": 12, "block_length": 4, "steps": 12})
    rec = Record()
    make_trainer(tmp_path, 2, callbacks=[rec]).fit(student, datamodule=data)
    assert type(student.model).__name__ == "TinyLLaDA2ModelLM" and not student.logits_only
    assert len(rec.rows) == 2 and all(r["train/loss"] > 0 for r in rec.rows)

    gen = DiffusionGenerator.for_student(student, batch_size=3, show_progress=False, stop_token_ids=[])
    assert gen.block_causal and gen.block_length == 4
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    batched = [g[0].token_ids for g in gen.generate(PROMPTS, params)]
    alone = [gen.generate([p], params)[0][0].token_ids for p in PROMPTS]
    assert batched == alone and all(len(t) == 12 for t in batched)


def test_a_padded_batch_never_turns_llada2_causal(data, llada2):
    """The stand-in, like LLaDA2's code, turns a 2-D mask causal; the generator hands it 4-D masks only."""
    student = DiffusionStudent(model=llada2, trust_remote_code=True)
    student.configure_model()
    model = student.model.eval()
    ids = torch.tensor([[1, 29, 41, 12, 11, 15]])
    changed = ids.clone()
    changed[0, 3:] = torch.tensor([40, 41, 42])
    with torch.no_grad():
        two_d = [model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, 0] for x in (ids, changed)]
        plain = [model(input_ids=x).logits[0, 0] for x in (ids, changed)]
    assert torch.equal(two_d[0], two_d[1])  # causal: a later token cannot reach position 0
    assert not torch.allclose(plain[0], plain[1])  # bidirectional without a mask

    gen = DiffusionGenerator(model, data.tokenizer, MASK, EOS, gen_length=8, block_length=4, steps=8,
                             batch_size=3, show_progress=False, stop_token_ids=[])
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    batched = [g[0].token_ids for g in gen.generate(PROMPTS, params)]
    assert gen.explicit_attention_mask is False and not gen.block_causal
    assert batched == [gen.generate([p], params)[0][0].token_ids for p in PROMPTS]


def test_llada2_code_that_needs_more_than_the_shim_fails_in_one_line(data, tmp_path):
    import shutil

    install()
    built = build("llada2", tmp_path / "built", data.tokenizer, len(data.tokenizer))
    folder = tmp_path / "broken"  # a fresh folder name: transformers caches imported remote code by name
    shutil.copytree(built, folder)
    code = folder / "modeling_tiny_llada2.py"
    code.write_text("from transformers.utils import a_name_transformers_dropped  # noqa: F401\n" + code.read_text())
    with pytest.raises(DiffusionStudentError) as error:
        DiffusionStudent(model=str(folder), trust_remote_code=True).configure_model()
    message = str(error.value)
    assert "\n" not in message and "transformers 4.52.3" in message and "a_name_transformers_dropped" in message
    assert json.loads((folder / "config.json").read_text())["transformers_version"] == "4.52.3"
    assert (HERE / "modeling_tiny_llada2.py").read_text() != code.read_text()


def test_llada1_trains_with_the_guidelines_loss_and_generates(data, llada1, tmp_path):
    student = DiffusionStudent(model=llada1, trust_remote_code=True, objective="llada", lr=1e-3,
                               max_grad_norm=None)
    student.configure_model()
    assert student.logits_only
    mb = data.step_batch(0)["micro_batches"][0]
    layout = answer_layout(mb["input_ids"], mb["labels"], EOS)
    cols = torch.arange(layout.answer.shape[1])
    fixed = layout.answer & (cols[None, :] % 3 == 0)
    p = torch.tensor([0.5, 0.25], dtype=torch.float64)
    (view,) = corrupt(layout, fixed, torch.zeros_like(fixed), p, mask_id=MASK, objective="llada")
    with torch.no_grad():
        lp, _ = student.corrupted_logprobs(view)
        loss = float(view_loss_sum(lp.double(), view)) / view.normaliser
        # GUIDELINES.md: CE / p_mask / answer_length summed, over the batch's sequences
        logits = student.model(input_ids=view.noisy_ids).logits.double()
    ce = torch.nn.functional.cross_entropy(logits[fixed], layout.targets[fixed], reduction="none")
    per_token = ce / p[:, None].expand_as(fixed)[fixed] / layout.answer.sum(1, keepdim=True).expand_as(fixed)[fixed]
    assert loss == pytest.approx(float(per_token.sum()) / 2, rel=1e-6)

    rec = Record()
    make_trainer(tmp_path, 2, callbacks=[rec]).fit(student, datamodule=data)
    assert len(rec.rows) == 2 and all(r["train/loss"] > 0 for r in rec.rows)
    gen = DiffusionGenerator.for_student(student, gen_length=8, block_length=4, steps=8, batch_size=3,
                                         show_progress=False, stop_token_ids=[])
    assert gen.logits_only and not gen.block_causal
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=8)
    batched = [[g.token_ids for g in gens] for gens in gen.generate(PROMPTS, params)]
    assert batched == [[g.token_ids for g in gen.generate([p], params)[0]] for p in PROMPTS]
    with pytest.raises(DiffusionStudentError, match="takes no position_ids"):
        DiffusionStudent(model=llada1, trust_remote_code=True, block_size=4).configure_model()


def test_the_bidirectionality_probe_is_not_fooled_by_routing_noise(data, llada2):
    from transformers import AutoModelForCausalLM

    from t3s.students.diffusion_hf import attends_bidirectionally, needs_explicit_mask

    noisy_causal = AutoModelForCausalLM.from_pretrained(llada2, trust_remote_code=True, always_causal=True,
                                                        routing_noise=1e-7)
    reinit_rotary_buffers(noisy_causal)  # transformers 5 leaves the stand-in's inv_freq uninitialised
    decoder = noisy_causal.get_decoder()
    ids = torch.tensor([[1, 29, 41, 12]])
    changed = torch.tensor([[1, 30, 42, 13]])
    with torch.no_grad():
        a, b = (decoder(input_ids=x).last_hidden_state[0, 0] for x in (ids, changed))
    assert not torch.equal(a, b) and float((a - b).abs().max()) < 1e-6  # exact equality would call it bidirectional
    assert not attends_bidirectionally(noisy_causal)
    with pytest.raises(DiffusionStudentError, match="stays causal"):
        needs_explicit_mask(noisy_causal)
    noisy = AutoModelForCausalLM.from_pretrained(llada2, trust_remote_code=True, routing_noise=1e-7)
    reinit_rotary_buffers(noisy)
    assert attends_bidirectionally(noisy)
