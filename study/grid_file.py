"""The named-grid file (``study/grids.toml``): reading it, which grids are evidence, and each grid's fine-tuning
recipe. Light on purpose (no torch), so the recommender, the app and the convergence check can ask which grids to
learn from and what recipe they ran."""
from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from study.spec import FinetuneConfig

DEFAULT_GRID_FILE = Path(__file__).resolve().parent / "grids.toml"


class GridError(ValueError):
    """A grid file or grid name is wrong."""


def load_grids(path: str | Path = DEFAULT_GRID_FILE) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise GridError(f"grid file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise GridError(f"grid file {path} is not valid TOML: {error}") from None


def evidence_grids(path: str | Path = DEFAULT_GRID_FILE) -> set[str]:
    """Names of the grids marked ``evidence = true``: what the recommender learns from."""
    return {name for name, grid in load_grids(path).items() if isinstance(grid, dict) and grid.get("evidence")}


def finetune_config(overrides: dict) -> FinetuneConfig:
    """A recipe from a grid's ``finetune`` settings, refusing unknown ones."""
    known = {f.name for f in fields(FinetuneConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise GridError(f"unknown finetune settings {sorted(unknown)}; known: {sorted(known)}")
    values = dict(overrides)
    if "learning_rates" in values:
        values["learning_rates"] = tuple(float(v) for v in values["learning_rates"])
        if len(values["learning_rates"]) < 1:
            raise GridError("learning_rates needs at least one value")
    return FinetuneConfig(**values)


def grid_recipe(grids: dict, name: str, seen: tuple = ()) -> dict:
    """A grid's fine-tuning settings: those of the grid named by ``finetune_from`` (if any), then its own."""
    if name not in grids:
        raise GridError(f"unknown grid {name!r} (finetune_from of {seen[-1]!r})" if seen else f"unknown grid {name!r}")
    if name in seen:
        raise GridError(f"finetune_from loops: {' -> '.join((*seen, name))}")
    grid = grids[name]
    base = grid_recipe(grids, grid["finetune_from"], (*seen, name)) if "finetune_from" in grid else {}
    return {**base, **grid.get("finetune", {})}


def recipe_of(grid_name: str, path: str | Path = DEFAULT_GRID_FILE) -> FinetuneConfig:
    """The fine-tuning recipe a named grid runs (before any block's own overrides)."""
    return finetune_config(grid_recipe(load_grids(path), grid_name))
