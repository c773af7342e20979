"""Trust boundaries and data loss: nothing a command did not write is deleted, nothing a downloaded run or
config asks for is executed unless the command line opts in, secrets stay out of saved configs, and a
SIGTERM'd fit saves and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import error_of, tiny_qwen3
from safetensors.torch import load_file

from t3s.analysis.rrt import MARKER
from t3s.cli import main
from t3s.evals.results import read_results


# ----------------------------------------------------------------- t3s rrt --output
@pytest.fixture()
def three_models(tmp_path) -> list[str]:
    folders = []
    for seed, name in enumerate(("base", "bottleneck", "final")):
        folder = tmp_path / name
        tiny_qwen3(73, seed=seed).save_pretrained(folder)
        folders.append(str(folder))
    return folders


def rrt_args(models: list[str], output: Path, *extra: str) -> list[str]:
    base, bottleneck, final = models
    return ["rrt", "--base", base, "--bottleneck", bottleneck, "--final", final, "--output", str(output), *extra]


def test_rrt_never_deletes_a_folder_it_did_not_write(tmp_path, capsys, three_models):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my thesis")
    for extra in ((), ("--overwrite", "true")):
        line = error_of(capsys, *rrt_args(three_models, mine, *extra))
        assert str(mine) in line
        assert (mine / "notes.txt").read_text() == "my thesis" and sorted(p.name for p in mine.iterdir()) == [
            "notes.txt"]
    # a file in place of the folder
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in error_of(capsys, *rrt_args(three_models, tmp_path / "afile"))
    assert (tmp_path / "afile").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_rrt_overwrite_replaces_only_its_own_output(tmp_path, capsys, three_models):
    out = tmp_path / "empty"
    out.mkdir()  # an empty folder is fine
    main(rrt_args(three_models, out))
    marker = json.loads((out / MARKER).read_text())
    assert "model.safetensors" in marker["files"] and marker["final"] == three_models[2]
    first = load_file(str(out / "model.safetensors"))

    assert "--overwrite" in error_of(capsys, *rrt_args(three_models, out))  # again, without --overwrite
    main(rrt_args(three_models, out, "--overwrite", "true"))
    again = load_file(str(out / "model.safetensors"))
    assert all((first[k] == again[k]).all() for k in first)

    (out / "eval.jsonl").write_text("{}\n")  # a user's file inside an earlier output: never replaced
    line = error_of(capsys, *rrt_args(three_models, out, "--overwrite", "true"))
    assert "eval.jsonl" in line and (out / "eval.jsonl").read_text() == "{}\n"


def test_rrt_with_mismatched_shapes_names_the_folder(tmp_path, capsys, three_models):
    wider = tmp_path / "wider"
    tiny_qwen3(80).save_pretrained(wider)
    line = error_of(capsys, *rrt_args([three_models[0], three_models[1], str(wider)], tmp_path / "out"))
    assert str(wider) in line and "(80, 32)" in line
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------- t3s evaluate of a downloaded run
CUSTOM_CONFIG = '''from pathlib import Path
from transformers import Qwen3Config

Path({sentinel!r}).write_text("ran")  # what a hostile run's code could do on import


class ShadyConfig(Qwen3Config):
    model_type = "shady"
'''
CUSTOM_MODEL = '''from transformers import Qwen3ForCausalLM

from .configuration_shady import ShadyConfig


class ShadyForCausalLM(Qwen3ForCausalLM):
    config_class = ShadyConfig
'''


def downloaded_run(root: Path, sentinel: Path) -> Path:
    """A run directory as someone else could hand it over: its config.yaml trusts remote code, names a vLLM
    interpreter and a vllm.LLM option that loads a class; its checkpoint is a custom architecture whose
    code writes ``sentinel`` when imported."""
    from conftest import TINY_WORLD
    from transformers import AutoTokenizer

    run = root / "run"
    step = run / "hf" / "step_0"
    tokenizer = AutoTokenizer.from_pretrained(TINY_WORLD / "tokenizer")
    tiny_qwen3(len(tokenizer)).save_pretrained(step)
    tokenizer.save_pretrained(step)
    config = json.loads((step / "config.json").read_text())
    config.update(model_type="shady", architectures=["ShadyForCausalLM"],
                  auto_map={"AutoConfig": "configuration_shady.ShadyConfig",
                            "AutoModelForCausalLM": "modeling_shady.ShadyForCausalLM"})
    (step / "config.json").write_text(json.dumps(config))
    (step / "configuration_shady.py").write_text(CUSTOM_CONFIG.format(sentinel=str(sentinel)))
    (step / "modeling_shady.py").write_text(CUSTOM_MODEL)
    task = root / "heldout.yaml"
    task.write_text(f"name: heldout\ndataset: {TINY_WORLD / 'heldout.jsonl'}\ngrader: exact\nlimit: 2\n"
                    "fields: {problem: prompt, answer: answer}\nenable_thinking: false\n")
    bench = {"tasks": [str(task)], "train_accuracy": False, "mode": "defer",
             "sampling": {"n": 1, "temperature": 0.0, "max_new_tokens": 4}}
    (run / "config.yaml").write_text(yaml.safe_dump({
        "model": {"class_path": "t3s.ARStudent", "init_args": {"trust_remote_code": True}},
        "trainer": {"callbacks": [{"class_path": "t3s.evals.BenchmarkCallback", "init_args": bench}]},
    }))
    return run


def test_evaluate_does_not_trust_a_runs_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    sentinel = tmp_path / "sentinel"
    run = downloaded_run(tmp_path, sentinel)
    line = error_of(capsys, "evaluate", str(run))
    assert "--trust_remote_code true" in line and not sentinel.exists()

    config = yaml.safe_load((run / "config.yaml").read_text())
    bench = config["trainer"]["callbacks"][0]["init_args"]
    bench.update(backend="vllm", python=str(tmp_path / "bin" / "python"))
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    line = error_of(capsys, "evaluate", str(run))
    assert f"--python {tmp_path / 'bin' / 'python'}" in line  # the interpreter is the command line's to choose
    bench.pop("python")
    bench.update(backend="hf", vllm={"worker_cls": "evil.Worker"})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert "worker_cls" in error_of(capsys, "evaluate", str(run))
    assert "trust_remote_code" in error_of(capsys, "evaluate", str(run), "--backend", "vllm",
                                           "--vllm.trust_remote_code", "true")
    assert not sentinel.exists()

    bench.pop("vllm")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    main(["evaluate", str(run), "--trust_remote_code", "true"])  # opted in on the command line: it runs
    assert sentinel.read_text() == "ran"
    assert [r["task"] for r in read_results(run)] == ["heldout"]


def test_the_vllm_worker_refuses_options_outside_its_allow_list(tmp_path):
    import subprocess
    import sys

    from t3s.evals.backends.vllm import WORKER_SCRIPT

    done = subprocess.run([sys.executable, str(WORKER_SCRIPT), "--engine", json.dumps({"hf_overrides": {}})],
                          capture_output=True, text=True, input="", timeout=60)
    answer = json.loads(done.stdout.splitlines()[0])
    assert done.returncode == 2 and not answer["ok"] and "hf_overrides" in answer["error"]
    assert "VLLM_ALLOW_INSECURE_SERIALIZATION" not in WORKER_SCRIPT.read_text().split('"""', 2)[2].replace(
        "INSECURE_SERIALIZATION_ENV = \"VLLM_ALLOW_INSECURE_SERIALIZATION\"", "")


# ----------------------------------------------------------------- Lightning checkpoints
class _Payload:
    """Unpickling this runs a shell command: what a hostile ``.ckpt`` can hold."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.sentinel}",)


def test_a_checkpoint_holding_a_refused_pickle_is_one_line_and_runs_nothing(tmp_path, capsys):
    import torch
    from conftest import random_model_config

    sentinel = tmp_path / "sentinel"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "loops": _Payload(sentinel)}, ckpt)
    line = error_of(capsys, "fit", "--config", str(random_model_config(tmp_path)), "--ckpt_path", str(ckpt))
    assert str(ckpt) in line and "weights_only=True" in line and "system" in line
    assert not sentinel.exists()


# ----------------------------------------------------------------- SIGTERM during fit
@pytest.mark.slow
def test_sigterm_during_fit_saves_a_checkpoint_that_resumes_and_exits_non_zero(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import torch
    from conftest import random_model_config

    config = str(random_model_config(tmp_path))
    run = tmp_path / "runs" / "sft" / "version_0"
    command = [sys.executable, "-m", "t3s", "fit", "--config", config, "--trainer.max_steps=100000"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "hf" / "step_0" / "config.json").is_file():  # training has started
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)  # what SLURM sends before it kills the job
        err = child.communicate(timeout=300)[1]
    finally:
        if child.poll() is None:
            child.kill()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert child.returncode == 143 and len(lines) == 1 and "Traceback" not in err, err
    saved = run / "checkpoints" / "last.ckpt"
    assert "SIGTERM" in lines[0] and str(saved) in lines[0]
    step = torch.load(saved, weights_only=True)["global_step"]
    assert 1 <= step < 100000

    done = subprocess.run([*command[:-1], f"--trainer.max_steps={step + 2}", "--ckpt_path", str(saved)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    saves = {p.name: torch.load(p, weights_only=True)["global_step"] for p in (run / "checkpoints").glob("*.ckpt")}
    assert step + 2 in saves.values(), saves  # resumed from the saved step, in the same run folder
    assert (run / "hf" / f"step_{step + 2}").is_dir() and not (run.parent / "version_1").exists()


# ----------------------------------------------------------------- file modes and saved configs
def test_the_umask_is_read_without_being_changed(tmp_path):
    import os

    from t3s.runtime.files import _umask, _umask_by_probe, make_shareable

    before = os.umask(0o027)
    try:
        assert _umask(tmp_path) == 0o027  # from /proc/self/status
        assert _umask_by_probe(tmp_path) == 0o027 & 0o666  # a file shows the read/write bits of the umask
        (tmp_path / "model.safetensors").write_bytes(b"x")
        os.chmod(tmp_path / "model.safetensors", 0o600)
        make_shareable(tmp_path)
        assert os.umask(0o027) == 0o027  # still the process's umask
    finally:
        os.umask(before)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no probe file left
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o640


def test_an_environment_variable_is_saved_as_its_reference_not_its_value(tmp_path, monkeypatch):
    import torch
    from conftest import TINY_WORLD, random_model_config

    from t3s.evals.offline import saved_config

    config = random_model_config(tmp_path)
    traces = str(TINY_WORLD / "teacher_traces.jsonl")
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["path"] = "${oc.env:T3S_TEST_TRACES}"  # as a token or a private path would be given
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.setenv("T3S_TEST_TRACES", traces)
    main(["fit", "--config", str(config)])
    run = tmp_path / "runs" / "sft" / "version_0"
    saved = (run / "config.yaml").read_text()
    assert traces not in saved and "${oc.env:T3S_TEST_TRACES}" in saved
    assert saved_config(run)["data"]["path"] == traces  # read back in this environment
    assert not [p.name for p in run.rglob("*.yaml") if traces in p.read_text()]  # hparams.yaml neither
    assert list(run.rglob("*.ckpt"))
    for ckpt in run.rglob("*.ckpt"):  # nor the hyper-parameters stored in checkpoints
        assert traces not in repr(torch.load(ckpt, weights_only=True).get("datamodule_hyper_parameters"))


# ----------------------------------------------------------------- one clear line
def test_more_mistakes_are_one_line_naming_what_to_fix(tmp_path, capsys):
    import torch
    from conftest import random_model_config

    config = random_model_config(tmp_path)
    assert "data.limit" in error_of(capsys, "fit", "--config", str(config), "--data.limit=0")

    (tmp_path / "no-world").mkdir()
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["init_args"].pop("model_config")
    cfg["model"]["init_args"]["model"] = f"${{toy_base:{tmp_path / 'no-world'}}}"
    (tmp_path / "toy_base.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    line = error_of(capsys, "fit", "--config", str(tmp_path / "toy_base.yaml"))
    assert line.startswith("error: model.init_args.model: ") and "student_traces.jsonl" in line

    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["init_args"]["model_config"]["extra"] = {"class_path": "torch.nn.ReLU"}
    (tmp_path / "nested.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    line = error_of(capsys, "fit", "--config", str(tmp_path / "nested.yaml"))
    assert "model.init_args.model_config.extra" in line and "ReLU" in line
    assert not (tmp_path / "runs").exists()  # refused before training, not at the first save

    line = error_of(capsys, "score", "--config", str(config), "--base", str(tmp_path / "missing"),
                    "--bottleneck", str(tmp_path / "missing"), "--output", str(tmp_path / "scores"))
    assert line == f"error: --base {tmp_path / 'missing'}: no such model folder"
    assert "no such directory" in error_of(capsys, "report", str(tmp_path / "missing"))

    if not torch.cuda.is_available():
        line = error_of(capsys, "fit", "--config", "qwen3")
        assert "GPU" in line and "--trainer.accelerator cpu" in line and "toy-small" in line


# ----------------------------------------------------------------- class_path: a config is code
def test_a_class_path_outside_the_allowed_packages_is_refused_before_it_is_imported(tmp_path, capsys, monkeypatch):
    from conftest import random_model_config

    sentinel = tmp_path / "imported"
    (tmp_path / "shady_selection.py").write_text(f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('x')\n"
                                                 "class Selector:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m t3s` run in this folder would have it
    monkeypatch.delenv("T3S_ALLOW_CLASS_PATHS", raising=False)
    config = random_model_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["model"]["init_args"]["selection"] = {"class_path": "shady_selection.Selector"}
    (tmp_path / "shady.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for args in (["--config", "shady.yaml"],
                 ["--config", str(config), "--model.init_args.selection=shady_selection.Selector"],
                 ["--config", str(config), "--trainer.callbacks+={class_path: shady_selection.Selector}"]):
        line = error_of(capsys, "fit", *args)
        assert "shady_selection.Selector" in line and "T3S_ALLOW_CLASS_PATHS=shady_selection" in line, line
        assert not sentinel.exists()
    # the user allows the package: the config's class is imported (and refused for what it is, not where from)
    monkeypatch.setenv("T3S_ALLOW_CLASS_PATHS", "shady_selection")
    line = error_of(capsys, "fit", "--config", "shady.yaml")
    assert sentinel.exists() and "T3S_ALLOW_CLASS_PATHS" not in line


def test_a_missing_config_or_a_misspelt_key_is_refused_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    (tmp_path / "typo.yaml").write_text("trainr:\n  max_steps: 1\n")
    code = ("import sys\nfrom t3s.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('torch' in sys.modules, 'lightning' in sys.modules, e.code)\n")
    for args, words in ((["--config", "missing.yaml"], "config file not found: missing.yaml"),
                        (["--config", "typo.yaml"], "did you mean trainer?"),
                        (["--config", "typo.yaml", "--modle.lr=1"], "did you mean trainer?"),
                        (["--config", "toy", "--modle.lr=1"], "unknown option --modle.lr (did you mean --model?)")):
        done = subprocess.run([sys.executable, "-c", code, "fit", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.stdout.split() == ["False", "False", "2"] and words in done.stderr, (args, done.stderr)


# ----------------------------------------------------------------- the console under several processes
@pytest.mark.parametrize("rank", [0, 1])
def test_t3s_warnings_are_printed_by_rank_zero_only(tiny_world, capsys, monkeypatch, rank):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from t3s.cli import configure_process
    from t3s.data import TeacherTraceDataModule

    configure_process()
    monkeypatch.setattr(rank_zero_only, "rank", rank)  # what Lightning sets in each process of a launch
    data = TeacherTraceDataModule(path=str(tiny_world / "teacher_traces.jsonl"),
                                  tokenizer=str(tiny_world / "tokenizer"), limit=None, max_length=120,
                                  global_batch_size=4, micro_batch_size=4)
    data.setup("fit")
    dropped = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dropped ")]
    assert len(dropped) == (1 if rank == 0 else 0)


@pytest.mark.slow
def test_the_model_summary_shows_a_student_in_train_mode(tmp_path):
    import re
    import subprocess
    import sys

    from conftest import random_model_config

    folder = tmp_path / "theta0"
    tiny_qwen3(128).save_pretrained(folder)  # from_pretrained: a model in eval mode
    done = subprocess.run([sys.executable, "-m", "t3s", "fit", "--config", str(random_model_config(tmp_path)),
                           "--trainer.enable_model_summary=true", "--model.init_args.model_config=null",
                           f"--model.init_args.model={folder}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modes = dict(re.findall(r"Modules in (train|eval) mode: (\d+)", done.stdout + done.stderr))
    assert int(modes["train"]) > 0 and int(modes["eval"]) == 0, modes


def test_the_anchor_table_keeps_special_tokens_in_their_cells():
    import re

    from t3s.scoring.summary_text import summary_markdown

    tokens = ["<|im_end|>", "a|b", "\n", "`", "x"]
    rows = [{"token": t, "count": 3, "share_of_occurrences": 0.5} for t in tokens]
    text = summary_markdown({"anchor_fraction": 0.1, "mean_delta": 0.2, "num_tokens": 10, "top_anchor_tokens": rows,
                             "top_yet_to_learn_tokens": rows[::-1]})
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(tokens)  # one line per row: no token breaks a line
    for line in table:
        assert len(re.split(r"(?<!\\)\|", line)) == 8, line  # 6 cells between unescaped pipes
    assert r"`<\|im_end\|>`" in text


def test_a_run_refused_for_its_data_takes_no_version_folder(tmp_path, capsys):
    from conftest import random_model_config

    config = str(random_model_config(tmp_path))
    line = error_of(capsys, "fit", "--config", config, "--data.max_length=8")  # every trace is longer
    assert "max_length" in line
    assert not list((tmp_path / "runs").glob("**/version_*"))
    main(["fit", "--config", config])  # the next good run is version_0, as the README's paths say
    assert [p.name for p in (tmp_path / "runs" / "sft").iterdir()] == ["version_0"]


def test_a_tokenizer_without_a_chat_template_is_one_line(tmp_path, capsys):
    import shutil

    from conftest import TINY_WORLD, random_model_config

    tokenizer = shutil.copytree(TINY_WORLD / "tokenizer", tmp_path / "plain-tokenizer")
    (tokenizer / "chat_template.jinja").unlink(missing_ok=True)
    settings = json.loads((tokenizer / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(settings))
    line = error_of(capsys, "fit", "--config", str(random_model_config(tmp_path)), f"--data.tokenizer={tokenizer}")
    assert "no chat template" in line and str(tokenizer) in line
