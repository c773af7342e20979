"""Teacher-forced per-token log-probs of a Hugging Face causal LM, without building full logits.

Shared by training (``ARStudent``) and scoring (``t3s score``) so both compute c_t the same way:
decoder → final hidden states → (chunked) output projection → log-softmax → gather.
"""

from __future__ import annotations

import torch
from torch import nn

from t3s.ops.logprob import token_logprobs

#: Config spellings of weight dtypes (``model.init_args.dtype``, ``t3s score --dtype``).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hidden_states(model: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states ``[R, L, H]`` of (possibly packed) rows.

    No attention mask is passed: rows are right-padded and every trace (and the padding run) restarts
    its ``position_ids`` at 0, which transformers turns into a block-diagonal causal mask.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    return decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state


def logprobs_at(
    model: nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    token_mask: torch.Tensor,
    *,
    chunk_size: int = 2048,
    with_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """c_t = log p(y_t | y_<t) at the token positions where ``token_mask`` is True.

    ``token_mask`` is indexed by the token being predicted; position 0 of a row is never a target.
    Returns a flat float32 tensor in row-major order of the True positions.
    """
    head = model.get_output_embeddings()
    shifted = token_mask[:, 1:]
    return token_logprobs(
        hidden[:, :-1][shifted],
        head.weight,
        input_ids[:, 1:][shifted],
        bias=getattr(head, "bias", None),
        chunk_size=chunk_size,
        with_entropy=with_entropy,
    )
