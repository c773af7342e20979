"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from t3s.cli import main
from t3s.data import TeacherTraceDataModule
from t3s.students import ARStudent
from t3s.students.checkpoints import AtomicCheckpointIO

# Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``../shared`` folder (real tokenizer, data); skips the test when it is absent."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip("../shared not present")
    return path


REPO = Path(__file__).resolve().parents[1]
TINY_WORLD = REPO / "configs" / "data" / "tiny"
#: A briefly pretrained θ_0 of the tiny world, through the toy resolver (cached for the test session).
BASE = f"${{toy_base:{TINY_WORLD},{{steps:60}}}}"


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """The repo's committed tiny arithmetic world (tokenizer + student / teacher traces)."""
    return TINY_WORLD


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep cached toy bases of the test session out of the user's ~/.cache."""
    import os

    os.environ.setdefault("T3S_CACHE", str(tmp_path_factory.mktemp("t3s-cache")))


def tiny_model_config(vocab_size: int, **overrides) -> dict:
    """A very small random Qwen3 for fast tests."""
    return {
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        **overrides,
    }


def tiny_qwen3(vocab_size: int, seed: int = 0, **overrides):
    """A seeded random tiny ``Qwen3ForCausalLM`` (``overrides`` go to its config)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = tiny_model_config(vocab_size, max_position_embeddings=128, **overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))


def make_trainer(root, steps, **kw) -> L.Trainer:
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, default_root_dir=str(root), enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, plugins=[AtomicCheckpointIO()], **kw,
    )


class Record(L.Callback):
    """Keeps every logged metric of every step."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, *args):
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def make_data(world, batch=8, micro=8, **kw) -> TeacherTraceDataModule:
    return TeacherTraceDataModule(
        path=str(world / "teacher_traces.jsonl"), tokenizer=str(world / "tokenizer"), limit=32,
        global_batch_size=batch, micro_batch_size=micro, max_length=512, **kw,
    )


def make_student(data, **kw) -> ARStudent:
    data.setup("fit")
    kw.setdefault("lr", 1e-3)
    kw.setdefault("max_grad_norm", None)
    kw.setdefault("model_config", tiny_model_config(len(data.tokenizer)))
    return ARStudent(tokenizer=data.tokenizer.name_or_path, **kw)


def tiny_trace_data(world: Path, packing: bool, **kw):
    """The tiny world's teacher traces as a set-up data module (8 traces, global batch 4, micro-batch 2)."""
    from t3s.data import TeacherTraceDataModule

    kw = {"limit": 8, "global_batch_size": 4, "micro_batch_size": 2, "max_length": 512} | kw
    data = TeacherTraceDataModule(
        path=str(world / "teacher_traces.jsonl"), tokenizer=str(world / "tokenizer"), packing=packing, **kw
    )
    data.setup("fit")
    return data


def save_random_ar(path: Path, data, seed: int) -> str:
    """A random tiny AR checkpoint (with the data's tokenizer) at ``path``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(tiny_model_config(len(data.tokenizer)))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
    model.save_pretrained(path)
    data.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_score_caches(tiny_world, tmp_path_factory) -> dict[bool, str]:
    """Δc caches of :func:`tiny_trace_data` (key: packing, True for AR and False for diffusion students),
    scored with two random tiny checkpoints."""
    from t3s.scoring import score

    root = tmp_path_factory.mktemp("tiny-scores")
    out = {}
    for packing in (True, False):
        data = tiny_trace_data(tiny_world, packing)
        base = save_random_ar(root / f"base-{packing}", data, 0)
        bottleneck = save_random_ar(root / f"bottleneck-{packing}", data, 1)
        score(data, base, bottleneck, root / f"scores-{packing}", device="cpu")
        out[packing] = str(root / f"scores-{packing}")
    return out


def random_model_config(tmp_path: Path, folder: str = "cfg", relative_data: bool = False) -> Path:
    """A 1-step config with a random tiny student (no θ_0 to build), written under ``tmp_path/folder``."""
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["trainer"].update(max_steps=1, default_root_dir=str(tmp_path / "runs"), enable_progress_bar=False,
                          callbacks=[])
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path / "runs"), name="sft")
    cfg["model"]["init_args"].pop("model")
    cfg["model"]["init_args"]["model_config"] = tiny_model_config(128)  # the tiny world has 73 tokens
    where = tmp_path / folder
    where.mkdir(parents=True, exist_ok=True)
    if relative_data:
        (where / "world").symlink_to(TINY_WORLD)
        data = {"path": "world/teacher_traces.jsonl", "tokenizer": "world/tokenizer"}
    else:
        data = {"path": str(TINY_WORLD / "teacher_traces.jsonl"), "tokenizer": str(TINY_WORLD / "tokenizer")}
    cfg["data"].update(**data, limit=16, global_batch_size=8)
    cfg["data"].setdefault("batching", {})["micro_batch_size"] = 8
    path = where / "random.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def error_of(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]
