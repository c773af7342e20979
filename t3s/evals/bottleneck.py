"""Locating the Imitation Bottleneck θ_b on the training-accuracy curve."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from t3s.evals.scalars import read_scalars

#: The TensorBoard tag of the training-accuracy curve written by ``BenchmarkCallback``: ``avg@k`` for whatever
#: number k of samples the callback draws (a pattern; :func:`read_scalars` and :func:`is_train_accuracy_tag`
#: match it).
TRAIN_ACCURACY_TAG = "bench/train/avg@*"


def is_train_accuracy_tag(tag: str) -> bool:
    """True for the training-accuracy tag of any avg@k."""
    return fnmatchcase(tag, TRAIN_ACCURACY_TAG)


@dataclass
class BottleneckDetector:
    """θ_b = argmin of training accuracy, declared once recovery is confirmed.

    The detector fires when the curve has dipped at least ``margin`` below its first value and then
    stayed at least ``margin`` above its minimum for ``patience`` consecutive evaluations. Ties at the
    minimum resolve to the earliest step. A curve that never dips (monotone rising) or never recovers
    (monotone falling) does not fire; :meth:`final` still gives the global argmin at the end of a run.

    Args:
        margin: accuracy difference (absolute, e.g. 0.05 = 5 points) that counts as a dip and a recovery.
        patience: evaluations in a row above ``min + margin`` needed to confirm the recovery.
    """

    margin: float = 0.05
    patience: int = 2
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    bottleneck_step: int | None = None

    def update(self, step: int, accuracy: float) -> int | None:
        """Add one evaluation; returns θ_b's step the first time recovery is confirmed, else None."""
        self.steps.append(int(step))
        self.values.append(float(accuracy))
        if self.bottleneck_step is not None:
            return None
        i_min = self._argmin()
        dipped = self.values[i_min] <= self.values[0] - self.margin
        after = self.values[i_min + 1 :]
        if dipped and len(after) >= self.patience:
            if all(v >= self.values[i_min] + self.margin for v in after[-self.patience :]):
                self.bottleneck_step = self.steps[i_min]
                return self.bottleneck_step
        return None

    def final(self) -> int | None:
        """The confirmed θ_b, or else the global argmin (earliest on ties); None without evaluations."""
        if self.bottleneck_step is not None:
            return self.bottleneck_step
        return self.steps[self._argmin()] if self.values else None

    def _argmin(self) -> int:
        lowest = min(self.values)
        return self.values.index(lowest)

    @classmethod
    def from_curve(cls, steps: list[int], values: list[float], **kwargs: float) -> BottleneckDetector:
        """Run the detector over a finished curve (in step order)."""
        detector = cls(**kwargs)
        for step, value in sorted(zip(steps, values)):
            detector.update(step, value)
        return detector

    @classmethod
    def from_run(cls, run_dir: str | Path, tag: str = TRAIN_ACCURACY_TAG, **kwargs: float) -> BottleneckDetector:
        """Offline: read a finished run's logged scalars (any file logger, :mod:`t3s.evals.scalars`) and detect θ_b
        on its training-accuracy curve."""
        steps, values = read_scalars(run_dir, tag)
        if not steps:
            raise ValueError(f"no '{tag}' scalars under {run_dir}: was BenchmarkCallback(train_accuracy=true) on?")
        return cls.from_curve(steps, values, **kwargs)


def scored_bottleneck(scores_dir: str | Path | None) -> int | None:
    """The θ_b step a score cache was computed with (its ``meta.json`` names ``…/hf/step_<N>``), else None."""
    if not scores_dir:
        return None
    meta = Path(scores_dir) / "meta.json"
    try:
        name = Path(str(json.loads(meta.read_text(encoding="utf-8")).get("bottleneck", ""))).name
    except (OSError, ValueError, AttributeError):
        return None
    return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None
