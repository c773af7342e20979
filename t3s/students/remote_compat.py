"""Loading the remote model code of masked-diffusion checkpoints under the transformers t3s requires (>= 5).

LLaDA2.0's ``modeling_llada2_moe.py`` was written for transformers 4.5x (its config records 4.52.3). Two
names it uses at import time are gone in transformers 5:

* ``transformers.utils.import_utils.is_torch_fx_available`` (it only decides whether a mask helper is wrapped
  for ``torch.fx`` tracing): restored as a function returning False (no tracing; eager behaviour unchanged);
* ``ROPE_INIT_FUNCTIONS["default"]`` (plain RoPE): restored as the standard inverse frequencies
  ``1 / θ^(2i/d)`` over ``d = head_dim · partial_rotary_factor`` dimensions, attention scaling 1.

:func:`install` adds them only where missing (never replaces what transformers has), so it is a no-op on
transformers 4.x. Anything else a checkpoint's code needs and this transformers lacks ends in
:class:`~t3s.students.diffusion_objective.DiffusionStudentError`, one line naming the transformers version the
checkpoint was written for (:func:`load_error`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["default_rope_parameters", "install", "load_error"]


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
