"""Selection strategies as the recipe handles them: which still need Δc, and their config nodes.

Light (no Lightning): :func:`missing_scores` decides, from the parsed ``fit`` config alone, whether ``t3s fit``
is a plain fit, the online variant or the offline recipe (:func:`fit_path`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from t3s.selection import FullSFT, RandomMask, ScoredStrategy, TokenSelectionStrategy

#: The three roads of ``t3s fit`` (:func:`fit_path`).
FIT_PATHS = ("plain fit", "online", "recipe")


def missing_scores(strategy: TokenSelectionStrategy | None) -> list[ScoredStrategy]:
    """The Δc-based parts of ``strategy`` that have no score cache yet (they need the recipe)."""
    return strategy.unscored() if strategy is not None else []


def selection_of(config: Namespace) -> TokenSelectionStrategy:
    """The strategy a parsed ``fit`` config asks for, built alone (no student, data or trainer; FullSFT when
    unset): strategies are light and read no score cache until :meth:`setup`."""
    from jsonargparse import ArgumentParser

    node = config.model.init_args.get("selection") if config.get("model.init_args") else None
    if node is None:
        return FullSFT()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--selection", type=TokenSelectionStrategy)
    given = node.as_dict() if isinstance(node, Namespace) else node
    return parser.instantiate_classes(parser.parse_object({"selection": given})).selection


def fit_path(selection: TokenSelectionStrategy) -> tuple[str, str]:
    """Which road ``t3s fit`` takes with ``selection``, and why (one of :data:`FIT_PATHS`)::

        plain fit  the strategy needs no Δc, or has its score cache
        online     T3S(online=true) with no cache: Δc is scored when the detector fires, in the same fit
        recipe     a Δc-based strategy with no cache: SFT → θ_b → score → restart masked → report
    """
    missing = missing_scores(selection)
    name = type(selection).__name__
    if not missing:
        return "plain fit", f"{name} needs no Δc" if not isinstance(selection, (ScoredStrategy, RandomMask)) \
            else f"{name} reads its score cache"
    if getattr(selection, "online", False):
        return "online", f"{name}(online=true): SFT until θ_b, then Δc is scored and the anchors masked"
    return "recipe", f"{name} has no score cache: SFT → θ_b → score → {name} → report"


def strategy_config(class_: type[TokenSelectionStrategy], **init_args: Any) -> Namespace:
    """A selection strategy as a config node (``class_path`` + ``init_args``), as YAML would give it."""
    return Namespace(class_path=f"t3s.selection.{class_.__name__}", init_args=Namespace(**init_args))


def with_scores(selection: Namespace, scores: str | Path) -> Namespace:
    """A copy of a strategy's config node where every scored part that has no cache gets ``scores``."""
    selection = selection.clone()

    def fill(node: Any) -> None:
        if not isinstance(node, Namespace):
            return
        init_args = node.get("init_args")
        if isinstance(init_args, Namespace):
            if "scores" in init_args and init_args.scores is None:
                init_args.scores = str(scores)
            for value in vars(init_args).values():
                fill(value)

    fill(selection)
    return selection


def phase_name(selection: Namespace) -> str:
    """``t3s``, ``inverse_t3s``, ``random`` …: the run-directory name of a phase trained with ``selection``."""
    module, _, class_name = selection.class_path.rpartition(".")
    return getattr(importlib.import_module(module), class_name).name
