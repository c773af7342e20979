"""The ``BenchmarkCallback``'s argument groups: the shared :class:`~t3s.evals.suite.EvalSuite` (what is measured),
:class:`EvalSchedule` (when and where evaluations run) and :class:`CurveSettings` (what the callback makes of
the curve: θ_b detection, the figure, sample generations).

A config may write each group as a mapping (``suite: {tasks: [aime24]}``) or, as before, its keys flat in
``init_args`` (``tasks: [aime24]``). Flat keys are aliases kept for one release (deprecated: prefer the
groups); a flat key given with a value other than its default overrides the group's field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from t3s.evals.suite import EvalSuite

__all__ = ["GROUPS", "CurveSettings", "EvalSchedule", "group_of", "grouped", "merged"]

Mode = Literal["inline", "subprocess", "defer"]


@dataclass
class EvalSchedule:
    """When and where the callback evaluates.

    Attributes:
        every_n_steps: evaluate every N optimizer steps (and at step 0 and at the end).
        mode: where evaluations run. ``inline``: in the training process, on the training weights (the toy,
            small models, one process). ``subprocess``: ``t3s evaluate`` on the step's HF folder in a child
            process (its results feed the curve, θ_b and the online switch; see ``wait``). ``defer``: only
            write the step's HF folder; run ``t3s evaluate RUN_DIR`` later (e.g. as the next job). Under
            ``ModelParallelStrategy`` (FSDP2) ``inline`` gathers a full copy of the weights on every rank for
            generation (models that fit on one device); Lightning's FSDP1 ``FSDPStrategy`` refuses it.
        wait: ``subprocess`` only. True: training waits for each evaluation. False: the evaluation runs beside
            training (on GPUs: ``eval_devices``, which training must not use); its results are logged when the
            child finishes, one child at a time, each evaluating every step queued since the last; at the end
            of ``fit`` training waits for the last one, so the curve is whole before θ_b is read.
        eval_devices: ``subprocess`` only: GPUs (indices of the visible devices) the child evaluation runs on,
            one ``t3s evaluate`` worker each. Default: the child's own default (one device).
        fine_every_n_steps: a finer grid for θ_b: also evaluate every this many steps up to ``fine_until_step``,
            until the detector has confirmed θ_b (the dip of a toy's shock lasts a few steps; a coarse grid
            lands beside its minimum). ``None``: only ``every_n_steps``.
        fine_until_step: the last step of the finer grid.
    """

    every_n_steps: int = 10
    mode: Mode = "inline"
    wait: bool = True
    eval_devices: list[int] | None = None
    fine_every_n_steps: int | None = None
    fine_until_step: int = 0

    def __post_init__(self) -> None:
        if self.every_n_steps < 1:
            raise ValueError("every_n_steps must be >= 1")
        if self.fine_every_n_steps is not None and self.fine_every_n_steps < 1:
            raise ValueError("fine_every_n_steps must be >= 1 (or None)")
        if self.mode not in ("inline", "subprocess", "defer"):
            raise ValueError(f"BenchmarkCallback mode must be inline, subprocess or defer, got {self.mode!r}")
        self.eval_devices = list(self.eval_devices) if self.eval_devices else None
        if self.mode != "subprocess" and (not self.wait or self.eval_devices):
            raise ValueError("BenchmarkCallback wait: false and eval_devices are for mode 'subprocess' (a child "
                             f"t3s evaluate), not mode {self.mode!r}")


@dataclass
class CurveSettings:
    """What the callback makes of the curve.

    Attributes:
        bottleneck_margin: see :class:`~t3s.evals.bottleneck.BottleneckDetector`.
        bottleneck_patience: see :class:`~t3s.evals.bottleneck.BottleneckDetector`.
        num_text_samples: generations shown per task and evaluation in TensorBoard's text panel (or ``log_text``).
        figure_every_n_evals: draw the loss-and-accuracy figure (PNG and loggers) every this many evaluations,
            and always once at the end of training with the whole curve; ``0``: only at the end. Drawing is
            a sizeable share of a toy run's CPU, and nobody looks at it between two evaluations.
    """

    bottleneck_margin: float = 0.05
    bottleneck_patience: int = 2
    num_text_samples: int = 3
    figure_every_n_evals: int = 5

    def __post_init__(self) -> None:
        if self.figure_every_n_evals < 0:
            raise ValueError("figure_every_n_evals must be >= 0 (0: only at the end of training)")


#: The callback's argument groups, by argument name.
GROUPS: dict[str, type] = {"suite": EvalSuite, "schedule": EvalSchedule, "curve": CurveSettings}

_DEFAULTS = {f.name: f.default for group in GROUPS.values() for f in dataclasses.fields(group)}

G = TypeVar("G")


def group_of(key: str) -> str | None:
    """The group a flat key belongs to (``tasks`` → ``suite``), or None."""
    return next((name for name, group in GROUPS.items() if key in {f.name for f in dataclasses.fields(group)}), None)


def merged(group: type[G], given: G | dict[str, Any] | None, flat: dict[str, Any]) -> G:
    """``given`` (a group, its mapping, or None: the defaults) with the flat keys of ``flat`` that belong to
    ``group`` and differ from their defaults on top (checked again)."""
    names = {f.name for f in dataclasses.fields(group)}
    changes = {k: v for k, v in flat.items() if k in names and v != _DEFAULTS[k]}
    if given is None or isinstance(given, dict):
        return group(**{**(given or {}), **changes})
    return dataclasses.replace(given, **changes) if changes else given


def grouped(init_args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``BenchmarkCallback``'s init args as written in a config (grouped, flat or both) → one plain mapping per
    group, flat keys given with a non-default value on top (what ``t3s evaluate`` reads from a run's
    ``config.yaml``); keys of no group are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name in GROUPS:
        section = init_args.get(name)
        out[name] = dict(section) if isinstance(section, dict) else {}
    for key, value in init_args.items():
        group = group_of(key)
        if group is not None and value != _DEFAULTS[key]:
            out[group][key] = value
    return out
