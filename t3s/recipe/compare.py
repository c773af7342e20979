"""``t3s compare``: the paper's comparison on one config (SFT, T3S, −T3S, a budget-matched random mask, RRT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from t3s.recipe.detect import check_recipe_phase, find_bottleneck, score_bottleneck
from t3s.recipe.phases import Phase, PhaseFactory
from t3s.recipe.strategies import strategy_config
from t3s.selection import T3S, FullSFT, InverseT3S, RandomMask

console = Console()


class Comparison:
    """The paper's comparison on one config: SFT, T3S, −T3S, a budget-matched random mask and RRT.

    Per seed (data order and evaluation sampling), every method runs the same steps, LR and data order
    from the same θ_0; θ_b comes from the SFT run, which doubles as the recipe's SFT phase. RRT is θ_0 + (θ_SFT,final −
    θ_b), evaluated once. Writes ``<output>/seed_<s>/<method>/`` runs and ``<output>/comparison.md``.

    Args:
        phases_for_seed: the phase factory of one seed (its ``root`` is ``<output>/seed_<s>``).
        seeds: the seeds to run.
        output: where the runs and the table go.
    """

    def __init__(self, phases_for_seed: Any, seeds: list[int], output: str | Path):
        self.phases_for_seed = phases_for_seed
        self.seeds = list(seeds)
        self.output = Path(output)

    def run(self) -> Path:
        from t3s.analysis.compare import write_comparison

        rrt_results: dict[int, dict[str, dict[str, float]]] = {}
        bottlenecks: dict[int, int] = {}
        is_global_zero = True
        for seed in self.seeds:
            phases: PhaseFactory = self.phases_for_seed(seed)
            console.rule(f"[bold]compare, seed {seed}[/bold]: SFT")
            sft = phases.build(FullSFT.name, strategy_config(FullSFT))
            check_recipe_phase(sft)
            sft.fit()
            step_b = bottlenecks[seed] = find_bottleneck(sft)
            scores = phases.root / "scores"
            score_bottleneck(sft.trainer, sft.datamodule, sft.run_dir, step_b, scores)
            t3s = strategy_config(T3S, scores=str(scores))
            for class_, selection in (
                (T3S, t3s),
                (InverseT3S, strategy_config(InverseT3S, scores=str(scores))),
                (RandomMask, strategy_config(RandomMask, match=t3s, seed=seed)),
            ):
                console.rule(f"[bold]compare, seed {seed}[/bold]: {class_.label}")
                phases.build(class_.name, selection).fit()
            is_global_zero = sft.trainer.is_global_zero
            if is_global_zero:
                console.rule(f"[bold]compare, seed {seed}[/bold]: RRT")
                rrt_results[seed] = evaluate_rrt(sft, step_b, phases.root / "rrt")
        if not is_global_zero:
            return self.output / "comparison.md"
        report = write_comparison(self.output, self.seeds, rrt_results, bottlenecks)
        console.print(f"comparison: {report}\ncurves: tensorboard --logdir {self.output}")
        return report


def evaluate_rrt(sft: Phase, step_b: int, output: Path) -> dict[str, dict[str, float]]:
    """Write RRT's θ_0 + (θ_final − θ_b) from the SFT run and evaluate it on the SFT run's tasks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from t3s.analysis.rrt import residual_transfer

    hf = sft.run_dir / "hf"
    folder = residual_transfer(hf / "step_0", hf / f"step_{step_b}", hf / "final", output)
    model = AutoModelForCausalLM.from_pretrained(folder)
    return sft.benchmark.evaluate_model(model, AutoTokenizer.from_pretrained(folder), sft.datamodule)
