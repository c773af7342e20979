"""The offline T3S recipe (``T3S`` with no score cache), run by ``t3s fit``::

    1. sft     plain SFT from θ_0, with training-accuracy (and benchmark) evaluations  → <run>/sft
    2. detect  θ_b = the training-accuracy argmin, confirmed by recovery, read from the SFT phase's curve
    3. score   c_t(θ_0), c_t(θ_b), Δc_t for every training token  → <run>/scores
    4. restart from θ_0 with the imitation anchors masked out of the loss  → <run>/t3s
    5. report  both curves side by side  → <run>/report/report.md

Every phase is a fresh trainer, student and data module instantiated from the same parsed ``fit`` config
(:class:`~t3s.recipe.phases.PhaseFactory`), with only the selection strategy swapped. What is finished is kept
in ``<run>/recipe.json``; ``--ckpt_path last`` resumes (runs written before the SFT phase was named ``sft``
keep their ``probe`` folder and state keys, read as such).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from t3s.analysis.report import PHASE_LABELS, recipe_story, write_report
from t3s.evals.scalars import read_scalars
from t3s.recipe.detect import RecipeError, check_recipe_phase, find_bottleneck, score_bottleneck
from t3s.recipe.phases import Phase, PhaseFactory, curves_hint
from t3s.recipe.strategies import phase_name, strategy_config, with_scores
from t3s.selection import FullSFT

console = Console()


@dataclass
class RecipeState:
    """What the recipe has finished, kept in ``<run>/recipe.json`` so a killed recipe resumes where it stopped.

    ``sft_phase`` is the SFT phase's folder: ``sft``, or ``probe`` in a run written before the phase was
    renamed (its state then says ``probe_done``; :meth:`load` reads both).
    """

    sft_done: bool = False
    bottleneck_step: int | None = None
    scores: str | None = None
    masked_phase: str | None = None
    masked_done: bool = False
    sft_phase: str = FullSFT.name

    @classmethod
    def load(cls, root: Path) -> RecipeState:
        path = root / STATE_FILE
        if not path.is_file():
            raise RecipeError(f"{root}: no {STATE_FILE} to resume from (was this folder written by the T3S recipe?)")
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(saved, dict) and LEGACY_SFT_KEY in saved:  # written when the SFT phase was "probe"
                done = saved.pop(LEGACY_SFT_KEY)
                saved = {**saved, "sft_done": done, "sft_phase": LEGACY_SFT_PHASE}
            return cls(**saved)
        except (ValueError, TypeError) as err:
            raise RecipeError(f"{path}: unreadable recipe state ({err})") from None

    def save(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(root / STATE_FILE)


STATE_FILE = "recipe.json"
#: The SFT phase's folder and state key in runs written before it was named ``sft``.
LEGACY_SFT_PHASE, LEGACY_SFT_KEY = "probe", "probe_done"


class Recipe:
    """The offline T3S recipe over the phases of one config; :meth:`run` reads top to bottom.

    With ``resume``, finished phases (per ``<root>/recipe.json``) are skipped and an unfinished phase
    continues from its last checkpoint.
    """

    def __init__(self, phases: PhaseFactory, resume: bool = False):
        self.phases = phases
        self.root = phases.root
        self.resume = resume
        self.state = RecipeState.load(self.root) if resume else RecipeState()

    def run(self) -> Path:
        """SFT → θ_b → score → restart from θ_0 with the anchors masked → report. Returns the report."""
        sft = self.phases.build(self.state.sft_phase, strategy_config(FullSFT))
        check_recipe_phase(sft)
        if not self.state.sft_done:
            console.rule("[bold]T3S recipe 1/4[/bold]: SFT from θ_0")
            sft.fit(ckpt_path=self._ckpt_path())
            self._save(sft_done=True)
        if self.state.bottleneck_step is None:
            self._save(bottleneck_step=find_bottleneck(sft))
        step_b = self.state.bottleneck_step

        scores_dir = self.root / "scores"
        selection = with_scores(self.phases.selection, scores_dir)
        masked = self.phases.build(phase_name(selection), selection)  # reads the cache only when it trains
        if self.state.scores is None:
            console.rule(f"[bold]T3S recipe 2/4[/bold]: score θ_0 vs θ_b (step {step_b})")
            score_bottleneck(sft.trainer, sft.datamodule, sft.run_dir, step_b, scores_dir,
                             selection=masked.student.selection)
            self._save(scores=str(scores_dir))

        if not self.state.masked_done:
            console.rule("[bold]T3S recipe 3/4[/bold]: restart from θ_0 with "
                         f"{type(masked.student.selection).__name__}")
            masked.fit(ckpt_path=self._ckpt_path())
            self._save(masked_phase=masked.name, masked_done=True)

        console.rule("[bold]T3S recipe 4/4[/bold]: report")
        report = self.root / "report" / "report.md"
        if masked.trainer.is_global_zero:
            report = write_report([sft.run_dir, masked.run_dir], self.root / "report")
            console.print(results_table([sft, masked], sft.benchmark.train_tag, step_b))
            console.print(recipe_story([sft.run_dir, masked.run_dir]), markup=False)
            console.print(f"curves: {curves_hint(masked.trainer, self.root)}\nreport: {report}\nθ_b: step {step_b}, "
                          f"scores: {scores_dir}")
        return report

    def _ckpt_path(self) -> str | None:
        """A resumed recipe continues the unfinished phase from its last checkpoint (none yet: from the start)."""
        return "last" if self.resume else None

    def _save(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        if self.phases.is_global_zero:
            self.state.save(self.root)


def results_table(phases: list[Phase], tag: str, step_b: int) -> Any:
    """The recipe's end: training accuracy of each phase at its start, minimum (step) and end."""
    from rich.table import Table

    table = Table(title=f"training accuracy, θ_b = step {step_b}", caption=tag)
    for column in ("phase", "start", "minimum (step)", "final"):
        table.add_column(column)
    for phase in phases:
        label = PHASE_LABELS.get(phase.name, phase.name)  # the paper's names: SFT, T3S, −T3S
        steps, values = read_scalars(phase.run_dir, tag)
        if not values:
            table.add_row(label, "—", "—", "—")
            continue
        low = min(values)
        table.add_row(label, f"{values[0]:.3f}", f"{low:.3f} ({steps[values.index(low)]})", f"{values[-1]:.3f}")
    return table


def find_recipe_root(logger_root: str | Path) -> Path:
    """The newest ``version_<k>`` under a recipe's logger folder that holds a ``recipe.json`` (for resuming)."""
    versions = sorted((p for p in Path(logger_root).glob("version_*") if (p / STATE_FILE).is_file()),
                      key=lambda p: int(p.name.removeprefix("version_")) if p.name[8:].isdigit() else -1)
    if not versions:
        raise RecipeError(f"--ckpt_path last: no recipe run to resume under {logger_root} (no version_*/{STATE_FILE})")
    return versions[-1]
