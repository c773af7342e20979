"""Rows that finish leave the generation batch: the same greedy tokens as ``model.generate``, fewer decode steps."""

from __future__ import annotations

import torch
from conftest import TINY_WORLD
from transformers import AutoModelForCausalLM, AutoTokenizer

from t3s.evals.backends.hf import HFGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.toy.base import pretrained_base


def _toy_student():
    folder = pretrained_base(TINY_WORLD)  # the θ_0 shipped for the tiny world
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def _prompts(tokenizer, n: int) -> list[list[int]]:
    import json

    rows = [json.loads(line) for line in (TINY_WORLD / "train_problems.jsonl").read_text().splitlines()[:n]]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], add_generation_prompt=True,
                                           tokenize=False) for r in rows]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


class ForwardCounter:
    def __init__(self, model):
        self.rows = 0
        model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.rows += kwargs["input_ids"].shape[0]


def test_greedy_outputs_equal_model_generate_with_fewer_row_steps():
    model, tokenizer = _toy_student()
    prompts = _prompts(tokenizer, 12)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=160)
    counter = ForwardCounter(model)
    leaving = HFGenerator(model, tokenizer, batch_size=6, show_progress=False).generate(prompts, params)
    rows_leaving = counter.rows
    counter.rows = 0
    whole = HFGenerator(model, tokenizer, batch_size=6, show_progress=False,
                        leave_finished=False).generate(prompts, params)
    assert [[g.token_ids for g in gens] for gens in leaving] == [[g.token_ids for g in gens] for gens in whole]
    assert [g[0].hit_limit for g in leaving] == [g[0].hit_limit for g in whole]
    lengths = [len(g[0].token_ids) for g in leaving]
    assert len(set(lengths)) > 1  # rows of one batch finish at different steps
    assert rows_leaving < counter.rows  # row-steps decoded: finished rows were not carried along


def test_sampling_is_reproducible_and_stops():
    model, tokenizer = _toy_student()
    prompts = _prompts(tokenizer, 4)
    params = SamplingParams(n=2, temperature=0.8, top_p=0.9, top_k=20, max_new_tokens=40, seed=3)
    first = HFGenerator(model, tokenizer, batch_size=4, show_progress=False).generate(prompts, params)
    again = HFGenerator(model, tokenizer, batch_size=4, show_progress=False).generate(prompts, params)
    assert [[g.text for g in gens] for gens in first] == [[g.text for g in gens] for gens in again]
    assert all(len(g.token_ids) <= 40 for gens in first for g in gens)
    assert torch.get_rng_state() is not None
