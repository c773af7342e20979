"""Exported ``hf/step_N`` folders stop a plain ``generate()`` at the end of the turn."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import tiny_qwen3
from transformers import AutoModelForCausalLM, AutoTokenizer

from t3s.data.render import stop_token_ids
from t3s.students.checkpoints import save_hf_folder


def always_emits(model: torch.nn.Module, token_id: int) -> None:
    """Make a tiny Qwen3 predict ``token_id`` after any input: every token embeds to the same vector, the layers
    add nothing to the residual stream, and only ``token_id``'s output row is non-zero."""
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[token_id] = 1.0


def test_random_init_export_stops_generate_at_im_end(tmp_path: Path, tiny_world: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "tokenizer")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = tiny_qwen3(len(tokenizer))
    assert model.generation_config.eos_token_id is None  # a random-init model knows no stop token
    always_emits(model, im_end)
    folder = save_hf_folder(model, tokenizer, tmp_path / "hf" / "step_0")
    config = json.loads((folder / "generation_config.json").read_text())
    assert config["eos_token_id"] == stop_token_ids(tokenizer) and im_end in config["eos_token_id"]
    assert config["pad_token_id"] == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id is None  # the live model is left alone

    loaded = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "1+1"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = loaded.generate(**prompt, max_new_tokens=8, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1]:].tolist()
    assert new == [im_end]  # stops at the end of the turn instead of running to max_new_tokens


def test_stop_ids_of_the_real_qwen3_tokenizer(shared_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(shared_dir / "tokenizers" / "qwen3")
    # as Qwen3's own generation_config: <|im_end|>, <|endoftext|>; Qwen's plain-text "</s>" is not a stop token
    assert stop_token_ids(tokenizer) == [151645, 151643]
