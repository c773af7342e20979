"""A run's logged scalars, whichever file logger wrote them.

A run directory may hold TensorBoard event files (``TensorBoardLogger``, ``t3s evaluate``), a ``metrics.csv``
(Lightning's ``CSVLogger``) and the evaluation ledger ``eval/results.jsonl``. :func:`read_scalars` and
:func:`scalar_tags` read all three, so θ_b, the recipe's table and ``t3s report`` work with any logger that
leaves one of them in the run directory. Reading needs neither torch nor Lightning.
"""

from __future__ import annotations

import csv
import math
from fnmatch import fnmatchcase
from pathlib import Path

from t3s.evals.results import read_results

__all__ = ["CSV_METRICS_FILE", "has_scalars", "read_scalars", "scalar_tags"]

#: The file Lightning's ``CSVLogger`` writes in its ``log_dir``.
CSV_METRICS_FILE = "metrics.csv"

Points = dict[str, dict[int, float]]


def has_scalars(run_dir: str | Path) -> bool:
    """True when ``run_dir`` itself holds logged scalars (event files, a ``metrics.csv`` or an evaluation ledger)."""
    run_dir = Path(run_dir)
    return (any(run_dir.glob("events.out.tfevents.*")) or (run_dir / CSV_METRICS_FILE).is_file()
            or bool(read_results(run_dir)))


def scalar_tags(run_dir: str | Path) -> list[str]:
    """Every scalar tag logged in ``run_dir`` (sorted)."""
    return sorted(_all_points(Path(run_dir)))


def read_scalars(run_dir: str | Path, tag: str) -> tuple[list[int], list[float]]:
    """All (step, value) of one scalar tag in a run directory, in step order; the last write per step wins
    (TensorBoard, then ``metrics.csv``, then the evaluation ledger).

    ``tag`` may be a glob pattern (e.g. ``bench/train/avg@*``): the first matching tag in sorted order is read.
    """
    points = _all_points(Path(run_dir))
    matching = sorted(t for t in points if fnmatchcase(t, tag))
    if not matching:
        return [], []
    by_step = points[matching[0]]
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _all_points(run_dir: Path) -> Points:
    points: Points = {}
    for source in (_tensorboard_points, _csv_points, _ledger_points):
        for tag, by_step in source(run_dir).items():
            points.setdefault(tag, {}).update(by_step)
    return points


def _tensorboard_points(run_dir: Path) -> Points:
    if not any(run_dir.glob("events.out.tfevents.*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags().get("scalars", [])}


def _csv_points(run_dir: Path) -> Points:
    """``CSVLogger``'s ``metrics.csv``: one column per tag and a ``step`` column; empty cells were not logged."""
    path = run_dir / CSV_METRICS_FILE
    if not path.is_file():
        return {}
    points: Points = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            for tag, cell in row.items():
                if tag in ("step", "epoch") or tag is None or cell in (None, ""):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    points.setdefault(tag, {})[step] = value
    return points


def _ledger_points(run_dir: Path) -> Points:
    """``eval/results.jsonl`` (one line per evaluated step and task) as ``bench/<task>/<metric>`` scalars."""
    points: Points = {}
    for row in read_results(run_dir):
        step, task, metrics = row.get("step"), row.get("task"), row.get("metrics")
        if not isinstance(step, int) or not isinstance(task, str) or not isinstance(metrics, dict):
            continue
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                points.setdefault(f"bench/{task}/{name}", {})[step] = float(value)
    return points
