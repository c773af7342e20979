"""``t3s report``: figures and a comparison table from finished runs (no torch).
"""

from __future__ import annotations

from pathlib import Path

from t3s.errors import ConfigError

#: The parameter that may be given bare (``t3s report RUN …``).
POSITIONAL = "runs"


def run(runs: list[str], output: str | None = None) -> None:
    """Figures and a comparison table (start / min / final / best accuracy, θ_b) from finished runs.

    Args:
        runs: run directories holding logged scalars, TensorBoard event files or a CSVLogger's ``metrics.csv``
            (``runs/tiny/sft/version_0``), or a recipe's ``version_<k>`` folder (its phases ``sft``, ``t3s``
            are compared).
        output: output directory (default: ``report/`` inside the first run directory).
    """
    missing = [run for run in runs if not Path(run).is_dir()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such directory (give run folders, e.g. runs/tiny/sft/version_0)")
    from t3s.analysis.report import write_report

    print(f"wrote {write_report(runs, output)}")
