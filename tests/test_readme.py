"""The README's quick-start block, run command by command as written (from an empty folder)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

MARKER = "<!-- quick-start:"


def quick_start_commands() -> list[str]:
    """The commands of the fenced block that follows the quick-start marker, without their comments."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block is not None, "README: no fenced block after the quick-start marker"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_block_is_what_this_test_knows():
    commands = quick_start_commands()
    assert commands[0] == "pip install ."  # tests/test_install.py installs the built wheel
    assert all(c.startswith(("t3s ", "python -m t3s ")) for c in commands[1:]), commands


@pytest.mark.slow
def test_quick_start_commands_run_as_written(tmp_path):
    """Every command after the install, from an empty folder; the toy-small θ_0 is shared with the session."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for command in quick_start_commands()[1:]:
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "t3s", *argv[1:]] if argv[0] == "t3s" else [sys.executable, *argv[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "toy-small" / "recipe" / "version_0" / "report" / "report.md").is_file()
