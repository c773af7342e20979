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

from t3s.lazy import lazy_package

__all__, __getattr__, __dir__ = lazy_package(
    __name__,
    {
        ".compare": ("Comparison",),
        ".detect": ("RecipeError", "RecipePaused"),
        ".online": ("OnlineT3SSwitch", "run_online"),
        ".offline": ("Recipe", "RecipeState"),
        ".phases": ("Phase", "PhaseFactory", "SaveConfig", "phase_loggers"),
        ".strategies": ("fit_path", "missing_scores"),
    },
)
