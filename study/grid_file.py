"""The named-grid file (``study/grids.toml``): reading it, and which grids are evidence. Light on purpose (no
torch), so the recommender and the app can ask which grids to learn from."""
from __future__ import annotations

import tomllib
from pathlib import Path

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
