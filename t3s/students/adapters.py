"""LoRA / DoRA students through peft: ``model.init_args.adapter: {kind: lora, r: 16, ...}`` on ``ARStudent``.

The base θ_0 is frozen and only the adapters train (B starts at zero, so the student starts exactly at θ_0);
the token-selection mask acts on the loss, so every strategy works unchanged. What changes:

* ``self.model`` stays the Hugging Face model (peft injects its layers in place); the ``PeftModel`` wrapper is
  kept out of the module tree and only used to save adapters.
* HF folders: ``hf/step_0`` is θ_0 (the base); every later export writes ``adapter/step_N`` (peft's layout,
  base = ``hf/step_0``) and ``hf/step_N`` = base + adapter merged, so scoring,
  evaluation, vLLM and lm-eval read it like any checkpoint (``exports: adapter`` skips the merged folder at
  Lightning checkpoints; evaluation callbacks and the last step still get one).
* Lightning checkpoints hold the adapter and optimizer only (the frozen base is rebuilt from ``model``); under
  FSDP2 the sharded checkpoint keeps every tensor.
* A restart (online T3S) puts the adapters back to their fresh initialisation (each rank its shard under FSDP2).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch

from t3s.errors import T3SError
from t3s.students.adapter_weights import local_model_folder, write_merged
from t3s.students.checkpoints import hf_step_dir, save_hf_folder
from t3s.students.sharding import full_state_dict

ADAPTER_DIRNAME = "adapter"


class AdapterSettingError(T3SError, ValueError):
    """``model.init_args.adapter`` asks for something this student cannot do (a user's setting, one line)."""


def adapter_step_dir(run_dir: str | Path, step: int) -> Path:
    """``<run_dir>/adapter/step_<N>``: the adapter alone at optimizer step N."""
    return Path(run_dir) / ADAPTER_DIRNAME / f"step_{step}"


@dataclass
class AdapterSpec:
    """A LoRA / DoRA adapter on the student's linear layers (``model.init_args.adapter``).

    Args:
        kind: ``lora``, or ``dora`` (weight-decomposed LoRA: a trained magnitude per output feature).
        r: rank of A (r × in) and B (out × r).
        alpha: scale numerator, ΔW = alpha / r · B·A (``null``: 2·r, as LLaMA-Factory and most recipes use).
        dropout: dropout on the adapter's input.
        target_modules: ``all-linear`` (every linear layer but the LM head), a module-name list (``[q_proj,
            v_proj]``) or a regular expression, as peft takes it.
        rslora: rank-stabilised scaling alpha / √r.
        quantize: ``4bit`` loads the frozen base in NF4 (QLoRA; needs bitsandbytes and a CUDA GPU).
        exports: ``both`` writes ``hf/step_N`` (merged) and ``adapter/step_N`` at every Lightning checkpoint;
            ``adapter`` only the adapter there (saves disk; evaluated and final steps still get a merged folder).
    """

    kind: Literal["lora", "dora"] = "lora"
    r: int = 8
    alpha: float | None = None
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    rslora: bool = False
    quantize: Literal["4bit"] | None = None
    exports: Literal["both", "adapter"] = "both"

    @classmethod
    def of(cls, value: AdapterSpec | dict[str, Any] | None) -> AdapterSpec | None:
        """Validate ``value`` (a spec, a mapping as in YAML, or None = full fine-tuning); one-line errors."""
        if value is None or isinstance(value, AdapterSpec):
            spec = value
        elif isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise AdapterSettingError(
                    f"model.init_args.adapter: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}"
                )
            spec = cls(**value)
        else:
            raise AdapterSettingError(f"model.init_args.adapter must be a mapping or null, got {value!r}")
        if spec is None:
            return None
        where = "model.init_args.adapter"
        for ok, message in (
            (spec.kind in ("lora", "dora"), f"{where}.kind must be lora or dora, got {spec.kind!r}"),
            (isinstance(spec.r, int) and spec.r >= 1, f"{where}.r must be an integer >= 1, got {spec.r!r}"),
            (spec.alpha is None or spec.alpha > 0, f"{where}.alpha must be positive or null, got {spec.alpha!r}"),
            (0 <= spec.dropout < 1, f"{where}.dropout must be in [0, 1), got {spec.dropout!r}"),
            (spec.quantize in (None, "4bit"), f"{where}.quantize must be 4bit or null, got {spec.quantize!r}"),
            (spec.exports in ("both", "adapter"), f"{where}.exports must be both or adapter, got {spec.exports!r}"),
            (bool(spec.target_modules), f"{where}.target_modules is empty"),
        ):
            if not ok:
                raise AdapterSettingError(message)
        if importlib.util.find_spec("peft") is None:
            raise AdapterSettingError(
                "model.init_args.adapter needs peft: pip install 't3s[lora]' (or pip install peft)"
            )
        if spec.quantize == "4bit" and not (importlib.util.find_spec("bitsandbytes") and torch.cuda.is_available()):
            raise AdapterSettingError("adapter.quantize 4bit (QLoRA) needs bitsandbytes and a CUDA GPU; drop it "
                                      "to train LoRA on the unquantized base")
        return spec

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.r

    def peft_config(self) -> Any:
        """The ``peft.LoraConfig`` of this spec."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.dropout, target_modules=self.target_modules,
            use_dora=self.kind == "dora", use_rslora=self.rslora, bias="none",
        )


def quantized_load_kwargs() -> dict[str, Any]:
    """``from_pretrained`` arguments of an NF4 base (QLoRA), computing in bfloat16."""
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )}


class AdapterMixin:
    """What a student does differently with ``adapter`` set (mixed into ``ARStudent`` before ``StudentModule``).

    Every method falls back to the full-fine-tuning behaviour when ``self.adapter`` is None.
    """

    adapter: AdapterSpec | None = None

    def attach_adapter(self) -> None:
        """Freeze ``self.model`` and inject fresh adapters (seeded with ``init_seed``); idempotent per load."""
        from peft import get_peft_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        strategy = type(self.trainer.strategy).__name__ if self._trainer is not None else ""
        if strategy.startswith("FSDP"):
            raise AdapterSettingError("adapter students run under ModelParallelStrategy (FSDP2), DDP or one device, "
                                      "not FSDPStrategy (FSDP1)")
        model = self.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hparams.init_seed)
            peft_model = get_peft_model(model, self.adapter.peft_config())
        for head in (model.get_output_embeddings(), model.get_input_embeddings()):
            if isinstance(head, BaseTunerLayer):
                raise AdapterSettingError("model.init_args.adapter.target_modules names the embeddings or LM head; "
                                  "adapters go on the decoder's linear layers")
        self._peft = [peft_model]  # a list keeps the wrapper out of the module tree
        self._fresh_adapter = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self._merged_steps: set[int] = set()
        self.strict_loading = False  # Lightning checkpoints hold the adapter only

    def build_quantized_base(self) -> Any:
        """The frozen base in NF4 (QLoRA), ready for k-bit training (needs ``model``, bitsandbytes, CUDA)."""
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        if self.model_source is None:
            raise AdapterSettingError("adapter.quantize 4bit needs `model` (a hub id or folder), not `model_config`")
        hp = self.hparams
        kwargs: dict[str, Any] = {"trust_remote_code": hp.trust_remote_code, **quantized_load_kwargs()}
        if hp.attn_implementation:
            kwargs["attn_implementation"] = hp.attn_implementation
        model = AutoModelForCausalLM.from_pretrained(self.model_source, dtype=torch.bfloat16, **kwargs)
        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=self.memory_args.gradient_checkpointing
        )

    # ------------------------------------------------------------- restarts
    def load_restart_weights(self, folder: str | Path) -> None:
        """Online T3S restarts from θ_0: with adapters, back to the fresh adapters (the base never moved)."""
        if self.adapter is None:
            return super().load_restart_weights(folder)
        from torch.distributed.tensor import DTensor, distribute_tensor

        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self._fresh_adapter:
                    value = self._fresh_adapter[name].to(param.device)
                    if isinstance(param, DTensor):  # FSDP2: this rank's shard of the fresh value
                        value = distribute_tensor(value, param.device_mesh, param.placements)
                    param.copy_(value)

    # ---------------------------------------------------------- checkpoints
    def base_folder(self) -> Path:
        """The HF folder adapters are merged into: ``hf/step_0`` (the QLoRA base: its unquantized source)."""
        if self.adapter.quantize is None:
            return hf_step_dir(self.run_dir, 0)
        if self.model_source is None:
            raise AdapterSettingError("adapter.quantize 4bit needs `model` (a hub id or folder), not `model_config`")
        return local_model_folder(self.model_source)

    def save_hf(self, step: int, state_dict: dict[str, torch.Tensor] | None = None, *,
                merged: bool = True) -> Path | None:
        """With adapters: ``adapter/step_<N>`` and (``merged``) ``hf/step_<N>`` = base + adapter."""
        if self.adapter is None:
            return super().save_hf(step, state_dict)
        state = full_state_dict(self.model) if self.sharded else None  # every rank gathers; rank 0 keeps it
        self._last_hf_step = step
        if merged:  # on every rank: ensure_hf_checkpoint's collective decision must agree
            self._merged_steps.add(step)
        if not self.trainer.is_global_zero:
            return None
        if state is None:
            state = {k: v.detach() for k, v in self.model.state_dict().items()}
        hf = hf_step_dir(self.run_dir, step)
        if step == 0 and self.adapter.quantize is None and not (hf / "config.json").is_file():
            self._save_base(hf, state)
        adapter_dir = self._save_adapter(adapter_step_dir(self.run_dir, step), state)
        if merged:
            if step != 0 or self.adapter.quantize is not None:
                write_merged(self.base_folder(), adapter_dir, hf)
        return hf if merged else adapter_dir

    def ensure_hf_checkpoint(self, step: int) -> None:
        if self.adapter is None:
            return super().ensure_hf_checkpoint(step)
        if self._last_hf_step != step or step not in self._merged_steps:
            self.save_hf(step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.adapter is None:
            return super().on_save_checkpoint(checkpoint)
        if not self.sharded:  # FSDP2's distributed checkpoint keeps every tensor (its loader is strict)
            trained = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trained}
        if self.export_args.folders != "evaluated" and self._last_hf_step != self.global_step:
            self.save_hf(self.global_step, merged=self.adapter.exports == "both")

    def _save_base(self, directory: Path, state: dict[str, torch.Tensor]) -> None:
        """θ_0 as a plain HF folder: the base weights under their own names, in the export dtype."""
        dtype = self.export_dtype()
        base = {}
        for name, tensor in state.items():
            if "lora_" in name:
                continue
            name = name.replace(".base_layer.", ".")
            base[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        save_hf_folder(self.model, self.tokenizer, directory, base, dtype=dtype)

    def _save_adapter(self, directory: Path, state: dict[str, torch.Tensor]) -> Path:
        """The adapter as peft saves it (``adapter_config.json`` + ``adapter_model.safetensors`` under peft's
        names), from the full ``state`` (gathered under FSDP2), atomically; its base is ``base_folder()``."""
        from safetensors.torch import save_file

        from t3s.runtime.files import make_shareable

        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        tensors = {peft_key(name): tensor.contiguous() for name, tensor in state.items() if "lora_" in name}
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(self._peft[0].peft_config["default"])
        config.base_model_name_or_path = str(Path(self.base_folder()).resolve())
        config.inference_mode = True
        config.save_pretrained(str(tmp))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        make_shareable(tmp)
        if directory.exists():
            shutil.rmtree(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(directory)
        return directory


def peft_key(name: str) -> str:
    """peft's saved name of an adapter tensor: ``model.layers.0.q_proj.lora_A.default.weight`` →
    ``base_model.model.model.layers.0.q_proj.lora_A.weight`` (DoRA: ``….lora_magnitude_vector``)."""
    name = name.replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")
    return "base_model.model." + name.replace(".default.", ".")
