"""HFGenerator on a tiny random Qwen3, vLLM parameter mapping, and an end-to-end evaluate()."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen3
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3ForCausalLM

from t3s.evals.backends.base import Generator, default_stop_token_ids
from t3s.evals.backends.hf import HFGenerator
from t3s.evals.backends.sampling import SamplingParams
from t3s.evals.backends.vllm import to_vllm_sampling_kwargs
from t3s.evals.runner import evaluate
from t3s.evals.tasks import EvalTask

VOCAB = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(61)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matmuls are dominated by thread hand-off on a busy machine: run them single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def model() -> Qwen3ForCausalLM:
    # float64 so that padded and unpadded greedy decoding cannot differ by rounding noise
    return tiny_qwen3(len(VOCAB), eos_token_id=1, pad_token_id=0).to(torch.float64)


PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]


def test_greedy_is_deterministic_and_left_padding_matches_single_prompts(model, tokenizer):
    gen = HFGenerator(model, tokenizer, batch_size=4, show_progress=False)
    assert isinstance(gen, Generator) and gen.stop_token_ids == [1]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=6)
    model.train()
    batched = gen.generate(PROMPTS, greedy)
    assert model.training  # mode restored
    assert [len(g) for g in batched] == [1, 1, 1]
    assert batched == gen.generate(PROMPTS, greedy)
    single = HFGenerator(model, tokenizer, batch_size=1, show_progress=False)
    for prompt, out in zip(PROMPTS, batched):
        alone = single.generate([prompt], greedy)[0][0]
        assert alone.token_ids == out[0].token_ids
    g = batched[0][0]
    assert g.num_tokens == len(g.token_ids) and g.text == tokenizer.decode(g.token_ids)
    assert g.hit_limit == (g.num_tokens == 6)
    # n greedy samples are identical
    assert (
        len(
            {
                tuple(s.token_ids)
                for s in gen.generate(PROMPTS[:1], SamplingParams(n=3, temperature=0, max_new_tokens=4))[0]
            }
        )
        == 1
    )


def test_stop_tokens_end_generation(model, tokenizer):
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=6)
    first = HFGenerator(model, tokenizer, show_progress=False).generate(PROMPTS, greedy)
    stop = first[0][0].token_ids[2]
    stopped = HFGenerator(model, tokenizer, stop_token_ids=[1, stop], show_progress=False).generate(
        PROMPTS, greedy
    )
    cut = first[0][0].token_ids.index(stop)
    assert stopped[0][0].token_ids == first[0][0].token_ids[:cut]
    assert not stopped[0][0].hit_limit


def test_sampling_n_samples_seeded(model, tokenizer):
    gen = HFGenerator(model, tokenizer, batch_size=4, show_progress=False)
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, top_k=20, max_new_tokens=5, seed=7)
    a = gen.generate(PROMPTS, params)
    assert [len(x) for x in a] == [3, 3, 3]
    assert a == gen.generate(PROMPTS, params)
    assert len({tuple(s.token_ids) for s in a[0]}) > 1  # samples differ
    b = gen.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=5, seed=8))
    assert [[s.token_ids for s in x] for x in a] != [[s.token_ids for s in x] for x in b]
    state = torch.random.get_rng_state()
    gen.generate(PROMPTS[:1], params)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone


def test_default_stop_tokens_include_end_of_turn(shared_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(shared_dir / "tokenizers" / "qwen3"))
    ids = default_stop_token_ids(tok)
    assert (
        tok.convert_tokens_to_ids("<|im_end|>") in ids and tok.convert_tokens_to_ids("<|endoftext|>") in ids
    )


def test_vllm_sampling_kwargs():
    kw = to_vllm_sampling_kwargs(
        SamplingParams(n=4, temperature=0.6, top_p=0.95, top_k=None, max_new_tokens=100, seed=3)
    )
    assert kw == {"n": 4, "temperature": 0.6, "top_p": 0.95, "top_k": -1, "max_tokens": 100, "seed": 3}
    assert to_vllm_sampling_kwargs(SamplingParams(top_k=20))["top_k"] == 20
    assert to_vllm_sampling_kwargs(SamplingParams(top_k=0))["top_k"] == -1
    greedy = to_vllm_sampling_kwargs(SamplingParams(temperature=0.0))
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0
    with pytest.raises(ValueError):
        SamplingParams(n=0)


def test_evaluate_end_to_end(model, tokenizer):
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=4)
    gen = HFGenerator(model, tokenizer, batch_size=4, show_progress=False)
    # "training accuracy": gold answers are the model's own greedy continuations for two items
    texts = ["w2 w3 w4", "w9 w8", "w20 w21 w22"]
    outs = gen.generate([tokenizer(t)["input_ids"] for t in texts], greedy)
    golds = [outs[0][0].text.split()[-1], outs[1][0].text.split()[-1], "w63"]
    task = EvalTask.from_items(
        "train_acc",
        [{"prompt": t, "gold": g} for t, g in zip(texts, golds)],
        grader="exact",
        instruction="",
        use_chat_template=False,
        sampling=greedy,
    )
    res = evaluate(task, gen, tokenizer)
    assert [r["id"] for r in res.records] == ["train_acc-0", "train_acc-1", "train_acc-2"]
    # the exact grader reads the last line of these (tag-free) responses: the whole text
    expected = [r["response"].replace(" ", "").casefold() == g.casefold() for r, g in zip(res.records, golds)]
    assert [r["correct"] for r in res.records] == expected
    assert res.metrics["avg@1"] == pytest.approx(sum(expected) / 3)
    assert res.metrics["truncation_rate"] == pytest.approx(sum(r["hit_limit"] for r in res.records) / 3)
    assert res.metrics["mean_tokens"] == pytest.approx(sum(r["num_tokens"] for r in res.records) / 3)

    mc = EvalTask.from_items(
        "mc_toy",
        [{"prompt": "w5 w6", "choices": ["w1", "w2", "w3", "w4"], "gold": 2}],
        grader="mc",
        use_chat_template=False,
    )
    res = evaluate(mc, gen, tokenizer, SamplingParams(n=3, temperature=1.0, max_new_tokens=3))
    assert len(res.records) == 3 and res.metrics["num_samples"] == 3
    assert [r["gold"] for r in res.records] == [
        mc.choice_order(mc.items()[0], s).gold_letter for s in range(3)
    ]
    assert all("choice_seed" in r and sorted(r["choice_order"]) == [0, 1, 2, 3] for r in res.records)
