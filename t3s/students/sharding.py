"""FSDP2 for the students: ``fully_shard`` per decoder layer, then one root around the whole model.

Lightning's ``ModelParallelStrategy`` hands the student a device mesh in ``configure_model``; :func:`shard_model`
shards every decoder layer on its ``data_parallel`` dimension and then wraps the Hugging Face model in a
:class:`ShardedRoot` that owns the remaining parameters (embeddings, final norm, output projection).

The students never call the model's own ``forward`` (it would build full-vocabulary logits): they run the
decoder and score tokens with the chunked kernel, which reads the output projection's weight directly. So a
training or evaluation pass runs *inside* the root's forward, ``root(fn, *args)``: FSDP2 then gathers the
root's parameters before ``fn`` and reduce-scatters their gradients after backward, as for any forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from t3s.ops.causal_lm import DTYPES

__all__ = ["ShardedRoot", "data_parallel_mesh", "decoder_layers", "full_state_dict", "gathered", "load_full_state_dict",
           "shard_model"]


class ShardedRoot(nn.Module):
    """The FSDP2 root: ``root(fn, *args, **kwargs)`` runs ``fn`` with every parameter of ``model`` gathered."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face decoder (``get_decoder().layers``, else the longest ModuleList)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(decoder, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) > 0:
        return list(layers)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of decoder layers to shard")
    return list(max(lists, key=len))


def data_parallel_mesh(mesh: Any) -> Any:
    """The mesh to shard over: the strategy's ``data_parallel`` dimension, or every process.

    The students do not implement tensor parallelism. ``ModelParallelStrategy()`` with its default sizes
    puts the processes of a node on the ``tensor_parallel`` dimension; then FSDP2 shards over all of them.
    """
    from torch.distributed.device_mesh import init_device_mesh

    names = mesh.mesh_dim_names or ()
    if "tensor_parallel" not in names or mesh["tensor_parallel"].size() == 1:
        return mesh["data_parallel"] if "data_parallel" in names else mesh
    return init_device_mesh(mesh.device_type, (mesh.size(),), mesh_dim_names=("data_parallel",))


def shard_model(
    model: nn.Module,
    mesh: Any,
    *,
    param_dtype: str | None = None,
    reduce_dtype: str | None = "float32",
    reshard_after_forward: bool = True,
) -> ShardedRoot:
    """``fully_shard`` each decoder layer of ``model`` and then a :class:`ShardedRoot` around it, on ``mesh``.

    ``param_dtype`` is the dtype of the gathered weights in forward/backward (``None``: the stored dtype;
    ``bfloat16`` with float32 stored weights is the usual mixed precision) and ``reduce_dtype`` the dtype of
    the gradient reduce-scatter.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(
        param_dtype=DTYPES[param_dtype] if param_dtype else None,
        reduce_dtype=DTYPES[reduce_dtype] if reduce_dtype else None,
    )
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    root = ShardedRoot(model)
    fully_shard(root, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    return root


@contextmanager
def gathered(root: ShardedRoot, reshard_after_forward: bool = True) -> Iterator[None]:
    """Every rank holds the full weights inside the block, and forward passes need no collective.

    For work whose number of forward passes differs between ranks (generation). Every rank must enter and
    leave it together; the weights are resharded on exit (changes made inside are not written back), and
    the layers get ``reshard_after_forward`` back (the root keeps its weights between forward and backward).
    """
    from torch.distributed.fsdp import FSDPModule

    root(lambda: None)  # initialises FSDP2 (the first forward of the root) if no training step ran yet
    modules = [m for m in root.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.unshard()
    for module in modules:
        module.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
        for module in modules:
            module.set_reshard_after_forward(reshard_after_forward and module is not root, recurse=False)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights, gathered to CPU on rank 0 (an empty dict elsewhere), without the second name of
    tied tensors. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    tied = set(_tied_names(model))  # gathered as separate copies: keep one name, as save_pretrained does
    return {k: v for k, v in full.items() if k not in tied}


def load_full_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load full weights held by rank 0 (others pass ``{}``) into the sharded ``model``, each rank its shard.

    Every rank must call it. Tensors tied to another one (an output projection tied to the embedding) may be
    absent from ``state_dict``.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    result = set_model_state_dict(
        model, state_dict, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    )
    tied = set(_tied_names(model))
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise KeyError(
            f"weights do not match the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def _tied_names(model: nn.Module) -> list[str]:
    """Names of parameters that share storage with an earlier one (e.g. a tied ``lm_head.weight``)."""
    seen: dict[int, str] = {}
    tied = []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.append(name)
        else:
            seen[id(param)] = name
    return tied
