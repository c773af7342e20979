"""Rebuild the θ_0 folders that ship inside the package (``t3s/toy/bases/<key>``), for maintainers.

Run it after changing a toy world, a base recipe or the pretraining code (then commit the folders)::

    python -m t3s.toy.ship toy toy-small tiny

Each named config's ``${toy_base:…}`` is resolved to its world and recipe, θ_0 is pretrained afresh
and written under its key. The README says which torch build and thread count
produced the shipped weights; ``t3s_base_build.json`` in each folder records it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from t3s.resources import find_config, package_folder
from t3s.toy.base import BaseRecipe, base_key, pretrain, register_resolvers


def base_requests(config: str | Path) -> list[tuple[Path, BaseRecipe]]:
    """The (world folder, recipe) pairs a config's ``${toy_base:…}`` interpolations ask for.

    The toy worlds are written (cheap, deterministic); no θ_0 is built.
    """
    from omegaconf import OmegaConf

    path = find_config(str(config)).resolve()
    requests: list[tuple[Path, BaseRecipe]] = []

    def record(world: str, overrides: dict[str, Any] | None = None) -> str:
        folder = Path(world).expanduser()
        folder = folder if folder.is_absolute() else path.parent / folder
        requests.append((folder.resolve(), BaseRecipe(**dict(overrides or {}))))
        return str(folder)

    register_resolvers()
    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("toy_base", record, replace=True)
    try:
        OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    finally:
        register_resolvers()
    return requests


def ship(config: str | Path, *, out_root: Path | None = None) -> list[Path]:
    """Pretrain the θ_0 every ``${toy_base:…}`` of ``config`` asks for and copy it into the package."""
    out_root = out_root or package_folder("toy") / "bases"
    shipped = []
    for world, recipe in base_requests(config):
        target = out_root / base_key(world, recipe)
        if target.exists():
            shutil.rmtree(target)
        pretrain(world, recipe, target)
        shipped.append(target)
    return shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t3s.toy.ship", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="shipped config names or paths (toy, toy-small, tiny)")
    args = parser.parse_args(argv)
    for config in args.configs:
        for folder in ship(config):
            print(f"{config}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
