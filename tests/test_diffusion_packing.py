"""DiffusionStudent on packed rows: a packed step has the loss and gradients of the same traces each alone.

Equivalence is the test: with the hash noise keyed by (trace, position inside the trace), every trace draws the
same corruption packed or alone, so under the document mask (∧ the block-diffusion mask) the packed step's loss
and gradients equal those of the traces each on a row of its own without padding, for both attention modes and
every normaliser. Models that cannot keep packed traces apart are refused in one line.
"""

from __future__ import annotations

import pytest
import torch
from conftest import Record, make_trainer, tiny_model_config, tiny_trace_data
from diffusion_helpers import make_diffusion_student as make_student
from diffusion_helpers import position_delta_cache
from fixtures.remote_dllm import build

from t3s.data import TeacherTraceDataModule
from t3s.data.packing import collate
from t3s.ops.hashing import hash_uniform, hash_uniform_at
from t3s.ops.packed_attention import dense_document_mask
from t3s.selection import T3S
from t3s.students import DiffusionStudent
from t3s.students.diffusion import DiffusionStudentError, answer_layout
from t3s.students.diffusion_blocks import block_diffusion_mask
from t3s.students.remote_compat import install

EOS = 2


def make_data(world, packing: bool, **kw) -> TeacherTraceDataModule:
    """The tiny world's traces (8, global batch 4), micro-batches of 4 unless ``kw`` says otherwise."""
    return tiny_trace_data(world, packing, **({"micro_batch_size": 4} | kw))


@pytest.fixture(scope="module")
def data(tiny_world) -> TeacherTraceDataModule:
    return make_data(tiny_world, packing=False)


@pytest.fixture(scope="module")
def rows(data) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Five traces packed into rows of 512 tokens (several per row, the last row padded), and each alone."""
    traces = data.traces[:5]
    packed = collate(traces, data.pad_id, pack=True, max_length=512)
    per_row = [len(set(r.tolist()) - {-1}) for r in packed["trace_index"]]
    assert max(per_row) >= 2 and bool((packed["trace_index"] < 0).any())  # packed, with row padding
    return packed, [collate([t], data.pad_id, pack=False) for t in traces]


@pytest.fixture(scope="module")
def delta_cache(data, tmp_path_factory) -> str:
    """Δc by position: anchors at t%4==0 (+0.5), yet-to-learn at t%4==1 (−0.5)."""
    return position_delta_cache(data, tmp_path_factory.mktemp("scores"))


def step_loss(student: DiffusionStudent, micro_batches, packed: bool, step: int = 3):
    """The step's loss (Σ loss sums / Σ normalisers, as StudentModule) and its gradients; the views."""
    student.packed_rows = packed
    student.check_bidirectional()
    student.model.zero_grad()
    views = [v for mb in micro_batches for v in student.prepare(mb, step).views]
    normaliser = sum(v.normaliser for v in views)
    loss = sum(student.pass_loss(v)[0] for v in views) / normaliser
    loss.backward()
    grads = {n: p.grad.clone() for n, p in student.model.named_parameters() if p.grad is not None}
    return float(loss), grads, views


def assert_same_gradients(
    got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], tolerance: float = 1e-5
) -> None:
    """Every parameter's gradient agrees to ``tolerance`` of its largest entry (fp32 sums in another order)."""
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        scale = float(grad.abs().max())
        assert scale > 0, name
        assert float((got[name] - grad).abs().max()) <= tolerance * scale, name


def spans(packed_mb: dict[str, torch.Tensor]):
    """``(row, first column, trace index)`` of every trace of a packed micro-batch, in row-major order."""
    out = []
    for r, row in enumerate(packed_mb["trace_index"].tolist()):
        for c, t in enumerate(row):
            if t >= 0 and (c == 0 or row[c - 1] != t):
                out.append((r, c, t))
    return out


def test_the_element_wise_hash_draws_the_grid_values():
    traces = torch.tensor([3, 0, 11])
    grid = hash_uniform(5, 2, traces, 9, 2)
    cols = torch.arange(9)
    assert torch.equal(hash_uniform_at(5, 2, traces[:, None], cols[None, :], 2), grid)
    assert torch.equal(hash_uniform_at(5, 2, torch.tensor([11, 11]), torch.tensor([4, 7]), 2), grid[2, [4, 7]])


def test_packed_layout_is_per_document(data, rows):
    packed, alone = rows
    layout = answer_layout(packed["input_ids"], packed["labels"], EOS, packed["trace_index"], packed=True)
    found = spans(packed)
    assert layout.num_documents == len(found) == 5 and layout.traces.tolist() == [t for _, _, t in found]
    assert not bool(layout.answer[packed["trace_index"] < 0].any())  # row padding: in no document
    assert bool((layout.documents[packed["trace_index"] < 0] == -1).all())
    for d, (r, c, _) in enumerate(found):
        mb = next(a for a in alone if int(a["trace_index"][0, 0]) == found[d][2])
        one = answer_layout(mb["input_ids"], mb["labels"], EOS, mb["trace_index"])
        n = mb["input_ids"].shape[1]
        assert torch.equal(layout.targets[r, c : c + n], one.targets[0])
        assert torch.equal(layout.answer[r, c : c + n], one.answer[0])
        assert torch.equal(layout.offsets[r, c : c + n], torch.arange(n))
        assert bool((layout.documents[r, c : c + n] == d).all())


def test_packed_masks_are_the_document_mask_and_its_intersection_with_the_block_mask():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0]])  # documents [0..2], [3..4], padding [5]
    docs = torch.tensor([0, 0, 0, 1, 1, 2])
    same = docs[:, None] == docs[None, :]
    assert torch.equal(dense_document_mask(pos, causal=False)[0, 0], same)
    assert torch.equal(dense_document_mask(pos)[0, 0], same & torch.ones(6, 6, dtype=torch.bool).tril())
    blocks = block_diffusion_mask(pos, 2, docs[None])[0]
    alone = block_diffusion_mask(torch.arange(3)[None], 2)[0]  # the first document on its own
    first = torch.tensor([0, 1, 2, 6, 7, 8])  # its x_t and x_0 columns in the packed [x_t ; x_0]
    assert torch.equal(blocks[first][:, first], alone)
    others = torch.tensor([3, 4, 5, 9, 10, 11])
    assert not bool(blocks[first][:, others].any()) and not bool(blocks[others][:, first].any())


@pytest.mark.parametrize(
    ("objective", "normalization", "block_size", "complementary"),
    [
        ("llada", None, None, False),
        ("llada2", None, None, True),
        ("llada2", "sequence", None, False),
        ("llada2", None, 4, False),
        ("llada2", "sequence", 4, True),
        ("llada", None, 32, False),
    ],
)
def test_a_packed_step_equals_each_trace_alone(data, rows, delta_cache, objective, normalization, block_size,
                                               complementary):
    packed, alone = rows
    selection = T3S(scores=delta_cache)
    selection.setup(data.fingerprint())
    student = make_student(data, objective=objective, loss_normalization=normalization, block_size=block_size,
                           complementary_masking=complementary, selection=selection, anchor_visibility=0.5)
    loss_alone, grads_alone, views_alone = step_loss(student, alone, packed=False)
    loss_packed, grads_packed, views_packed = step_loss(student, [packed], packed=True)
    assert loss_packed == pytest.approx(loss_alone, rel=1e-6)
    assert_same_gradients(grads_packed, grads_alone)

    # every trace's corruption (random ∪ forced yet-to-learn, anchors thinned) and weights are its own
    per_view = 2 if complementary else 1
    normaliser_alone = sum(v.normaliser for v in views_alone)
    normaliser_packed = sum(v.normaliser for v in views_packed)
    assert normaliser_packed == normaliser_alone
    order = [int(a["trace_index"][0, 0]) for a in alone]
    for r, c, trace in spans(packed):
        i = order.index(trace)
        for k in range(per_view):
            one, many = views_alone[i * per_view + k], views_packed[k]
            n = one.noisy_ids.shape[1]
            assert torch.equal(many.corrupted[r, c : c + n], one.corrupted[0])
            assert torch.equal(many.noisy_ids[r, c : c + n], one.noisy_ids[0])
            assert torch.equal(many.weights[r, c : c + n], one.weights[0])
    assert not bool(views_packed[0].corrupted[packed["trace_index"] < 0].any())


def test_fit_on_packed_rows_equals_fit_on_single_trace_rows(tiny_world, tmp_path):
    """The real Trainer: packed micro-batches vs one trace per micro-batch (no padding), first two steps."""
    results = {}
    for packing, micro in ((True, 4), (False, 1)):
        data = make_data(tiny_world, packing=packing, micro_batch_size=micro)
        student = DiffusionStudent(model_config=tiny_model_config(len(data.tokenizer)),
                                   tokenizer=data.tokenizer.name_or_path, objective="llada2", block_size=4,
                                   loss_normalization="sequence", lr=1e-3, max_grad_norm=None)
        rec = Record()
        make_trainer(tmp_path / str(packing), 2, callbacks=[rec]).fit(student, datamodule=data)
        results[packing] = rec.rows
    for packed, alone in zip(results[True], results[False], strict=True):
        assert packed["train/loss"] == pytest.approx(alone["train/loss"], rel=1e-6)
        assert packed["train/grad_norm"] == pytest.approx(alone["train/grad_norm"], rel=1e-5)
        assert packed["train/corrupted_fraction"] == pytest.approx(alone["train/corrupted_fraction"], rel=1e-9)


def test_what_cannot_train_on_packed_rows_is_refused_in_one_line(tiny_world, tmp_path):
    data = make_data(tiny_world, packing=True, limit=4)
    student = DiffusionStudent(model_config=tiny_model_config(len(data.tokenizer)),
                               tokenizer=data.tokenizer.name_or_path, pad_to=512)
    with pytest.raises(DiffusionStudentError, match="unset model.init_args.pad_to"):
        make_trainer(tmp_path / "pad", 1).fit(student, datamodule=data)

    llada1 = build("llada1", tmp_path / "llada1", data.tokenizer, len(data.tokenizer))
    with pytest.raises(DiffusionStudentError, match="LLaDA 1.0.*set data.batching.packing: false"):
        make_trainer(tmp_path / "l1", 1).fit(DiffusionStudent(model=llada1, trust_remote_code=True),
                                             datamodule=data)

    install()
    dropping = build("llada2", tmp_path / "dropping", data.tokenizer, len(data.tokenizer))
    config = (tmp_path / "dropping" / "config.json")
    config.write_text(config.read_text().replace('"drops_4d_masks": false', '"drops_4d_masks": true'))
    with pytest.raises(DiffusionStudentError, match="ignores the 4-D document mask"):
        make_trainer(tmp_path / "drop", 1).fit(DiffusionStudent(model=dropping, trust_remote_code=True),
                                               datamodule=data)


@pytest.mark.parametrize("block_size", [None, 4])
def test_llada2_code_trains_on_packed_rows_as_each_trace_alone(tiny_world, tmp_path, block_size):
    """LLaDA2's code takes a 4-D mask as given: packed rows reach it through that path."""
    install()
    data = make_data(tiny_world, packing=False)
    folder = build("llada2", tmp_path / "llada2", data.tokenizer, len(data.tokenizer))
    packed = collate(data.traces[:5], data.pad_id, pack=True, max_length=512)
    alone = [collate([t], data.pad_id, pack=False) for t in data.traces[:5]]
    student = DiffusionStudent(model=folder, trust_remote_code=True, objective="llada2", block_size=block_size)
    student.configure_model()
    loss_alone, grads_alone, _ = step_loss(student, alone, packed=False)
    loss_packed, grads_packed, _ = step_loss(student, [packed], packed=True)
    assert loss_packed == pytest.approx(loss_alone, rel=1e-6)
    assert_same_gradients(grads_packed, grads_alone)

    rec = Record()
    packed_data = make_data(tiny_world, packing=True)
    student = DiffusionStudent(model=folder, trust_remote_code=True, objective="llada2", block_size=block_size,
                               lr=1e-3, max_grad_norm=None)
    make_trainer(tmp_path / "fit", 2, callbacks=[rec]).fit(student, datamodule=packed_data)
    assert len(rec.rows) == 2 and all(r["train/loss"] > 0 for r in rec.rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (FlexAttention has no backward on CPU)")
@pytest.mark.parametrize("block_size", [None, 4])
def test_flex_block_masks_on_cuda_give_the_dense_packed_step(data, rows, block_size):
    """flex_attention (a BlockMask of the document ∧ block mask) against the dense 4-D mask, both packed."""
    packed, alone = rows
    results = {}
    for kernel in ("sdpa", "flex_attention"):
        student = DiffusionStudent(model_config=tiny_model_config(len(data.tokenizer)),
                                   tokenizer=data.tokenizer.name_or_path, objective="llada2",
                                   block_size=block_size, attn_implementation=kernel)
        student.configure_model()
        student.model.cuda()
        on_gpu = [{k: v.cuda() for k, v in mb.items()} for mb in alone]
        packed_gpu = {k: v.cuda() for k, v in packed.items()}
        results[kernel] = (step_loss(student, on_gpu, packed=False)[:2],
                           step_loss(student, [packed_gpu], packed=True)[:2])
    dense_packed, (flex_alone, flex_packed) = results["sdpa"][1], results["flex_attention"]
    assert flex_packed[0] == pytest.approx(dense_packed[0], rel=1e-4)
    assert flex_packed[0] == pytest.approx(flex_alone[0], rel=1e-4)
    assert_same_gradients({k: v.float() for k, v in flex_packed[1].items()},
                          {k: v.float() for k, v in flex_alone[1].items()}, tolerance=1e-3)
