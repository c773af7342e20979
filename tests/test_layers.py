"""The package's rooms import one way (ARCHITECTURE.md): no cycle, no import from a lower room to a higher one.

Every import counts, including those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "t3s"

#: Lowest first; a room may import only rooms at its own level or below. ``ops`` (tensor ops) and ``runtime``
#: (process and file helpers) are the lowest rooms. ``toy`` sits beside ``recipe``, and
#: ``loggers`` (logger runs per phase) with them; ``errors`` (:class:`t3s.errors.T3SError`, every user error's
#: base), ``resources`` (where the shipped configs and tasks are), ``lazy`` (first-use package exports),
#: ``arg_groups`` (argument groups and their flat spellings) and ``progress`` (bars / plain lines) are leaves;
#: the command line is the ``cli`` package (one module per command), ``trust`` (the class paths a config may
#: import, checked before parsing) and ``traces`` (the ``t3s traces`` commands).
LAYERS = [["errors", "ops", "runtime", "resources", "lazy", "progress", "arg_groups"], ["data"], ["selection"],
          ["scoring"], ["students"], ["evals"], ["analysis"], ["recipe", "toy", "loggers"],
          ["cli", "trust", "traces", "__main__"]]
LEVEL = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The t3s modules ``path`` imports (``from t3s.x import y`` counts as ``t3s.x.y`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("t3s.") and name in MODULES}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def room(module: str) -> str:
    return module.split(".")[1]


def test_every_room_has_a_layer():
    assert {room(m) for m in MODULES if m != "t3s"} <= set(LEVEL)


def test_no_import_from_a_lower_room_to_a_higher_one():
    upward = sorted(
        f"{src} -> {dst}"
        for src, targets in GRAPH.items() if src != "t3s"
        for dst in targets
        if room(src) != room(dst)
        and (LEVEL[room(dst)] > LEVEL[room(src)] or {room(src), room(dst)} == {"recipe", "toy"})
    )
    assert upward == []


#: Inside ``evals``, lowest first: ``grading`` and ``backends`` know nothing of each other or of tasks; ``tasks``
#: grade with ``grading`` and name their sampling with ``backends.sampling``; the modules at the top of
#: ``evals/`` (runner, metrics, suite, the callback, the offline evaluator, …) use all three.
EVALS_LAYERS = [["grading", "backends"], ["tasks"], ["top"]]
EVALS_LEVEL = {room: i for i, rooms in enumerate(EVALS_LAYERS) for room in rooms}


def evals_room(module: str) -> str:
    """``t3s.evals.tasks.spec`` → ``tasks``; a module at the top of ``evals/`` (``t3s.evals.runner``) → ``top``."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in EVALS_LEVEL else "top"


def test_evals_sub_packages_import_one_way():
    evals = {m: ds for m, ds in GRAPH.items() if m.startswith("t3s.evals.")}
    upward = sorted(
        f"{src} -> {dst}"
        for src, targets in evals.items()
        for dst in targets
        if dst.startswith("t3s.evals.") and EVALS_LEVEL[evals_room(dst)] > EVALS_LEVEL[evals_room(src)]
    )
    sideways = sorted(f"{src} -> {dst}" for src, targets in evals.items() for dst in targets
                      if {evals_room(src), evals_room(dst)} == {"grading", "backends"})
    assert upward == [] and sideways == []


def test_the_offline_evaluator_shares_the_suite_not_the_callback():
    """``t3s evaluate`` reads a run's :class:`EvalSuite`; it never builds a ``BenchmarkCallback``."""
    assert "t3s.evals.callbacks" not in GRAPH["t3s.evals.offline"]
    assert "t3s.evals.suite" in GRAPH["t3s.evals.offline"] and "t3s.evals.suite" in GRAPH["t3s.evals.callbacks"]


def test_no_import_cycle_between_modules():
    """Modules import each other one way inside a room too (a module importing its own package aside)."""
    graph = {m: {d for d in ds if d != m and not m.startswith(d + ".")} for m, ds in GRAPH.items()}
    colour: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(path: list[str]) -> None:
        colour[path[-1]] = "open"
        for nxt in sorted(graph[path[-1]]):
            if colour.get(nxt) == "open":
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in colour:
                visit([*path, nxt])
        colour[path[-1]] = "done"

    for module in sorted(graph):
        if module not in colour:
            visit([module])
    assert cycles == []


def test_import_selection_stays_light():
    """Strategies are configured from YAML in light processes: no transformers, rich or Lightning behind them."""
    code = ("import sys, t3s.selection; "
            "print(','.join(m for m in ('transformers', 'rich', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_is_a_leaf():
    """Every room may raise a :class:`~t3s.errors.T3SError`: its module imports nothing from t3s."""
    assert GRAPH["t3s.errors"] == set()


def test_the_recipe_and_command_line_are_packages():
    """``t3s/recipe/`` (phases, offline recipe, online switch, compare) and ``t3s/cli/`` (one module per command)."""
    assert {"t3s.recipe.phases", "t3s.recipe.offline", "t3s.recipe.online", "t3s.recipe.compare",
            "t3s.cli.main", "t3s.cli.fit", "t3s.cli.score", "t3s.cli.evaluate"} <= MODULES
    assert not {"t3s.train_cli", "t3s.usage", "t3s.eval_options"} & MODULES
