"""``t3s diagnose``: trajectories, gradient interaction, one-step intervention, transfer matrix, CLI, DDP."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY_WORLD, make_student, make_trainer, tiny_qwen3
from lightning.pytorch.callbacks import ModelCheckpoint

from t3s.analysis.diagnose import plan_diagnostics, run_diagnostics
from t3s.analysis.interaction import gradient_interaction, probe_batch
from t3s.analysis.trajectories import Trajectories, data_offsets
from t3s.cli import main

DATA = {"path": str(TINY_WORLD / "teacher_traces.jsonl"), "tokenizer": str(TINY_WORLD / "tokenizer"), "limit": 16,
        "global_batch_size": 8, "micro_batch_size": 4, "max_length": 512}


def tiny_data(**overrides):
    from t3s.data import TeacherTraceDataModule

    data = TeacherTraceDataModule(**(DATA | overrides))
    data.setup("fit")
    return data


def small_probe_config(tmp_path: Path, name: str, max_steps: int, train_limit: int) -> Path:
    """configs/toy-small.yaml as a plain-SFT probe (the recipe's first phase), shortened, outputs in tmp_path."""
    cfg = yaml.safe_load((REPO / "configs" / "toy-small.yaml").read_text())
    cfg["trainer"].update(default_root_dir=str(tmp_path), enable_progress_bar=False, max_steps=max_steps)
    # the fast-shock regime (the shipped demo's is 3e-4 for 120 steps)
    cfg["model"]["init_args"]["optimizer"]["lr"] = 3e-3
    cfg["trainer"]["logger"]["init_args"].update(save_dir=str(tmp_path), name=name)
    bench = next(c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("BenchmarkCallback"))["init_args"]
    bench.update(tasks=[], train_limit=train_limit)
    cfg["model"]["init_args"]["selection"] = {"class_path": "t3s.selection.FullSFT"}
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny student trained 4 steps with hf/step_0, step_2, step_4 and the config.yaml `t3s fit` saves."""
    root = tmp_path_factory.mktemp("tiny_run")
    data = tiny_data()
    student = make_student(data, lr=3e-3)
    trainer = make_trainer(root, 4, enable_checkpointing=True,
                           callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=2,
                                                      save_top_k=-1)])
    trainer.fit(student, datamodule=data)
    config = {"data": DATA, "model": {"init_args": {"lr": 1e-4, "betas": [0.9, 0.95], "max_grad_norm": 1.0}}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    assert sorted(p.name for p in (root / "hf").glob("step_*")) == ["step_0", "step_2", "step_4"]
    return root


@pytest.fixture(scope="module")
def diagnosed(tiny_run) -> tuple[dict, dict, dict]:
    """One `diagnose` of the tiny run (θ_b = step 2); the checkpoints' files hashed before and after."""
    before = {s: _digest(tiny_run / "hf" / s) for s in ("step_0", "step_2", "step_4")}
    report = run_diagnostics(plan_diagnostics(tiny_run, bottleneck_step=2, probe_traces=8, micro_batch_size=2))
    after = {s: _digest(tiny_run / "hf" / s) for s in ("step_0", "step_2", "step_4")}
    return report, before, after


def test_trajectories_equal_per_checkpoint_scores(tiny_run, diagnosed, tmp_path):
    from t3s.scoring.scorer import score

    report = diagnosed[0]
    assert [e["step"] for e in report["steps"]] == [0, 2, 4]  # no curve: every checkpoint
    data = tiny_data()
    cache = Trajectories(tiny_run / "diagnostics" / "trajectories", data.fingerprint(), data_offsets(data.traces))
    for step in (2, 4):
        summary = score(data, tiny_run / "hf" / "step_0", tiny_run / "hf" / f"step_{step}", tmp_path / str(step))
        from t3s.selection.scores import ScoreCache

        scored = ScoreCache.load(tmp_path / str(step))
        torch.testing.assert_close(cache.load(0), scored.base_logprob, atol=1e-6, rtol=0, equal_nan=True)
        torch.testing.assert_close(cache.load(step), scored.bottleneck_logprob, atol=1e-6, rtol=0, equal_nan=True)
        if step == 2:  # θ_b: the diagnostics' anchor fraction is the scorer's
            assert report["anchor_fraction"] == pytest.approx(summary["anchor_fraction"])
    # `t3s score --checkpoints <run>` writes the same trajectories and their per-group summary
    main(["score", "--config", str(tiny_run / "config.yaml"), "--base", str(tiny_run / "hf" / "step_0"),
          "--bottleneck", str(tiny_run / "hf" / "step_2"), "--output", str(tmp_path / "cli"),
          "--checkpoints", str(tiny_run)])
    from_score = Trajectories(tmp_path / "cli" / "trajectories", data.fingerprint(), data_offsets(data.traces))
    for step in (0, 2, 4):
        torch.testing.assert_close(from_score.load(step), cache.load(step), atol=1e-6, rtol=0, equal_nan=True)
    summary = json.loads((tmp_path / "cli" / "trajectories" / "summary.json").read_text())
    assert [e["step"] for e in summary["steps"]] == [0, 2, 4]
    assert summary["steps"][2]["confidence"]["anchor"]["mean"] == pytest.approx(
        report["steps"][2]["confidence"]["anchor"]["mean"])
    # the group confidences are the means of those values
    values, base = cache.load(4), cache.load(0)
    anchor = (cache.load(2) - base) > 0
    assert report["steps"][2]["confidence"]["anchor"]["mean"] == pytest.approx(float(values[anchor].double().mean()))
    assert report["steps"][2]["confidence"]["anchor"]["below_base"] == pytest.approx(
        float((values[anchor] < base[anchor]).double().mean()))


def test_gradient_norms_and_cosine_equal_direct_autograd():
    data = tiny_data(limit=6)
    offsets = data_offsets(data.traces)
    groups = torch.randint(0, 4, (int(offsets[-1]),), generator=torch.Generator().manual_seed(0))
    probe = probe_batch(data, groups, offsets, traces=6, micro_batch_size=4)
    model = tiny_qwen3(len(data.tokenizer), seed=1)
    got = gradient_interaction(model, probe, (0, 1), (2, 3))

    def direct(members):  # full logits, log-softmax, mean NLL over the whole probe
        nll, count = 0.0, 0
        for mb, g in zip(probe.micro_batches, probe.groups):
            logits = model(input_ids=mb["input_ids"], position_ids=mb["position_ids"]).logits[:, :-1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, mb["input_ids"][:, 1:, None])[..., 0]
            mask = torch.isin(g[:, 1:], torch.tensor(members))
            nll = nll - lp[mask].sum()
            count += int(mask.sum())
        grads = torch.autograd.grad(nll / count, list(model.parameters()))
        return torch.cat([x.flatten() for x in grads]).double()

    a, o = direct((0, 1)), direct((2, 3))
    assert got["grad_norm_anchor"] == pytest.approx(float(a.norm()), rel=1e-5)
    assert got["grad_norm_other"] == pytest.approx(float(o.norm()), rel=1e-5)
    assert got["grad_cosine"] == pytest.approx(float(a @ o / (a.norm() * o.norm())), abs=1e-5)
    assert got["grad_norm_ratio"] == pytest.approx(float(a.norm() / o.norm()), rel=1e-5)


def test_intervention_leaves_checkpoints_untouched(diagnosed):
    report, before, after = diagnosed
    assert before == after  # bytes (sha256) and mtime of every file
    assert all(e["intervention"]["anchor"]["anchor"] != 0.0 for e in report["steps"])  # the steps did happen


def test_transfer_matrix_diagonal_is_negative(diagnosed):
    report = diagnosed[0]
    assert report["groups"][:2] == ["anchor_reasoning", "anchor_answer"]  # the tiny world has </think> spans
    assert all(n > 0 for n in report["probe"]["tokens"].values())
    for entry in report["steps"]:
        matrix = entry["transfer_matrix"]
        assert len(matrix) == 4 and all(len(row) == 4 for row in matrix)
        assert all(matrix[i][i] < 0 for i in range(4)), (entry["step"], matrix)
        assert (entry["intervention"]["anchor"]["anchor"] < 0
                and entry["intervention"]["yet_to_learn"]["yet_to_learn"] < 0)
    assert report["transfer_matrix"] == report["steps"][1]["transfer_matrix"]  # top level: at θ_b
    assert report["transfer_matrix_step"] == 2


@pytest.mark.slow
def test_two_processes_equal_one(tiny_run, diagnosed, tmp_path):
    one = diagnosed[0]
    plan = plan_diagnostics(tiny_run, bottleneck_step=2, probe_traces=8, micro_batch_size=2, output=tmp_path)
    two = run_diagnostics(plan, devices=2)
    for a, b in zip(one["steps"], two["steps"]):
        for key in ("grad_norm_anchor", "grad_norm_other", "grad_cosine"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
        assert torch.allclose(torch.tensor(b["transfer_matrix"]), torch.tensor(a["transfer_matrix"]), atol=1e-5)
        for group, stats in a["confidence"].items():
            assert b["confidence"][group] == pytest.approx(stats, rel=1e-6), group


def test_bad_inputs_one_line_exit_2(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nohf").mkdir()
    (tmp_path / "nohf" / "config.yaml").write_text(yaml.safe_dump({"data": DATA}))
    cases = [
        ([str(tmp_path / "missing")], "no such directory"),
        ([str(tmp_path / "empty")], "not a run directory"),
        ([str(tmp_path / "nohf")], "no hf/step_<N>"),
        ([str(tiny_run)], "no training-accuracy curve"),
        ([str(tiny_run), "--bottleneck_step", "3"], "no such checkpoint"),
        ([str(tiny_run), "--bottleneck_step", "2", "--devices", "0"], "--devices must be >= 1"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["diagnose", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, args
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.slow
def test_diagnose_contract_on_a_toy_small_probe(tmp_path, capsys):
    """A toy-small probe (plain SFT, shortened), then `python -m t3s diagnose <phase>`: the acceptance contract."""
    config = small_probe_config(tmp_path, "probe", max_steps=10, train_limit=16)
    main(["fit", "--config", str(config)])
    phase = tmp_path / "probe" / "version_0"
    main(["diagnose", str(phase)])
    out = capsys.readouterr().out
    report = json.loads((phase / "diagnostics" / "diagnostics.json").read_text())
    assert [e["step"] for e in report["steps"]] == [0, 5, 10]  # every evaluated checkpoint
    for entry in report["steps"]:
        for key in ("grad_norm_anchor", "grad_norm_other", "grad_cosine"):
            assert math.isfinite(entry[key])
        assert -1 <= entry["grad_cosine"] <= 1
        assert set(entry["confidence"]) == {"anchor", "yet_to_learn", *report["groups"]}
        assert len(entry["transfer_matrix"]) == 4 and all(len(r) == 4 for r in entry["transfer_matrix"])
    assert len(report["transfer_matrix"]) == 4
    assert report["bottleneck_source"] == "curve" and report["bottleneck_step"] in (5, 10)
    # anchors rose from θ_0 to θ_b by definition; yet-to-learn tokens did not
    b = next(e for e in report["steps"] if e["step"] == report["bottleneck_step"])["confidence"]
    assert b["anchor"]["below_base"] == 0.0 and b["yet_to_learn"]["below_base"] > 0.99  # Δc = 0: not below
    for png in ("confidence.png", "gradient_interaction.png", "transfer_matrix.png", "tokens.png"):
        assert (phase / "diagnostics" / png).stat().st_size > 10_000
    from t3s.evals.scalars import read_scalars

    steps, ratio = read_scalars(phase, "diagnostics/grad_norm_ratio")
    assert steps == [0, 5, 10] and ratio[0] == pytest.approx(report["steps"][0]["grad_norm_ratio"], rel=1e-5)
    assert f"θ_b = step {report['bottleneck_step']} (curve)" in out


def test_callback_logs_what_the_offline_measurement_gives(tiny_run, tmp_path):
    """DiagnosticsCallback during a tiny fit (CSV logger): at step 2 its numbers are the offline ones on hf/step_2."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from t3s.analysis import DiagnosticsCallback
    from t3s.analysis.trajectories import answer_spans, token_groups
    from t3s.scoring.scorer import score
    from t3s.selection.scores import ScoreCache

    score(tiny_data(), tiny_run / "hf" / "step_0", tiny_run / "hf" / "step_2", tmp_path / "scores")
    data = tiny_data()
    student = make_student(data, lr=3e-3)
    callback = DiagnosticsCallback(scores=str(tmp_path / "scores"), every_n_steps=2, probe_traces=8,
                                   micro_batch_size=2)
    trainer = make_trainer(tmp_path / "run", 4, logger=CSVLogger(tmp_path, name="csv"), enable_checkpointing=True,
                           callbacks=[callback, ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2,
                                                                save_top_k=-1)])
    trainer.fit(student, datamodule=data)
    rows = list(csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")))
    logged = {int(r["step"]): r for r in rows if r.get("diagnostics/grad_cosine")}
    assert sorted(logged) == [0, 2, 4]

    from transformers import AutoModelForCausalLM

    cache = ScoreCache.load(tmp_path / "scores")
    offsets = data_offsets(data.traces)
    groups = token_groups(cache.base_logprob, cache.bottleneck_logprob,
                          answer_spans(data.traces, data.tokenizer, offsets))
    probe = probe_batch(data, groups.ids, offsets, traces=8, micro_batch_size=2)
    model = AutoModelForCausalLM.from_pretrained(str(Path(trainer.log_dir) / "hf" / "step_2")).eval()
    offline = gradient_interaction(model, probe, (0, 1), (2, 3))
    for key, value in offline.items():
        assert float(logged[2][f"diagnostics/{key}"]) == pytest.approx(value, rel=1e-4), key
    assert float(logged[2]["diagnostics/confidence/anchor"]) < 0


def test_callback_refuses_a_sharded_strategy_before_training():
    """Under FSDP / ModelParallelStrategy the gradients are shards: one line, before any step."""
    import lightning as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from t3s.analysis import DiagnosticsCallback
    from t3s.analysis.diagnose import DiagnosticsError

    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=ModelParallelStrategy(), logger=False,
                        enable_progress_bar=False)
    with pytest.raises(DiagnosticsError, match="ModelParallelStrategy"):
        DiagnosticsCallback(scores="unused").on_fit_start(trainer, None)
