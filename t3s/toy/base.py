"""θ_0 for the toy worlds: a tiny Qwen3-architecture model pretrained on the student's own style.

A random student has nothing to lose, so Δc would be noise and every T3S experiment vacuous. The base
is therefore trained — through the real ``ARStudent`` and ``TeacherTraceDataModule`` — on student-style
traces, and cached under ``$T3S_CACHE`` (default ``~/.cache/t3s``) keyed by the recipe, the data, the
tokenizer and the seed, so only the first run pays for it.

The θ_0 of the shipped configs (``toy``, ``toy-small``, ``tiny``) ships inside the package
(``t3s/toy/bases/<key>``), built here once by this very code. Pretraining is a long chain of float
operations whose result depends on the torch build and the number of CPU threads (seen: greedy accuracy
0.91, 0.82 and 0.63 for the same recipe), so a θ_0 built on the user's machine would tell a different story
from the README's. The shipped one makes the demo start from the same weights everywhere;
``T3S_TOY_REBUILD=1`` pretrains locally instead.

In a config, ``${toy_base:DIR}`` resolves to the cached base for the toy world written in ``DIR``
(``student_traces.jsonl`` and ``tokenizer/``); further arguments override the recipe, e.g.
``${toy_base:data/tiny,{steps:200,seed:1}}``. A relative ``DIR`` is relative to the folder of the config
file it is written in (jsonargparse parses a config file from its folder), or to the working directory
when given on the command line. The resolvers are opt-in: :func:`register_resolvers` (the command line
calls it at start), so resolving an interpolation in other code never pretrains a model by surprise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

#: Bump when the pretraining code changes in a way that changes the weights.
RECIPE_VERSION = 1

#: Set to 1 to pretrain θ_0 locally even where the package ships one for the same key.
REBUILD_ENV = "T3S_TOY_REBUILD"


def tiny_qwen3(vocab_size: int) -> dict[str, Any]:
    """The toy student's architecture: Qwen3, hidden 128, 3 layers, 4 heads, FFN 512 (~0.7M params)."""
    return {
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    }


@dataclass
class BaseRecipe:
    """How θ_0 is pretrained on the student-style traces.

    Attributes:
        steps: optimizer steps.
        lr: peak AdamW learning rate (cosine decay, 10% warm-up).
        global_batch_size: traces per optimizer step.
        max_length: tokens per packed row.
        seed: initialisation and data-order seed.
        model: architecture overrides on top of :func:`tiny_qwen3`.
    """

    steps: int = 400
    lr: float = 3e-3
    global_batch_size: int = 32
    max_length: int = 512
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)


def cache_root() -> Path:
    """``$T3S_CACHE``, else ``$XDG_CACHE_HOME/t3s``, else ``~/.cache/t3s``: toy worlds and their θ_0."""
    if os.environ.get("T3S_CACHE"):
        return Path(os.environ["T3S_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "t3s"


def _tokenizer_identity(tokenizer_dir: Path) -> bytes:
    """What the tokenizer does (its model, added tokens and chat template), not how its files are laid out,
    so another ``tokenizers`` / ``transformers`` release writing the same tokenizer keeps the same key."""
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    template_file = tokenizer_dir / "chat_template.jinja"
    config_file = tokenizer_dir / "tokenizer_config.json"
    if template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    elif config_file.is_file():
        template = json.loads(config_file.read_text(encoding="utf-8")).get("chat_template")
    else:
        template = None
    identity = {
        "model": spec.get("model"),
        "added_tokens": [[t.get("id"), t.get("content")] for t in spec.get("added_tokens", [])],
        "chat_template": template,
    }
    return json.dumps(identity, sort_keys=True).encode()


def base_key(world_dir: Path, recipe: BaseRecipe) -> str:
    """The θ_0 cache key: the recipe, the student traces and the tokenizer's behaviour."""
    h = hashlib.sha256()
    h.update(json.dumps({"recipe": asdict(recipe), "version": RECIPE_VERSION}, sort_keys=True).encode())
    h.update((world_dir / "student_traces.jsonl").read_bytes())
    h.update(_tokenizer_identity(world_dir / "tokenizer"))
    return h.hexdigest()[:16]


def shipped_base(key: str) -> Path | None:
    """The θ_0 the package ships for ``key`` (see the module docstring), if any."""
    from t3s.resources import package_folder

    folder = package_folder("toy") / "bases" / key
    return folder if (folder / "model.safetensors").is_file() else None


def pretrained_base(world_dir: str | Path, recipe: BaseRecipe | None = None) -> Path:
    """The cached θ_0 for the toy world in ``world_dir``: the shipped one for this key, else pretrained once."""
    world_dir = Path(world_dir).resolve()
    recipe = recipe or BaseRecipe()
    if not (world_dir / "student_traces.jsonl").is_file():
        raise FileNotFoundError(f"{world_dir} has no student_traces.jsonl: write the toy world there first")
    key = base_key(world_dir, recipe)
    target = cache_root() / "toy_base" / key
    shipped = None if os.environ.get(REBUILD_ENV, "") not in ("", "0") else shipped_base(key)

    def build(staging: Path) -> None:
        if shipped is not None:
            log.info("using the θ_0 shipped with t3s (%s)", shipped)
            shutil.copytree(shipped, staging)
            return
        log.warning("pretraining the toy θ_0 (%d steps, cached at %s)", recipe.steps, target)
        pretrain(world_dir, recipe, staging)

    return _build_once(target, "config.json", build)


def _build_once(target: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``target`` once it holds ``marker``; otherwise ``build`` it into a staging folder, renamed into place
    (under a file lock, so concurrent runs build it once and never see a half-written folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("waiting for another process that is building %s", target)
        lock.acquire()
    try:
        if not (target / marker).is_file():
            staging = target.with_name(target.name + ".tmp")
            if staging.exists():
                shutil.rmtree(staging)
            build(staging)
            staging.rename(target)
    finally:
        lock.release()
    return target


def _progress_bar() -> Any:
    """The θ_0 build's progress bar, saying what it builds rather than Lightning's ``Epoch 4/-2``."""
    from lightning.pytorch.callbacks import RichProgressBar

    from t3s.progress import PlainProgressBar, is_terminal

    if not is_terminal():
        return PlainProgressBar()

    class PretrainProgress(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            return "pretraining toy θ_0"

    return PretrainProgress()


def pretrain(world_dir: Path, recipe: BaseRecipe, out: Path) -> None:
    """Pretrain θ_0 on the world's student traces and write its HF folder to ``out``."""
    import lightning as L

    from t3s.data import TeacherTraceDataModule
    from t3s.students import ARStudent

    tokenizer_dir = str(world_dir / "tokenizer")
    data = TeacherTraceDataModule(
        path=str(world_dir / "student_traces.jsonl"),
        tokenizer=tokenizer_dir,
        global_batch_size=recipe.global_batch_size,
        batching={"micro_batch_size": recipe.global_batch_size},
        max_length=recipe.max_length,
        seed=recipe.seed,
    )
    data.setup("fit")
    config = {**tiny_qwen3(len(data.tokenizer)), **recipe.model}
    student = ARStudent(
        model_config=config, tokenizer=tokenizer_dir, init_seed=recipe.seed,
        optimizer={"lr": recipe.lr, "warmup_steps": recipe.steps // 10, "schedule": "cosine", "min_lr_ratio": 0.05},
    )
    with tempfile.TemporaryDirectory(prefix="t3s-toy-base-") as tmp:
        L.seed_everything(recipe.seed, workers=True, verbose=False)
        trainer = L.Trainer(
            max_steps=recipe.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_model_summary=False, default_root_dir=tmp, log_every_n_steps=50,
            callbacks=[_progress_bar()],
        )
        # on stderr: this runs while a config is parsed, and ``--print_config`` prints the config on stdout
        with contextlib.redirect_stdout(sys.stderr):
            trainer.fit(student, datamodule=data)
        final = Path(tmp) / "hf" / f"step_{recipe.steps}"
        shutil.copytree(final, out)
    (out / "t3s_base_recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    import torch

    built_with = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    (out / "t3s_base_build.json").write_text(json.dumps(built_with, indent=2))


def resolve_base(world_dir: str, overrides: dict[str, Any] | None = None) -> str:
    """OmegaConf resolver ``${toy_base:DIR}`` or ``${toy_base:DIR,{steps:60,seed:1}}`` → path of the cached θ_0."""
    path = Path(world_dir)
    recipe = BaseRecipe(**dict(overrides or {}))
    return str(pretrained_base(path.expanduser().resolve(), recipe))


def world_dir(preset: str) -> Path:
    """The toy world ``preset`` written under ``$T3S_CACHE/toy_world`` (once; keyed by its configuration)."""
    from t3s.toy.world import ToyWorld

    world = ToyWorld.from_preset(preset)
    key = hashlib.sha256(json.dumps(world.config(), sort_keys=True).encode()).hexdigest()[:12]
    return _build_once(cache_root() / "toy_world" / f"{preset}-{key}", "world.json", world.write)


def resolve_world(preset: str) -> str:
    """OmegaConf resolver ``${toy_world:PRESET}`` → directory of the written toy world."""
    return str(world_dir(preset))


def register_resolvers() -> None:
    """Register ``${toy_world:PRESET}`` and ``${toy_base:DIR[,{recipe}]}`` with OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("toy_base", resolve_base, replace=True)
    register("toy_world", resolve_world, replace=True)
