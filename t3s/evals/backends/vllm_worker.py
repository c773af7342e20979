"""One vLLM generation worker of ``t3s evaluate --backend vllm``: a standalone script, run by the vLLM interpreter.

vLLM pins its own torch and transformers, so it lives in its own environment (README, "Evaluating with
vLLM") and t3s is not installed there. This file is therefore run by path (``python vllm_worker.py``) and
imports only the standard library, ``vllm`` and ``safetensors`` (a vLLM dependency); prompts arrive as token
ids and responses leave as token ids: rendering, decoding, grading, the ledger and TensorBoard all stay in
the parent process, exactly as with the HF backend.

Protocol: one JSON object per line on stdin, one answer per line on the original stdout (vLLM's own output
is moved to stderr, so it never corrupts the channel)::

    (start)                                  -> {"ok": true, "ready": true, "vllm": "<version>"}
    {"op": "load", "model": FOLDER}          -> {"ok": true, "engine": "built" | "reloaded" | "restart"}
    {"op": "generate", "prompts": [[id…]…], "sampling": {vllm.SamplingParams kwargs}}
                                             -> {"ok": true,
                                                 "outputs": [[{"token_ids": […], "finish_reason": "stop"}…]…]}
    {"op": "exit"}                           -> {"ok": true}, then the engine is dropped and the process exits 0

One ``vllm.LLM`` is built at the first ``load`` and reused for every later checkpoint: the new weights are
loaded into the running engine on every tensor-parallel rank (``LLM.collective_rpc("reload_weights",
weights_path=FOLDER)``, checked against vLLM 0.34.0's source) and the prefix cache is reset (cached KV blocks
belong to the old weights). A checkpoint with another architecture, or an engine that cannot reload in place,
answers ``restart``: the parent then starts a fresh worker for that checkpoint.

On a vLLM without ``reload_weights(weights_path=…)``, ``collective_rpc`` could instead ship
:func:`load_folder_weights` (a function) to the engine processes, which vLLM only accepts with
``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` (pickle between its processes). t3s never sets it: only where the user
has set it in the environment is the function shipped; otherwise such an engine restarts per checkpoint.

The engine options are limited to :data:`ENGINE_OPTIONS`; the model's own code runs only with
``--trust-remote-code`` (given by the parent only when the user's command line asked for it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

#: The ``vllm.LLM`` keyword arguments a worker accepts (engine sizing and numerics). Anything else — a worker or
#: executor class, a model loader, hub overrides, ``trust_remote_code`` (its own flag, ``--trust-remote-code``) —
#: could run code of the options' author's choosing, and the options may come from a downloaded run.
ENGINE_OPTIONS = (
    "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype", "enable_prefix_caching", "seed",
    "max_num_seqs", "max_num_batched_tokens", "enforce_eager", "swap_space", "cpu_offload_gb", "kv_cache_dtype",
    "quantization", "block_size", "enable_chunked_prefill", "disable_custom_all_reduce", "max_logprobs",
)

#: vLLM's switch that lets its processes exchange pickled objects (arbitrary code on load). Not set by t3s: an
#: engine that cannot ``reload_weights`` by name gets a fresh worker per checkpoint instead of a pickled function.
INSECURE_SERIALIZATION_ENV = "VLLM_ALLOW_INSECURE_SERIALIZATION"


def disallowed_options(options: dict[str, Any]) -> list[str]:
    """The keys of ``options`` not in :data:`ENGINE_OPTIONS`."""
    return sorted(set(options) - set(ENGINE_OPTIONS))


#: config.json keys that may differ between checkpoints of one run without changing the engine's shape.
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache")


def architecture(folder: str) -> dict[str, Any]:
    """The parts of ``config.json`` the engine was built for (two checkpoints of one run agree on them)."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}


def folder_weights(folder: str):
    """``(name, tensor)`` for every tensor of the folder's safetensors files, one at a time (HF names)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, f.get_tensor(name)


def load_folder_weights(worker: Any, folder: str) -> bool:
    """Run on every vLLM worker (``collective_rpc``): load a folder's weights into the served model.

    The fallback for a vLLM whose workers cannot ``reload_weights(weights_path=…)`` themselves.
    """
    model = worker.get_model() if hasattr(worker, "get_model") else worker.model_runner.model
    model.load_weights(weights=folder_weights(folder))
    return True


class Engine:
    """The worker's one ``vllm.LLM`` and the checkpoint it serves."""

    def __init__(self, vllm: Any, options: dict[str, Any]) -> None:
        self.vllm = vllm
        self.options = options
        self.llm: Any = None
        self.shape: dict[str, Any] | None = None

    def load(self, folder: str) -> str:
        shape = architecture(folder)
        if self.llm is None:
            self.llm = self.vllm.LLM(model=folder, tokenizer=folder, **self.options)
            self.shape = shape
            return "built"
        if shape != self.shape:
            return "restart"
        try:
            self.reload(folder)
        except Exception as err:  # noqa: BLE001 - an engine without in-place reload: a fresh process instead
            print(f"t3s vllm worker: in-place weight reload failed ({err}); restarting", file=sys.stderr)
            return "restart"
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the previous weights
        return "reloaded"

    def reload(self, folder: str) -> None:
        """Load ``folder``'s weights into the running engine, on every worker.

        vLLM's own ``reload_weights(weights_path=…)`` (in 0.34; it also redoes the post-load processing that
        quantized or repacked layers need) where the workers have it, else :func:`load_folder_weights`.
        """
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
            return
        except Exception as err:  # noqa: BLE001 - older vLLM: no such method, or no weights_path argument
            if os.environ.get(INSECURE_SERIALIZATION_ENV) != "1":
                raise RuntimeError(f"reload_weights(weights_path=…) unavailable ({err}), and shipping a function "
                                   f"to the engine needs {INSECURE_SERIALIZATION_ENV}=1") from None
            print(f"t3s vllm worker: reload_weights(weights_path=…) unavailable ({err}); loading the tensors "
                  "directly", file=sys.stderr)
        self.llm.collective_rpc(load_folder_weights, args=(folder,))

    def generate(self, prompts: list[list[int]], sampling: dict[str, Any]) -> list[list[dict[str, Any]]]:
        if self.llm is None:
            raise RuntimeError("generate before load")
        params = self.vllm.SamplingParams(**sampling)
        results = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [[{"token_ids": list(o.token_ids), "finish_reason": o.finish_reason} for o in r.outputs]
                for r in results]


def serve(requests: Any, answers: Any, options: dict[str, Any]) -> int:
    """Answer requests until ``exit`` (or the parent closes stdin)."""
    def answer(**payload: Any) -> None:
        answers.write(json.dumps(payload) + "\n")
        answers.flush()

    try:
        import vllm
    except ImportError as err:
        answer(ok=False, error=f"{sys.executable} cannot import vllm ({err})")
        return 3
    answer(ok=True, ready=True, vllm=getattr(vllm, "__version__", "?"))
    engine = Engine(vllm, options)
    for line in requests:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "load":
                answer(ok=True, engine=engine.load(request["model"]))
            elif op == "generate":
                answer(ok=True, outputs=engine.generate(request["prompts"], request["sampling"]))
            elif op == "exit":
                break
            else:
                answer(ok=False, error=f"unknown op {op!r}")
        except Exception as err:  # noqa: BLE001 - reported to the parent, which stops the evaluation
            answer(ok=False, error=f"{type(err).__name__}: {err}")
    engine.llm = None  # drop the engine (and its GPU memory) before the exit answer
    import gc

    gc.collect()
    answer(ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="{}", help="vllm.LLM keyword arguments, as JSON (ENGINE_OPTIONS only)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the model folder's own code")
    args = parser.parse_args(argv)
    options = json.loads(args.engine)
    refused = disallowed_options(options)
    if refused:
        print(json.dumps({"ok": False, "error": f"vllm options not allowed: {', '.join(refused)} (allowed: "
                                                f"{', '.join(ENGINE_OPTIONS)})"}), flush=True)
        return 2
    # run by path, this file's folder is sys.path[0]: its siblings (vllm.py above all) must not shadow packages
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    # the protocol keeps the real stdout; everything else written to fd 1 (vLLM's logs, prints) goes to stderr
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(sys.stdin, answers, {**options, **({"trust_remote_code": True} if args.trust_remote_code else {})})


if __name__ == "__main__":
    sys.exit(main())
