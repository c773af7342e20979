"""The toy-skill world (issue 23) and what its study reads: the world's splits, the premise measurement, the
fine θ_b grid, the comparison table with θ_0's row and held-out columns, and the report's paper-style figure.
Fast: no training (the 3-seed study is docs/results/toy_skill.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from t3s.analysis.compare import write_comparison
from t3s.analysis.report import report_figures, story
from t3s.evals.callbacks import BenchmarkCallback
from t3s.toy.premises import KINDS, confidence_table, delta_table, labelled_words, token_confidences
from t3s.toy.styles import column_steps
from t3s.toy.task import Problem
from t3s.toy.world import PRESETS


def test_skill_world_teaches_a_third_column_theta0_never_wrote() -> None:
    world = PRESETS["skill"]
    splits = world.problems()
    widths = {name: {len(column_steps(p)) for p in problems} for name, problems in splits.items()}
    assert max(widths["student"]) <= 3  # 1–2 digits: at most Units, Tens and a final carry
    assert 4 in widths["teacher"] and 4 in widths["heldout"]  # 3 digits and a final carry: Thousands
    assert sum(max(len(str(p.a)), len(str(p.b))) == 3 for p in splits["teacher"]) > len(splits["teacher"]) / 2
    # no word of the teacher's framing repeats inside one of its phrases (Δc cannot split a phrase)
    style = world.teacher_style
    for phrase in (style.opening, style.carry, style.no_carry, style.closing, style.answer_prefix):
        words = phrase.replace("{answer}", "").split()
        assert len(words) == len(set(words)), phrase


def test_premise_kinds_label_every_reasoning_token(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    world = PRESETS["skill"]
    tokenizer = world.tokenizer()
    problem = Problem(987, 45)  # three columns and a final carry
    words = labelled_words(problem, world.teacher_style)
    assert [w for w, _ in words] == world.teacher_style.reasoning(problem).split()
    kinds = {k for _, k in words}
    assert kinds == set(KINDS)
    assert [w for w, k in words if k == "skill digit"] == "9 0 1 1 0 0 0 1 1".split()  # Hundreds, Thousands
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256)
    model = AutoModelForCausalLM.from_config(config).eval()
    scored = token_confidences(model, tokenizer, problem, world.teacher_style)
    assert [k for k, _ in scored] == [k for _, k in words] and all(c < 0 for _, c in scored)
    measured = {"theta_0": {"teacher": [scored]}, "theta_b": {"teacher": [[(k, c + 1.0) for k, c in scored]]}}
    assert "| theta_0 | teacher |" in "\n".join(confidence_table(measured))
    assert all(row.endswith("| +1.000 | 1.000 |") for row in delta_table(measured, "theta_0", "theta_b")[2:])


def test_fine_grid_evaluates_every_few_steps_until_theta_b_is_confirmed() -> None:
    bench = BenchmarkCallback(every_n_steps=10, fine_every_n_steps=2, fine_until_step=20, bottleneck_margin=0.1)
    assert [s for s in range(31) if bench.due(s)] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 30]
    for step, accuracy in ((0, 0.5), (2, 0.1), (4, 0.3), (6, 0.4)):
        bench.detector.update(step, accuracy)
    assert bench.detector.bottleneck_step == 2
    assert [s for s in range(7, 31) if bench.due(s)] == [10, 20, 30]  # back to the coarse grid
    with pytest.raises(ValueError):
        BenchmarkCallback(fine_every_n_steps=0)


def _write_curves(run: Path, curves: dict[str, list[float]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run))
    for task, values in curves.items():
        for i, value in enumerate(values):
            writer.add_scalar(f"bench/{task}/avg@1", value, 5 * i)
    writer.close()


def test_comparison_has_theta0_heldout_columns_and_the_claims(tmp_path: Path) -> None:
    runs = {"sft": ([0.5, 0.1, 0.9], [0.6, 0.2, 0.5]), "t3s": ([0.5, 0.4, 0.8], [0.6, 0.5, 0.7]),
            "inverse_t3s": ([0.5, 0.0, 0.2], [0.6, 0.0, 0.1]), "random": ([0.5, 0.2, 0.6], [0.6, 0.3, 0.5])}
    for seed in (0, 1):
        for method, (train, heldout) in runs.items():
            _write_curves(tmp_path / f"seed_{seed}" / method / "version_0", {"train": train, "heldout": heldout})
    rrt = {s: {"train": {"avg@1": 0.7}, "heldout": {"avg@1": 0.55}} for s in (0, 1)}
    text = write_comparison(tmp_path, [0, 1], rrt, {0: 5, 1: 5}).read_text()
    assert "| method | train start | train minimum | train final | heldout start | heldout minimum | heldout final |" \
        in text
    assert "| θ_0 (every method's start) | 0.500 ± 0.000 | — | 0.500 ± 0.000 | 0.600 ± 0.000 | — |" in text
    assert "| SFT | 0.500 ± 0.000 | 0.100 ± 0.000 | 0.900 ± 0.000 | 0.600 ± 0.000 | 0.200 ± 0.000 | 0.500" in text
    assert "| RRT | — | — | 0.700 ± 0.000 | — | — | 0.550 ± 0.000 |" in text
    claims = text[text.index("## The paper's claims"):text.index("## Per seed")]
    assert "| Imitation Shock |" in claims and "**holds**" in claims
    assert "T3S ≥ SFT (heldout, final) | mean 0.700 vs 0.500 | **holds with margin**" in claims
    assert "T3S > θ_0 (heldout, final) | mean 0.700 vs 0.600 | **holds with margin**" in claims
    assert "| −T3S collapses |" in claims and "| RRT ≥ SFT (heldout) |" in claims
    assert (tmp_path / "heldout_accuracy.png").is_file() and (tmp_path / "train_accuracy.png").is_file()


def test_report_marks_theta_b_on_the_sft_curve_only_and_tells_the_story() -> None:
    def row(run: str, values: list[float], scored: int | None) -> dict:
        bench = {"tag": "bench/train/avg@1", "steps": [0, 5, 10], "values": values, "start": values[0],
                 "min": min(values), "min_step": [0, 5, 10][values.index(min(values))], "final": values[-1]}
        return {"run": run, "benchmarks": {"train": bench}, "bottleneck": 5, "scored_bottleneck": scored,
                "loss": ([], []), "loss_all_tokens": ([], [])}

    rows = [row("SFT", [0.9, 0.1, 0.6], None), row("T3S", [0.9, 0.6, 0.8], 5)]
    fig = report_figures(rows)["accuracy_train.png"][1]
    markers = [line for line in fig.axes[0].lines if line.get_marker() == "v"]
    assert [float(m.get_ydata()[0]) for m in markers] == [0.1]  # on SFT's curve, not on T3S's
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels[:3] == ["θ_0 (0.90)", "SFT", "T3S"]
    lines = story(rows, toy=True)
    assert "ends at 0.80, ahead of SFT" in lines[0] and "README.md" in lines[-1]
    assert story(rows) == lines[:1]
