"""Progress: bars in a terminal, one plain line per 10 % (or per N steps) when the output is a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import random_model_config

from t3s.cli import main
from t3s.progress import PlainProgress, progress


def test_plain_progress_prints_a_line_per_ten_percent() -> None:
    out = io.StringIO()
    bar = PlainProgress(total=20, desc="evaluate", unit="task", stream=out)
    for n in range(20):
        bar.set_postfix(step=n)
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("evaluate: 2/20 task (10%), ") and lines[0].endswith(" step=1")
    assert lines[-1].startswith("evaluate: 20/20 task (100%)")
    # unknown total: every `every` items, and the end
    out = io.StringIO()
    for _ in PlainProgress(iter(range(25)), desc="diagnose", every=10, stream=out):
        pass
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == [
        "diagnose: 10 it", "diagnose: 20 it", "diagnose: 25 it"]
    out = io.StringIO()
    PlainProgress(total=5, disable=True, stream=out).update(5)
    assert out.getvalue() == ""


def test_progress_is_a_bar_in_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.auto import tqdm

    monkeypatch.setenv("T3S_PROGRESS", "bar")
    bar = progress(total=3, desc="x", disable=True)
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv("T3S_PROGRESS", "plain")
    assert isinstance(progress(total=3, desc="x"), PlainProgress)
    monkeypatch.delenv("T3S_PROGRESS")
    assert isinstance(progress(total=3, desc="x"), PlainProgress)  # pytest's captured stderr is no terminal


def test_fit_off_a_terminal_prints_plain_step_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = str(random_model_config(tmp_path))
    main(["fit", "--config", config, "--trainer.enable_progress_bar=true", "--trainer.max_steps=4"])
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("step ")]
    assert [line.split(" loss ")[0] for line in lines] == ["step 1/4 (25%)", "step 2/4 (50%)", "step 3/4 (75%)",
                                                          "step 4/4 (100%)"]
    assert all(" loss " in line for line in lines)
    assert "Epoch" not in out.out + out.err  # no Lightning bar drawn into the file
