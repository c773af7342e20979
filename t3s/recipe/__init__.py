"""The T3S recipe: what ``t3s fit`` runs when the selection needs Δc that nobody computed yet, and ``t3s compare``.

- :mod:`~t3s.recipe.strategies`: which road ``fit`` takes (plain fit, online, recipe), from the parsed config;
- :mod:`~t3s.recipe.phases`: a phase (a fresh trainer, student and data module from the ``fit`` config);
- :mod:`~t3s.recipe.detect`: θ_b from a finished SFT phase, Δc between θ_0 and θ_b, the checks before step 1;
- :mod:`~t3s.recipe.offline`: the offline recipe (SFT → θ_b → score → restart masked → report; resumable);
- :mod:`~t3s.recipe.online`: the online switch (``T3S(online=True)``, one ``fit``);
- :mod:`~t3s.recipe.compare`: the paper's comparison (SFT, T3S, −T3S, random mask, RRT).

The names below are imported on first use.
"""

from __future__ import annotations

from t3s.lazy import lazy_exports

_EXPORTS = {
    "Comparison": "t3s.recipe.compare",
    "RecipeError": "t3s.recipe.detect",
    "RecipePaused": "t3s.recipe.detect",
    "OnlineT3SSwitch": "t3s.recipe.online",
    "run_online": "t3s.recipe.online",
    "Recipe": "t3s.recipe.offline",
    "RecipeState": "t3s.recipe.offline",
    "Phase": "t3s.recipe.phases",
    "PhaseFactory": "t3s.recipe.phases",
    "SaveConfig": "t3s.recipe.phases",
    "phase_loggers": "t3s.recipe.phases",
    "fit_path": "t3s.recipe.strategies",
    "missing_scores": "t3s.recipe.strategies",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
