"""t3s's diffusion student beside the public references, on identical inputs and noise (CPU, seconds).

    git clone https://github.com/inclusionAI/dFactory /tmp/dFactory
    git clone https://github.com/ML-GSAI/LLaDA /tmp/LLaDA
    python benchmarks/dllm_reference_check.py --dfactory /tmp/dFactory --llada /tmp/LLaDA

Two checks on tiny random bidirectional Qwen3 models (the repo's tiny arithmetic world), reading the reference
functions from the checkout at run time (nothing of theirs is copied into t3s):

1. **objective**: the ``llada2`` loss with ``block_size`` 4 and 32, ``loss_normalization: sequence``, against
   dFactory's ``tasks/train_llada2_bd.py`` (``block_diffusion_mask`` → its -inf float mask, ``[x_t ; x_0]``
   input with positions ``0..L−1`` twice, CE on the ``x_t`` half, ``same_token_labels``, per-micro-batch mean
   over micro-batches of one sequence). x_t is t3s's own hash-drawn corruption; x_0 its EOS-padded targets.
   Passes when the relative difference is below 1e-5.
2. **generate**: t3s's block-causal ``DiffusionGenerator`` (batches of 4 left-padded prompts, KV cache) against
   ``LLaDA2MoeModelLM.generate`` from dFactory's ``models/llada2_moe/modeling_llada2_moe.py`` run one prompt at a
   time over the same weights, greedy. That copy samples with ``torch.multinomial`` even at temperature 0, so its
   sampling helper is replaced by argmax; its forward excludes the mask token as t3s does. Passes when every
   prompt decodes token for token the same.
3. **llada-generate** (with ``--llada``): t3s's full-attention sampler (``block_size`` null, left-padded batches of
   4 under a 4-D mask) against ``generate`` of ML-GSAI/LLaDA's ``generate.py`` (low-confidence remasking, one
   prompt at a time), greedy, the mask token excluded from both; compared up to the first EOS (t3s stops there,
   LLaDA's loop fills the whole canvas; committed tokens never change, so the prefixes must agree).

The last line is one JSON object with both results.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import typing
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "data" / "tiny"
MASK, EOS = 5, 2


def _source(checkout: Path, path: str) -> str:
    """A file of the checkout as committed (its HEAD; works on a bare mirror too)."""
    if (checkout / path).is_file():
        return (checkout / path).read_text()
    return subprocess.run(["git", "-C", str(checkout), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _tiny_config(vocab: int, **overrides: typing.Any) -> dict:
    return {"model_type": "qwen3", "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
            "max_position_embeddings": 512, "tie_word_embeddings": False, **overrides}


def check_objective(checkout: Path) -> float:
    from t3s.data import TeacherTraceDataModule
    from t3s.students import DiffusionStudent

    tree = ast.parse(_source(checkout, "tasks/train_llada2_bd.py"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "block_diffusion_mask")
    namespace: dict[str, typing.Any] = {"torch": torch}
    exec(compile(ast.Module([fn], []), "dfactory:block_diffusion_mask", "exec"), namespace)
    reference_mask = namespace["block_diffusion_mask"]

    data = TeacherTraceDataModule(path=str(TINY / "teacher_traces.jsonl"), tokenizer=str(TINY / "tokenizer"),
                                  limit=8, global_batch_size=8, micro_batch_size=1, max_length=512, packing=False)
    data.setup("fit")
    worst = 0.0
    for block_size in (4, 32):
        student = DiffusionStudent(model_config=_tiny_config(len(data.tokenizer)),
                                   tokenizer=data.tokenizer.name_or_path, objective="llada2",
                                   block_size=block_size, loss_normalization="sequence", pad_to=96, init_seed=1)
        student.configure_model()
        student.model.eval()
        micro_batches = data.step_batch(3)["micro_batches"]
        weighted, normaliser, theirs = 0.0, 0.0, 0.0
        for mb in micro_batches:
            (view,) = student.prepare(mb, 3).views
            with torch.no_grad():
                lp, _ = student.corrupted_logprobs(view)
            weighted += float(-(view.weights[view.corrupted].double() * lp.double()).sum())
            normaliser += view.normaliser
            n = view.noisy_ids.shape[1]
            flag = reference_mask(None, None, torch.arange(2 * n)[:, None], torch.arange(2 * n)[None, :],
                                  block_size=block_size, n=n)[None, None]
            additive = torch.zeros(flag.shape).masked_fill_(flag.logical_not(), float("-inf"))
            labels = torch.where(view.noisy_ids == MASK, view.targets, torch.full_like(view.targets, -100))
            positions = torch.cat([torch.arange(n), torch.arange(n)])[None]
            with torch.no_grad():
                logits = student.model(input_ids=torch.cat([view.noisy_ids, view.targets], 1),
                                       position_ids=positions, attention_mask=additive, use_cache=False).logits
            ce = torch.nn.functional.cross_entropy(logits[:, :n].reshape(-1, logits.shape[-1]).double(),
                                                   labels.view(-1), reduction="none")
            theirs += float(ce.sum() / (labels != -100).sum() / len(micro_batches))
        ours = weighted / normaliser
        diff = abs(ours - theirs) / abs(theirs)
        print(f"objective block_size={block_size}: t3s {ours:.8f}  dFactory {theirs:.8f}  rel. diff {diff:.1e}")
        worst = max(worst, diff)
    return worst


def check_generate(checkout: Path) -> tuple[int, int]:
    from t3s.evals.backends.diffusion import DiffusionGenerator
    from t3s.evals.backends.sampling import SamplingParams
    from t3s.students import DiffusionStudent

    tree = ast.parse(_source(checkout, "models/llada2_moe/modeling_llada2_moe.py"))
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "LLaDA2MoeModelLM")
    body = [n for n in cls.body
            if isinstance(n, ast.FunctionDef) and n.name in ("generate", "_get_num_transfer_tokens")]
    namespace: dict[str, typing.Any] = {"torch": torch, "Optional": typing.Optional}
    module = ast.fix_missing_locations(ast.Module([ast.ClassDef("Reference", [], [], body, [])], []))
    exec(compile(module, "dfactory:LLaDA2MoeModelLM.generate", "exec"), namespace)

    class Greedy(namespace["Reference"]):  # type: ignore[misc, name-defined]
        def __init__(self, model: typing.Any) -> None:
            self.model, self.device = model, torch.device("cpu")

        def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> typing.Any:
            out = self.model(input_ids=x, attention_mask=attention_mask.float(), position_ids=position_ids,
                             use_cache=False)
            out.logits[..., MASK] = float("-inf")
            return out

        def _sample_with_temperature_topk_topp(self, logits: torch.Tensor, **_: typing.Any) -> typing.Any:
            probs = torch.softmax(logits.float(), -1)
            token = probs.argmax(-1)
            return token, probs.gather(-1, token[..., None])[..., 0]

    prompts = [[1, 29, 41, 12, 11, 15, 2, 1, 30], [1, 29, 12, 2, 1, 30], [1, 12, 2],
               [1, 9, 10, 11, 12, 13, 14, 2, 1, 30, 31]]
    same = total = 0
    for seed in (1, 2, 3):
        for block, steps, threshold in ((4, 4, 0.1), (4, 2, 0.3), (8, 8, 0.95), (8, 4, 0.05)):
            student = DiffusionStudent(model_config=_tiny_config(73, initializer_range=0.5),
                                       tokenizer=str(TINY / "tokenizer"), init_seed=seed, block_size=block)
            student.configure_model()
            student.model.eval()
            gen_length = 4 * block
            ours = DiffusionGenerator.for_student(student, gen_length=gen_length, block_length=block,
                                                  steps=4 * steps, threshold=threshold, batch_size=4,
                                                  show_progress=False, stop_token_ids=[EOS])
            outputs = ours.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=gen_length))
            reference = Greedy(student.model)
            for prompt, out in zip(prompts, outputs):
                theirs = reference.generate(torch.tensor([prompt]), temperature=0.0, block_length=block, steps=steps,
                                            gen_length=gen_length, threshold=threshold, eos_id=EOS,
                                            mask_id=MASK)[0].tolist()
                total += 1
                same += out[0].token_ids == theirs
    print(f"generate: {same}/{total} prompts decode token for token as LLaDA2's generate")
    return same, total


def check_llada_generate(checkout: Path) -> tuple[int, int]:
    from t3s.evals.backends.diffusion import DiffusionGenerator
    from t3s.evals.backends.sampling import SamplingParams
    from t3s.students import DiffusionStudent

    tree = ast.parse(_source(checkout, "generate.py"))
    wanted = ("add_gumbel_noise", "get_num_transfer_tokens", "generate")
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    import numpy as np
    from torch.nn import functional as F

    namespace: dict[str, typing.Any] = {"torch": torch, "np": np, "F": F}
    exec(compile(ast.Module(body, []), "LLaDA:generate.py", "exec"), namespace)
    reference = namespace["generate"]

    class NoMask(torch.nn.Module):
        def __init__(self, model: typing.Any) -> None:
            super().__init__()
            self.inner, self.device = model, torch.device("cpu")

        def forward(self, x: torch.Tensor, attention_mask: typing.Any = None) -> typing.Any:
            out = self.inner(input_ids=x, use_cache=False)
            out.logits[..., MASK] = float("-inf")
            return out

    prompts = [[1, 29, 41, 12, 11, 15, 2, 1, 30], [1, 29, 12, 2, 1, 30], [1, 12, 2],
               [1, 9, 10, 11, 12, 13, 14, 2, 1, 30, 31]]
    same = total = 0
    for seed in (1, 2, 3):
        for gen_length, block, steps in ((16, 4, 16), (16, 8, 8), (24, 24, 12)):
            student = DiffusionStudent(model_config=_tiny_config(73, initializer_range=0.5),
                                       tokenizer=str(TINY / "tokenizer"), init_seed=seed)
            student.configure_model()
            student.model.eval()
            ours = DiffusionGenerator.for_student(student, gen_length=gen_length, block_length=block, steps=steps,
                                                  batch_size=4, show_progress=False, stop_token_ids=[EOS])
            outputs = ours.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=gen_length))
            for prompt, out in zip(prompts, outputs):
                canvas = reference(NoMask(student.model), torch.tensor([prompt]), steps=steps, gen_length=gen_length,
                                   block_length=block, temperature=0.0, mask_id=MASK)[0, len(prompt):].tolist()
                theirs = canvas[: canvas.index(EOS) + 1] if EOS in canvas else canvas
                total += 1
                same += out[0].token_ids == theirs
    print(f"llada-generate: {same}/{total} prompts decode token for token as LLaDA's generate.py")
    return same, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dfactory", type=Path, required=True, help="a checkout (or bare mirror) of dFactory")
    parser.add_argument("--llada", type=Path, help="a checkout (or bare mirror) of ML-GSAI/LLaDA")
    args = parser.parse_args()
    torch.set_num_threads(1)
    worst = check_objective(args.dfactory)
    same, total = check_generate(args.dfactory)
    result: dict[str, typing.Any] = {"objective_max_rel_diff": worst, "generate_same": same, "generate_total": total}
    ok = worst < 1e-5 and same == total
    if args.llada is not None:
        same1, total1 = check_llada_generate(args.llada)
        result.update(llada_generate_same=same1, llada_generate_total=total1)
        ok = ok and same1 == total1
    print(json.dumps({**result, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
