"""Hugging Face plumbing of masked-diffusion students: special token ids, decoder/head access, and making
sure a checkpoint attends bidirectionally (``config.is_causal=False`` or an explicit all-visible mask)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from t3s.students.diffusion_objective import DiffusionStudentError

__all__ = [
    "BIDIRECTIONAL_TOLERANCE",
    "MASK_TOKEN_TEXT",
    "attends_bidirectionally",
    "decoder_and_head",
    "full_attention_mask",
    "isolates_documents",
    "needs_explicit_mask",
    "needs_remote_code",
    "resolve_special_ids",
    "takes_position_ids",
]

log = logging.getLogger(__name__)

MASK_TOKEN_TEXT = "<|mask|>"


def resolve_special_ids(
    tokenizer: Any, mask_token_id: int | None, eos_token_id: int | None, pad_token_id: int | None
) -> tuple[int, int, int]:
    """``(mask, eos, pad)`` ids: the given values, else the tokenizer's (mask token or ``<|mask|>``)."""
    if mask_token_id is None and tokenizer is not None:
        mask_token_id = getattr(tokenizer, "mask_token_id", None)
        if mask_token_id is None:
            candidate = tokenizer.convert_tokens_to_ids(MASK_TOKEN_TEXT)
            if isinstance(candidate, int) and candidate != tokenizer.unk_token_id:
                mask_token_id = candidate
    if mask_token_id is None:
        raise DiffusionStudentError(
            f"no mask token: the tokenizer has no mask_token and no {MASK_TOKEN_TEXT!r} token; set "
            "model.init_args.mask_token_id (e.g. 126336 for LLaDA-8B, 156895 for LLaDA2.0-mini)"
        )
    if eos_token_id is None and tokenizer is not None:
        eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None:
        raise DiffusionStudentError("no EOS token: the tokenizer has none; set model.init_args.eos_token_id")
    if pad_token_id is None and tokenizer is not None:
        pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = eos_token_id
    if int(mask_token_id) == int(eos_token_id):
        raise DiffusionStudentError(
            f"mask_token_id and eos_token_id are both {mask_token_id}; they must differ"
        )
    return int(mask_token_id), int(eos_token_id), int(pad_token_id)


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The decoder stack (final hidden states) and the output projection of a Hugging Face LM."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or decoder is model or head is None:
        raise DiffusionStudentError(
            f"{type(model).__name__} does not expose a decoder and an output projection "
            "(get_decoder / get_output_embeddings); the diffusion student needs both to score only the "
            "corrupted positions"
        )
    return decoder, head


def takes_position_ids(model: nn.Module) -> bool:
    """False for LMs whose ``forward`` has no ``position_ids`` (LLaDA 1.0: positions are implicit, and only
    logits come back); t3s then calls the whole model on unpadded rows and reads its logits."""
    params = inspect.signature(model.forward).parameters
    return "position_ids" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def full_attention_mask(rows: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An explicit ``[R, 1, L, L]`` additive mask letting every position attend to every other one."""
    return torch.zeros(rows, 1, length, length, dtype=dtype, device=device)


#: a bidirectional model moves position 0's output by more than this fraction of its norm when the 7 tokens
#: after it change (≥ 3% on the weakest-mixing tiny random models of the tests, far more on trained ones); a
#: causal model moves it only by kernel or MoE-routing noise (0 to ~1e-7 in fp32: exact equality is fooled).
BIDIRECTIONAL_TOLERANCE = 1e-3


@torch.no_grad()
def attends_bidirectionally(model: nn.Module, explicit_mask: bool = False) -> bool:
    """True if replacing every later token of a short input moves the first position's final hidden state.

    The probe keeps the first token and changes the 7 after it; the change of position 0 must exceed
    :data:`BIDIRECTIONAL_TOLERANCE` of its norm (relative, so kernel and MoE routing noise of a causal model
    cannot pass for bidirectionality). The same move measured on the changed positions themselves must be
    large too (else the model ignores its input and nothing can be told).
    """
    param = next(model.parameters())
    vocab = model.get_input_embeddings().num_embeddings
    length = 8
    ids = (torch.arange(1, length + 1, device=param.device)[None] * 7) % vocab
    changed = ids.clone()
    changed[0, 1:] = (changed[0, 1:] * 3 + 11) % vocab
    if takes_position_ids(model):
        decoder, _ = decoder_and_head(model)
        positions = torch.arange(length, device=param.device)[None]
        kwargs: dict[str, Any] = {"position_ids": positions, "use_cache": False}
        if explicit_mask:
            kwargs["attention_mask"] = full_attention_mask(1, length, param.dtype, param.device)

        def output(x: torch.Tensor) -> torch.Tensor:
            return decoder(input_ids=x, **kwargs).last_hidden_state[0].float()
    else:  # LLaDA 1.0: logits only, no mask to give

        def output(x: torch.Tensor) -> torch.Tensor:
            return model(input_ids=x).logits[0].float()

    was_training = model.training
    model.eval()
    try:
        first, second = output(ids), output(changed)
    finally:
        model.train(was_training)
    moved = (first[0] - second[0]).norm() / first[0].norm().clamp(min=1e-12)
    return bool(moved > BIDIRECTIONAL_TOLERANCE)


@torch.no_grad()
def isolates_documents(model: nn.Module, hidden: Callable[..., torch.Tensor]) -> bool:
    """True if, through ``hidden`` (the student's packed forward), a packed row keeps its documents apart.

    The probe packs two 4-token documents (positions ``0..3`` twice) on one row and changes the second: no
    output of the first may move by more than :data:`BIDIRECTIONAL_TOLERANCE` of its norm, while the second
    moves. A model that ignores the 4-D mask it is handed fails (its first document sees the second).
    ``hidden(input_ids, clean_ids, position_ids)`` returns ``[1, L, H]``.
    """
    param = next(model.parameters())
    vocab = model.get_input_embeddings().num_embeddings
    half = 4
    ids = (torch.arange(1, 2 * half + 1, device=param.device)[None] * 7) % vocab
    changed = ids.clone()
    changed[0, half:] = (changed[0, half:] * 3 + 11) % vocab
    positions = torch.arange(half, device=param.device).repeat(2)[None]
    was_training = model.training
    model.eval()
    try:
        first = hidden(ids, ids, positions)[0].float()
        second = hidden(changed, changed, positions)[0].float()
    finally:
        model.train(was_training)
    moved = (first - second).norm(dim=-1) / first.norm(dim=-1).clamp(min=1e-12)
    return bool((moved[:half] <= BIDIRECTIONAL_TOLERANCE).all() and (moved[half:] > BIDIRECTIONAL_TOLERANCE).all())


def needs_explicit_mask(model: nn.Module) -> bool:
    """False if ``model`` already attends bidirectionally, True if an explicit all-visible 4D mask makes it.

    Raises:
        DiffusionStudentError: if the model stays causal either way.
    """
    if attends_bidirectionally(model):
        return False
    if takes_position_ids(model) and attends_bidirectionally(model, explicit_mask=True):
        log.warning(
            "%s ignores config.is_causal=False; passing an explicit all-visible attention mask",
            type(model).__name__,
        )
        return True
    raise DiffusionStudentError(
        f"{type(model).__name__} stays causal with config.is_causal=False and with an explicit 4D mask; "
        "it cannot be used as a masked-diffusion model"
    )


def needs_remote_code(source: str) -> bool:
    """True if the checkpoint's architecture is only available as code from its repository."""
    from transformers import PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config, _ = PretrainedConfig.get_config_dict(source)
    except (OSError, ValueError):  # unreachable or not a model folder: from_pretrained reports it
        return False
    return "auto_map" in config and config.get("model_type") not in CONFIG_MAPPING
