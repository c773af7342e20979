"""``t3s compare``: the paper's method comparison (:class:`t3s.recipe.compare.Comparison`).
"""

from __future__ import annotations

from t3s.cli.configs import precheck_training_args
from t3s.errors import ConfigError
from t3s.resources import find_config


def run(config: str, seeds: list[int], output: str, overrides: list[str] | None = None) -> None:
    """The paper's comparison: SFT, T3S, −T3S, random mask and RRT, same steps, LR and data order, per seed.

    Args:
        config: a training config with a ``BenchmarkCallback`` (training accuracy on), e.g. configs/toy.yaml.
        seeds: seeds of the data order and evaluation sampling (θ_0 is shared).
        output: directory for the runs, ``comparison.md`` and the figures.
        overrides: training options applied on top of ``config`` in every run, as ``KEY=VALUE`` with the
            keys ``fit`` takes (e.g. ``model.init_args.optimizer.lr=3e-4 trainer.max_steps=120``).
    """
    extra = [f"--{item.removeprefix('--')}" for item in overrides or []]
    for item in extra:
        if "=" not in item:
            raise ConfigError(f"compare --overrides: expected KEY=VALUE, got {item[2:]!r}")
    precheck_training_args([str(find_config(config)), *extra])
    from t3s.cli.fit import phases_for_seed
    from t3s.recipe.compare import Comparison

    Comparison(phases_for_seed(str(find_config(config)), extra, output), list(seeds), output).run()
