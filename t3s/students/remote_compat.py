"""Loading the remote model code of masked-diffusion checkpoints under the transformers t3s requires (>= 5).

LLaDA2.0's ``modeling_llada2_moe.py`` was written for transformers 4.5x (its config records 4.52.3). Two
names it uses at import time are gone in transformers 5:

* ``transformers.utils.import_utils.is_torch_fx_available`` (it only decides whether a mask helper is wrapped
  for ``torch.fx`` tracing): restored as a function returning False (no tracing; eager behaviour unchanged);
* ``ROPE_INIT_FUNCTIONS["default"]`` (plain RoPE): restored as the standard inverse frequencies
  ``1 / θ^(2i/d)`` over ``d = head_dim · partial_rotary_factor`` dimensions, attention scaling 1.

:func:`install` adds them only where missing (never replaces what transformers has), so it is a no-op on
transformers 4.x.

One more difference shows only after loading. Transformers 5 builds a model on the meta device and fills its
non-persistent buffers with uninitialised memory (``torch.empty_like``), relying on the model's
``_init_weights`` to set them again; its own ``PreTrainedModel._init_weights`` recomputes the ``inv_freq`` of
``*RotaryEmbedding`` modules. LLaDA2's code (dFactory's copy of ``modeling_llada2_moe.py``) keeps ``inv_freq``
as a non-persistent buffer of ``LLaDA2MoeRotaryEmbedding`` but overrides ``_init_weights`` with one that only
initialises ``Linear`` and ``Embedding`` weights, so the rotary frequencies stay garbage.
:func:`reinit_rotary_buffers` recomputes them from the module's own ``rope_init_fn`` (or
``ROPE_INIT_FUNCTIONS[rope_type]``) and config after every remote-code load. Anything else a checkpoint's code
needs and this transformers lacks ends in :class:`~t3s.students.diffusion_objective.DiffusionStudentError`, one
line naming the transformers version the checkpoint was written for (:func:`load_error`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["default_rope_parameters", "install", "load_error", "reinit_rotary_buffers"]


def default_rope_parameters(
    config: Any, device: torch.device | str | None = None, seq_len: int | None = None, **_: Any
) -> tuple[torch.Tensor, float]:
    """``(inv_freq, attention_scaling)`` of plain RoPE, as transformers 4.x's ``"default"`` entry computed them."""
    params = getattr(config, "rope_parameters", None) or {}
    base = getattr(config, "rope_theta", None) or params.get("rope_theta", 10000.0)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    partial = getattr(config, "partial_rotary_factor", None) or params.get("partial_rotary_factor", 1.0)
    dim = int(head_dim * partial)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
    return 1.0 / (float(base) ** exponents), 1.0


def install() -> list[str]:
    """Add the transformers 4.x names remote diffusion-model code imports; returns the ones added."""
    import transformers.utils as utils
    import transformers.utils.import_utils as import_utils
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    added = []
    if not hasattr(import_utils, "is_torch_fx_available"):
        def is_torch_fx_available() -> bool:
            return False

        import_utils.is_torch_fx_available = is_torch_fx_available  # type: ignore[attr-defined]
        added.append("transformers.utils.import_utils.is_torch_fx_available")
    if not hasattr(utils, "is_torch_fx_available"):
        utils.is_torch_fx_available = import_utils.is_torch_fx_available  # type: ignore[attr-defined]
        added.append("transformers.utils.is_torch_fx_available")
    if "default" not in ROPE_INIT_FUNCTIONS:
        ROPE_INIT_FUNCTIONS["default"] = default_rope_parameters
        added.append('ROPE_INIT_FUNCTIONS["default"]')
    return added


def reinit_rotary_buffers(model: torch.nn.Module) -> list[str]:
    """Recompute the non-persistent ``inv_freq`` buffer of every rotary-embedding module of ``model``.

    A module qualifies when ``inv_freq`` is one of its non-persistent buffers and it has a ``config`` plus a
    ``rope_init_fn`` or a ``rope_type`` known to ``ROPE_INIT_FUNCTIONS`` (the transformers 4.x layout of
    ``*RotaryEmbedding`` modules). ``original_inv_freq`` and ``attention_scaling`` are set with it. Returns
    the qualified names of the buffers recomputed (modules without the layout are left alone).
    """
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    done = []
    for name, module in model.named_modules():
        if "inv_freq" not in getattr(module, "_non_persistent_buffers_set", ()):
            continue
        config = getattr(module, "config", None)
        init_fn = getattr(module, "rope_init_fn", None) or ROPE_INIT_FUNCTIONS.get(getattr(module, "rope_type", ""))
        if config is None or init_fn is None:
            continue
        buffer = module.inv_freq
        with torch.no_grad():
            inv_freq, scaling = init_fn(config, buffer.device)
            fresh = inv_freq.to(device=buffer.device, dtype=buffer.dtype)
        module.register_buffer("inv_freq", fresh, persistent=False)
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq = fresh
        if hasattr(module, "attention_scaling"):
            module.attention_scaling = scaling
        done.append(f"{name}.inv_freq" if name else "inv_freq")
    return done


def load_error(source: str, error: BaseException) -> str:
    """One line: the remote code of ``source`` does not run under this transformers, and which one it needs."""
    import transformers

    wanted = None
    config = Path(source) / "config.json"
    try:
        wanted = json.loads(config.read_text()).get("transformers_version") if config.is_file() else None
    except (OSError, ValueError):
        wanted = None
    need = f"transformers {wanted}" if wanted else "the transformers version it was written for"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"the model code shipped with '{source}' does not load under transformers {transformers.__version__} "
        f"({type(error).__name__}: {first}); t3s restores is_torch_fx_available and ROPE_INIT_FUNCTIONS['default'] "
        f"but not this: run it in an environment with {need}"
    )
